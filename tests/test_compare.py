"""Comparison helpers (row filters, sorting, disagreement, paging, grids, export) and picture reading and scoring."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core import compare
from core.colour import AB_SCALE, gray_images, uint8_to_model
from core.inference import Colorizer, colorize_picture
from core.metrics import METRICS, PSNR_CAP
from core.networks import UNet


def made_table() -> pd.DataFrame:
    return pd.DataFrame({
        "class_name": ["cat", "dog", "cat", "ship", "dog", "cat"],
        "hue": [0.05, 0.50, 0.30, 0.60, 0.95, 0.50],
        "auc_ab": [90.0, 80.0, np.nan, 95.0, 80.0, 70.0],
    })


def png(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kw)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    torch.manual_seed(0)
    return Colorizer("tiny", "unet", UNet(width=8).eval(), path="")


# --- rows ---------------------------------------------------------------------------------------------
def test_filter_by_class_and_hue():
    t = made_table()
    assert compare.filter_rows(t).tolist() == [0, 1, 2, 3, 4, 5]
    assert compare.filter_rows(t, ["cat"]).tolist() == [0, 2, 5]
    assert compare.filter_rows(t, ["cat", "ship"], (0.25, 0.6)).tolist() == [2, 3, 5]
    assert compare.filter_rows(t, [], (0.5, 0.5)).tolist() == [1, 5]  # bounds are inclusive
    assert compare.filter_rows(t, ["horse"]).tolist() == []


def test_sort_rows_is_stable_and_puts_nan_last():
    key = made_table()["auc_ab"].to_numpy()
    rows = np.arange(6)
    assert compare.sort_rows(rows, key, descending=True).tolist() == [3, 0, 1, 4, 5, 2]
    assert compare.sort_rows(rows, key, descending=False).tolist() == [5, 1, 4, 0, 3, 2]
    assert compare.sort_rows(np.array([4, 1, 0]), key, descending=False).tolist() == [4, 1, 0]


def test_select_rows_filters_then_sorts():
    t = made_table()
    rows = compare.select_rows(t, ["cat", "dog"], (0.0, 0.6), t["auc_ab"].to_numpy(), descending=True)
    assert rows.tolist() == [0, 1, 5, 2]
    assert compare.select_rows(t, ["dog"]).tolist() == [1, 4]


def test_disagreement_is_mean_ab_distance_in_lab_units():
    a = torch.zeros(3, 2, 4, 4)
    b = torch.zeros(3, 2, 4, 4)
    b[0, 0], b[0, 1] = 3 / AB_SCALE, 4 / AB_SCALE  # every pixel 5 apart
    b[1, 0, :2] = 10 / AB_SCALE  # half the pixels 10 apart
    d = compare.disagreement(a, b)
    np.testing.assert_allclose(d, [5.0, 5.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(compare.disagreement(b, a), d)
    with pytest.raises(ValueError):
        compare.disagreement(a, b[:2])


def test_sorting_by_disagreement_puts_most_different_first():
    t = pd.DataFrame({"class_name": ["x"] * 4, "hue": [0.1] * 4})
    a = torch.zeros(4, 2, 2, 2)
    b = a.clone()
    for i, v in enumerate([2.0, 9.0, 0.0, 5.0]):
        b[i, 0] = v / AB_SCALE
    rows = compare.select_rows(t, key=compare.disagreement(a, b), descending=True)
    assert rows.tolist() == [1, 3, 0, 2]


def test_paging():
    rows = np.arange(20)
    assert compare.page_count(20, 8) == 3
    assert compare.page_count(0, 8) == 1
    assert compare.page_of(rows, 1, 8).tolist() == list(range(8))
    assert compare.page_of(rows, 3, 8).tolist() == [16, 17, 18, 19]
    assert compare.page_of(rows, 9, 8).tolist() == [16, 17, 18, 19]  # clipped to the last page
    assert compare.page_of(np.arange(0), 1, 8).tolist() == []


# --- rendering and export ---------------------------------------------------------------------------
def test_render_rows_gray_models_truth(sample_images):
    images = sample_images[:10]
    L, ab = uint8_to_model(images)
    perfect, zero = ab.clone(), torch.zeros_like(ab)
    rows = compare.render_rows(images, [perfect, zero], np.array([7, 2]))
    assert len(rows) == 2 and all(len(r) == 4 for r in rows)
    for r, i in zip(rows, [7, 2]):
        assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in r)
        np.testing.assert_array_equal(r[-1], images[i])  # truth
        assert np.abs(r[1].astype(int) - images[i].astype(int)).max() <= 2  # true ab renders the truth
        np.testing.assert_array_equal(r[2], r[0])  # zero ab is the gray input
        assert np.abs(r[0].astype(int) - r[0][..., :1].astype(int)).max() <= 1  # gray: equal channels
    assert compare.render_rows(images, [perfect], np.array([], dtype=int)) == []


def test_grid_png_dimensions(sample_images):
    rows = compare.render_rows(sample_images[:3], [torch.zeros(3, 2, 32, 32)], np.arange(3))
    titles = compare.grid_titles(["model"])
    assert titles == ["input", "model", "truth"]
    data = compare.grid_png(rows, titles, scale=4)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        cell, pad, top = 32 * 4, 2, 15
        assert im.size == (3 * (cell + pad) + pad, top + 3 * (cell + pad) + pad)
        arr = np.asarray(im.convert("RGB"))
    # the truth cell of the first row holds the first image, enlarged 4x
    y, x = top + pad, pad + 2 * (cell + pad)
    np.testing.assert_array_equal(arr[y : y + cell : 4, x : x + cell : 4], sample_images[0])


# --- pictures ---------------------------------------------------------------------------------------
def test_read_colour_gray_rgba_palette_and_16_bit_pictures():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    p = compare.read_picture(png(Image.fromarray(colour)), "colour.png")
    np.testing.assert_array_equal(p.rgb, colour)
    assert p.is_colour and p.original_size == (50, 37) and not p.reduced and p.stem == "colour"

    gray = compare.read_picture(png(Image.fromarray(colour[..., 0], "L")), "gray.png")
    assert gray.rgb.shape == (37, 50, 3) and not gray.is_colour

    rgba = np.dstack([colour, np.zeros((37, 50), np.uint8)])  # fully transparent: white
    p = compare.read_picture(png(Image.fromarray(rgba, "RGBA")), "alpha.png")
    assert p.rgb.shape == (37, 50, 3) and (p.rgb == 255).all()

    deep = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    im16 = Image.fromarray(deep)
    assert im16.mode.startswith("I")
    p = compare.read_picture(png(im16), "deep.png")
    assert p.rgb.shape == (30, 40, 3) and p.rgb.dtype == np.uint8 and not p.is_colour
    assert p.rgb[0, 0, 0] == 0 and p.rgb[-1, -1, 0] == 255

    pal = Image.fromarray(colour).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert compare.read_picture(png(pal), "pal.png").rgb.shape == (37, 50, 3)

    jpeg = io.BytesIO()
    Image.fromarray(colour).save(jpeg, format="JPEG")
    assert compare.read_picture(jpeg.getvalue(), "c.jpg").rgb.shape == (37, 50, 3)


def test_large_pictures_are_reduced():
    big = Image.new("RGB", (300, 120), (200, 30, 30))
    p = compare.read_picture(png(big), "big.png", max_side=100)
    assert p.rgb.shape == (40, 100, 3) and p.reduced and p.original_size == (300, 120)


@pytest.mark.parametrize("data", [b"", b"not a picture at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_files_give_one_clear_error(data):
    with pytest.raises(compare.PictureError, match="bad.png"):
        compare.read_picture(data, "bad.png")


def test_truncated_picture_gives_one_clear_error():
    data = png(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(compare.PictureError, match="cut.png"):
        compare.read_picture(data[: len(data) // 2], "cut.png")


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16"])
def test_upload_bytes_to_colorized_png(colorizer, mode):
    rng = np.random.default_rng(2)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (45, 70), dtype=np.uint16))
    elif mode == "L":
        image = Image.fromarray(rng.integers(0, 256, (45, 70), dtype=np.uint8), "L")
    else:
        image = Image.fromarray(rng.integers(0, 256, (45, 70, len(mode)), dtype=np.uint8), mode)
    picture = compare.read_picture(png(image), f"in-{mode}.png")
    out = colorize_picture(colorizer, picture.rgb, net_size=64)
    assert out.shape == (45, 70, 3) and out.dtype == np.uint8
    data = compare.png_bytes(out)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.size == (70, 45) and im.mode == "RGB"
    scores = compare.score_picture(out, picture.rgb)
    assert set(scores) == set(METRICS)
    assert 0.0 <= scores["auc_ab"] <= 100.0


def test_score_picture_against_own_colours(sample_images):
    original = compare.for_display(sample_images[5], 128)
    same = compare.score_picture(original, original)
    assert same["auc_ab"] == pytest.approx(100.0)
    assert same["psnr"] == pytest.approx(PSNR_CAP)
    assert same["mae_rgb"] == pytest.approx(0.0, abs=1e-6)
    assert same["colorfulness_ratio"] == pytest.approx(1.0)
    gray = gray_images(original[None])[0]
    washed = compare.score_picture(gray, original)
    assert washed["auc_ab"] < 100.0 and washed["mae_rgb"] > 0.0 and washed["colorfulness_ratio"] < 0.1
    with pytest.raises(ValueError):
        compare.score_picture(gray[:10], original)


def test_score_reduces_large_pictures_alike():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    full = compare.score_picture(a, a, max_side=None)
    small = compare.score_picture(a, a, max_side=30)
    assert full["auc_ab"] == pytest.approx(100.0) and small["auc_ab"] == pytest.approx(100.0)


def test_before_after_wipe():
    before = np.zeros((10, 100, 3), np.uint8)
    after = np.full((10, 100, 3), 100, np.uint8)
    w = compare.before_after(before, after, 0.3)
    assert (w[:, :29] == 100).all() and (w[:, 31:] == 0).all() and (w[:, 29:30] == 255).all()
    np.testing.assert_array_equal(compare.before_after(before, after, 0.0), before)
    np.testing.assert_array_equal(compare.before_after(before, after, 1.0), after)
    with pytest.raises(ValueError):
        compare.before_after(before, after[:5])


def test_for_display_enlarges_small_pictures_only():
    small = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    big = compare.for_display(small, 256)
    assert big.shape == (256, 256, 3)
    np.testing.assert_array_equal(big[::8, ::8], small)
    wide = np.zeros((300, 400, 3), np.uint8)
    assert compare.for_display(wide, 256) is wide


def test_sample_pictures_are_enlarged_and_of_different_classes(sample_images):
    labels = np.array([3, 3, 5, 1, 5, 8, 0])
    out = compare.sample_pictures(sample_images[:7], labels, [f"c{i}" for i in range(10)], count=3, scale=8)
    assert [n for n, _ in out] == ["sample-0000-c3.png", "sample-0002-c5.png", "sample-0003-c1.png"]
    with Image.open(io.BytesIO(out[1][1])) as im:
        assert im.size == (256, 256)
        np.testing.assert_array_equal(np.asarray(im.convert("RGB"))[::8, ::8], sample_images[2])


def test_grid_captions_and_page_table_follow_the_rows(sample_images):
    import pandas as pd

    per_image = pd.DataFrame({"class_name": ["cat", "dog", "ship"], "hue": [0.1, 0.5, 0.9]})
    a = pd.DataFrame({"auc_ab": [90.0, 80.5, 70.25]})
    b = pd.DataFrame({"auc_ab": [60.0, 50.0, 40.0]})
    rows = np.array([2, 0])
    assert compare.grid_captions(per_image, [a, b], rows, "auc_ab") == [
        ["#2 ship", "auc_ab 70.2", "auc_ab 40.0", "hue 0.90"], ["#0 cat", "auc_ab 90.0", "auc_ab 60.0", "hue 0.10"]]
    ratio = pd.DataFrame({"colorfulness_ratio": [0.4321, 1.0, float("nan")]})
    (first, second) = compare.grid_captions(per_image, [ratio], rows, "colorfulness_ratio")
    assert first[1] == "colour ratio –" and second[1] == "colour ratio 0.43"
    ssim = pd.DataFrame({"ssim": [0.95213, 0.9, 0.8]})
    assert compare.grid_captions(per_image, [ssim], rows[1:], "ssim")[0][1] == "ssim 0.952"
    apart = np.array([1.5, 0.0, 12.345])
    with_extra = compare.grid_captions(per_image, [a], rows, "auc_ab", extra=apart, extra_label="Δab")
    assert [r[0] for r in with_extra] == ["#2 ship\nΔab 12.35", "#0 cat\nΔab 1.50"]
    table = compare.page_table(per_image, [a, b], ["A", "B"], rows, "auc_ab")
    assert list(table.index) == ["#2", "#0"] and list(table.columns) == ["class", "hue", "A", "B"]
    assert table.loc["#2", "A"] == 70.25 and table.loc["#0", "B"] == 60.0 and table.loc["#0", "class"] == "cat"
    table = compare.page_table(per_image, [a], ["A"], rows, "auc_ab", extra=apart, extra_label="Δab")
    assert list(table.columns) == ["class", "hue", "Δab", "A"] and table.loc["#2", "Δab"] == 12.345


def test_grid_png_with_captions_adds_a_line_under_each_row(sample_images):
    rows = compare.render_rows(sample_images[:2], [torch.zeros(2, 2, 32, 32)], np.arange(2))
    captions = [["#0 a", "x", "hue 0.1"], ["#1 b", "y", "hue 0.2"]]
    with Image.open(io.BytesIO(compare.grid_png(rows, compare.grid_titles(["m"]), captions=captions))) as im:
        cell, pad, line = 128, 2, 15
        assert im.size == (3 * (cell + pad) + pad, line + 2 * (cell + line + pad) + pad)
        arr = np.asarray(im.convert("RGB"))
    band = arr[line + pad + cell : line + pad + cell + line, pad : pad + cell]
    assert (band < 200).any()  # the caption is drawn (dark text on the white band)
    y = line + pad + (cell + line + pad)  # the second row starts below the first one's caption band
    np.testing.assert_array_equal(arr[y : y + cell : 4, pad + 2 * (cell + pad) :][:32, : cell : 4], sample_images[1])
    with pytest.raises(ValueError, match="caption rows"):
        compare.grid_png(rows, ["a", "b", "c"], captions=captions[:1])
    two = [["#0 a\nΔab 1.00", "x", "hue 0.1"], ["#1 b\nΔab 2.00", "y", "hue 0.2"]]  # a second line: a taller band
    with Image.open(io.BytesIO(compare.grid_png(rows, compare.grid_titles(["m"]), captions=two))) as im:
        assert im.size[1] == line + 2 * (cell + 2 * line + pad) + pad
