"""core.explore: hue histograms and hue ranges, split tables, model choice and comparison strips."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core import explore
from core.colour import uint8_to_model


def test_hue_colour_primaries() -> None:
    assert explore.hue_colour(0.0) == "#ff0000"
    assert explore.hue_colour(1 / 3) == "#00ff00"
    assert explore.hue_colour(2 / 3) == "#0000ff"
    assert explore.hue_colour(1.0) == "#ff0000"  # wraps round


def test_hue_histogram_frame_counts_and_shares() -> None:
    hues = {"train": np.array([0.01, 0.02, 0.5, 0.99]), "val": np.array([0.5])}
    frame = explore.hue_histogram_frame(hues, bins=4)
    assert len(frame) == 8
    train = frame[frame["part"] == "train"].set_index("bin")
    assert train["count"].tolist() == [2, 0, 1, 1]
    assert train["share"].sum() == pytest.approx(100.0)
    assert train.loc[0, "share"] == pytest.approx(50.0)
    val = frame[frame["part"] == "val"].set_index("bin")
    assert val["count"].tolist() == [0, 0, 1, 0]
    assert frame["hue_lo"].iloc[1] == pytest.approx(0.25) and frame["hue_mid"].iloc[1] == pytest.approx(0.375)
    assert train.loc[0, "colour"] == explore.hue_colour(0.125)


def test_hue_histogram_frame_empty_part_has_zero_shares() -> None:
    frame = explore.hue_histogram_frame({"val": np.array([])}, bins=36)
    assert len(frame) == 36 and frame["count"].sum() == 0 and frame["share"].sum() == 0


def test_indices_in_hue_range() -> None:
    hues = np.array([0.9, 0.1, 0.5, 0.3, 1.0, 0.0, 0.2])
    assert explore.indices_in_hue_range(hues, 0.1, 0.3).tolist() == [1, 6]  # sorted by hue, hi excluded
    assert explore.indices_in_hue_range(hues, 0.1, 0.3, order="position").tolist() == [1, 6]
    assert explore.indices_in_hue_range(hues, 0.2, 1.0).tolist() == [6, 3, 2, 0, 4]  # hi = 1 includes 1
    assert explore.indices_in_hue_range(hues, 0.0, 1.0, order="position").tolist() == list(range(7))
    assert explore.indices_in_hue_range(hues, 0.85, 0.15).tolist() == [5, 1, 0, 4]  # wraps round red
    two = explore.indices_in_hue_range(hues, 0.0, 1.0, limit=2).tolist()
    everything = explore.indices_in_hue_range(hues, 0.0, 1.0).tolist()
    assert len(two) == 2 and set(two) <= set(everything)
    assert sorted(two, key=everything.index) == two  # still in hue order
    assert explore.indices_in_hue_range(hues, 0.0, 1.0, limit=2).tolist() == two  # a fixed draw
    assert explore.indices_in_hue_range(hues, 0.6, 0.7).size == 0
    with pytest.raises(ValueError):
        explore.indices_in_hue_range(hues, 0, 1, order="size")


def _summary(kind: str, n_val: int) -> dict:
    return {"class_names": ["cat", "dog"], "n_train": 10 - n_val, "n_val": n_val, "n_test": 4,
            "n_grayscale_dropped": 1, "ks_hue": 0.2, "ks_pvalue": 0.5,
            "class_counts": {"train": [5 - n_val, 5], "val": [n_val, 0], "test": [2, 2]}}


def test_split_overview_and_class_counts() -> None:
    summaries = {"random": _summary("random", 1), "hue": _summary("hue", 2)}
    overview = explore.split_overview(summaries)
    assert list(overview.index) == ["random", "hue"]
    assert overview.loc["hue", "n_val"] == 2 and overview.loc["random", "n_train"] == 9
    counts = explore.class_counts_table(summaries)
    assert list(counts.columns) == ["random · train", "random · val", "hue · train", "hue · val", "test"]
    assert list(counts.index) == ["cat", "dog", "total"]
    assert counts.loc["cat", "hue · val"] == 2 and counts.loc["total", "test"] == 4
    assert counts.loc["total", "random · train"] == 9


def _result(n: int, **metrics: float) -> SimpleNamespace:
    return SimpleNamespace(n_images=n, metrics=metrics)


def test_headline_table_sorted_by_auc() -> None:
    rows = [("baseline:gray", "baseline", "baseline", _result(5, auc_ab=80.0, mae_rgb=12.0, psnr=25.0,
                                                              colorfulness_ratio=0.0)),
            ("u", "unet", "run", _result(5, auc_ab=90.0, mae_rgb=9.0, psnr=27.0, colorfulness_ratio=0.6))]
    table = explore.headline_table(rows)
    assert list(table.index) == ["u", "baseline:gray"]
    assert list(table.columns) == ["method", "kind", "n_images", "auc_ab", "mae_rgb", "psnr", "colorfulness_ratio"]
    assert table.loc["u", "mae_rgb"] == 9.0
    missing = explore.headline_table([("x", "unet", "run", _result(1, auc_ab=1.0))])
    assert np.isnan(missing.loc["x", "psnr"])
    assert explore.headline_table([]).empty


def test_strip_models_prefers_shipped_and_orders_by_method() -> None:
    e = lambda name, method, kind: SimpleNamespace(name=name, method=method, kind=kind)  # noqa: E731
    entries = [e("run:n1", "nogan", "run"), e("run:u1", "unet", "run"), e("unet-ship", "unet", "shipped"),
               e("run:n2", "nogan", "run"), e("cls", "classifier", "run")]
    chosen = explore.strip_models(entries)
    assert [c.name for c in chosen] == ["unet-ship", "run:n2"]
    assert explore.strip_models([]) == []


def test_strip_positions() -> None:
    assert explore.strip_positions(500, 6).tolist() == [0, 100, 200, 299, 399, 499]
    assert explore.strip_positions(3, 6).tolist() == [0, 1, 2]
    assert explore.strip_positions(0).size == 0


def test_gray_and_colorized_images(sample_images: np.ndarray) -> None:
    images = sample_images[:4]
    gray = explore.gray_images(images)
    assert gray.shape == images.shape and gray.dtype == np.uint8
    assert np.abs(gray[..., 0].astype(int) - gray[..., 2].astype(int)).max() <= 1  # neutral
    _, ab = uint8_to_model(images)
    back = explore.colorized_images(images, ab)
    assert np.abs(back.astype(int) - images.astype(int)).max() <= 3  # true a,b rebuild the picture
    zero = explore.colorized_images(images, torch.zeros_like(ab))
    assert np.array_equal(zero, gray)
    with pytest.raises(ValueError):
        explore.colorized_images(images, ab[:2])


def test_stack_column_and_comparison_strip(sample_images: np.ndarray) -> None:
    images = sample_images[:3]
    col = explore.stack_column(images, scale=2, pad=1)
    assert col.shape == (3 * 64 + 2, 64, 3)
    assert np.array_equal(col[:2, :2], np.broadcast_to(images[0, 0, 0], (2, 2, 3)))  # nearest-neighbour
    assert np.all(col[64] == 255)  # the gap
    _, ab = uint8_to_model(images)
    strip = explore.comparison_strip(images, {"U-Net · m": ab}, scale=2)
    assert [t for t, _ in strip] == ["Gray input", "U-Net · m", "Truth"]
    assert all(pic.shape == (3 * 64 + 4, 64, 3) for _, pic in strip)
    assert np.array_equal(strip[-1][1][:64], np.repeat(np.repeat(images[0], 2, 0), 2, 1))
    assert [t for t, _ in explore.comparison_strip(images, {})] == ["Gray input", "Truth"]
    with pytest.raises(ValueError):
        explore.stack_column(images[:0])


def test_enlarged() -> None:
    img = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    out = explore.enlarged(img, 3)
    assert len(out) == 1 and out[0].shape == (6, 6, 3)
    assert np.array_equal(out[0][2, 3], img[0, 0, 1]) and np.array_equal(out[0][5, 0], img[0, 1, 0])


def test_group_table_against_a_baseline_and_zoomed_range() -> None:
    import pandas as pd

    def result(model: str, values: list[float]) -> SimpleNamespace:
        per_class = pd.DataFrame({"class_name": ["cat", "dog", "ship"], "n_images": [2, 0, 3], "auc_ab": values})
        return SimpleNamespace(model=model, per_class=per_class)

    rows = explore.group_table([result("gray", [90.0, 1.0, 91.0]), result("unet", [91.5, 5.0, 90.0]),
                                result("unet", [92.0, 5.0, 92.0])], "per_class", "auc_ab")
    assert list(rows["model"]) == ["gray", "gray", "unet", "unet", "unet (2)", "unet (2)"]  # dog: no images
    assert list(rows["vs_baseline"]) == pytest.approx([0.0, 0.0, 1.5, -1.0, 2.0, 1.0])
    alone = explore.group_table([result("unet", [91.5, 5.0, 90.0])], "per_class", "auc_ab", baseline=None)
    assert alone["vs_baseline"].isna().all() and list(alone["value"]) == [91.5, 90.0]
    lo, hi = explore.zoomed_range([90.0, 91.0, float("nan")])
    assert lo == pytest.approx(89.9) and hi == pytest.approx(91.1)
    assert explore.zoomed_range([float("nan")]) is None
