"""The Compare and Colorize pages, run with AppTest on the bundled sample and a tiny trained run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.run_util import train_tiny

ROOT = Path(__file__).resolve().parents[1]
COMPARE = str(ROOT / "dashboard" / "pages" / "3_Compare.py")
COLORIZE = str(ROOT / "dashboard" / "pages" / "4_Colorize.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder holding one tiny completed U-Net run."""
    runs = tmp_path_factory.mktemp("compare-runs")
    train_tiny(runs / "tiny-unet")
    return runs


@pytest.fixture
def models(runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Only the tiny run is available (no shipped checkpoints); returns its path, the model key."""
    import core.inference

    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(runs_dir))
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", tmp_path / "no-checkpoints")
    st.cache_data.clear()
    return str(runs_dir / "tiny-unet")


@pytest.fixture
def no_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.inference

    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "empty-runs"))
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", tmp_path / "no-checkpoints")
    st.cache_data.clear()


def ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def summary(at: AppTest):
    """The summary metrics table above the grid (one row per model and baseline)."""
    return at.table[0].value


def grid_table(at: AppTest):
    """The table of the grid page's rows: index = image index; class, hue and one metric column per model."""
    tables = [t.value for t in at.table]
    return tables[1] if len(tables) > 1 else None  # the first is the summary of the chosen models


def column_titles(at: AppTest) -> list[str]:
    """The models of the grid, in column order (from the page table)."""
    table = grid_table(at)
    return [] if table is None else [c for c in table.columns if c not in ("class", "hue", "Δab")]


def shown_rows(at: AppTest) -> list[int]:
    table = grid_table(at)
    return [] if table is None else [int(str(i).lstrip("#")) for i in table.index]


def metric_values(at: AppTest, model: str = "run:tiny-unet") -> list[float]:
    return [float(v) for v in grid_table(at)[model]]


def grid_figure(at: AppTest):
    """The grid page as the picture the page shows (one image: titles, cells, a caption line under each)."""
    assert len(at.image) == 1
    return at.image[0]


def compare_page() -> AppTest:
    at = AppTest.from_file(COMPARE, default_timeout=TIMEOUT)
    at.session_state["source"] = "sample"
    return at


# --- Compare ----------------------------------------------------------------------------------------
def test_compare_grid_columns_follow_the_chosen_models(models):
    at = ok(compare_page())
    assert column_titles(at) == ["run:tiny-unet"]
    grid_figure(at)
    assert set(summary(at).index) == {"run:tiny-unet", "gray", "mean_ab"}
    assert at.download_button(key="compare_export") is not None
    assert shown_rows(at) == list(range(8))
    assert all(0 <= v <= 100 for v in metric_values(at))

    at.multiselect(key="compare_models").set_value([models, "baseline:gray", "baseline:mean_ab"])
    ok(at)
    assert column_titles(at) == ["run:tiny-unet", "gray (baseline)", "mean_ab (baseline)"]
    grid_figure(at)
    assert list(summary(at).index) == list(dict.fromkeys(summary(at).index))  # no repeats


def test_compare_class_filter_sort_and_paging_change_the_rows(models):
    at = ok(compare_page())
    first_page = shown_rows(at)

    at.multiselect(key="compare_classes").set_value(["cat"])
    ok(at)
    cats = shown_rows(at)
    assert cats and cats != first_page and set(grid_table(at)["class"]) == {"cat"}

    at.multiselect(key="compare_classes").set_value([])
    at.selectbox(key="compare_sort").set_value("metric")
    ok(at)  # the order control is enabled once a sort is chosen
    at.radio(key="compare_order").set_value("ascending")
    ok(at)
    ascending = metric_values(at)
    assert len(ascending) == 8 and ascending == sorted(ascending)
    at.radio(key="compare_order").set_value("descending")
    ok(at)
    descending = metric_values(at)
    assert descending == sorted(descending, reverse=True) and descending[0] > ascending[0]

    at.number_input(key="compare_page").set_value(2)
    ok(at)
    assert metric_values(at)[0] <= descending[-1]

    at.slider(key="compare_hue").set_value((0.0, 0.05))
    ok(at)
    assert all(h <= 0.05 for h in grid_table(at)["hue"])

    at.number_input(key="compare_limit").set_value(8)  # one page left: the page number follows
    ok(at)
    assert at.number_input(key="compare_page").value == 1
    present = set(grid_table(at)["class"])
    absent = sorted(set(at.multiselect(key="compare_classes").options) - present)[0]  # 8 images, 10 classes
    at.multiselect(key="compare_classes").set_value([absent])
    ok(at)
    assert shown_rows(at) == [] and any("No image matches" in i.value for i in at.info)


def test_compare_sort_by_disagreement(models):
    at = compare_page()
    at.session_state["compare_limit"] = 100
    at.session_state["compare_models"] = [models, "baseline:mean_ab"]
    at.session_state["compare_sort"] = "disagreement"
    ok(at)
    shown = shown_rows(at)
    assert len(shown) == 8 and shown != list(range(8))
    assert at.download_button(key="compare_export") is not None
    table = grid_table(at)
    assert list(table.columns) == ["class", "hue", "Δab", "run:tiny-unet", "mean_ab (baseline)"]
    apart = list(table["Δab"])
    assert apart == sorted(apart, reverse=True) and apart[0] > apart[-1] >= 0  # shown, in the order sorted by
    assert any("Disagreement (Δab)" in c.value for c in at.caption)
    at.radio(key="compare_order").set_value("ascending")
    ok(at)
    assert list(grid_table(at)["Δab"]) == sorted(grid_table(at)["Δab"])


def test_compare_without_models_still_offers_baselines(no_models):
    at = compare_page()
    at.session_state["compare_limit"] = 50
    at.run()
    assert not at.exception
    assert any("No trained models yet" in i.value for i in at.info)
    assert column_titles(at) == ["gray (baseline)", "mean_ab (baseline)"]
    grid_figure(at)


# --- Colorize ---------------------------------------------------------------------------------------
def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def colorize_page() -> AppTest:
    return AppTest.from_file(COLORIZE, default_timeout=TIMEOUT)


def captions(at: AppTest) -> list[str]:
    return [c for im in at.image for c in im.captions]


def wipe(at: AppTest) -> str:
    """The before/after view's HTML (one self-contained iframe page)."""
    (frame,) = at.get("iframe")
    return frame.proto.srcdoc


def test_colorize_sample_photographs(models):
    at = ok(colorize_page())
    assert any("Upload" in i.value for i in at.info)
    assert at.select_slider(key="colorize_size").value == "card"
    assert "run:tiny-unet** 64 px (no photo check in its card)" in at.caption[0].value
    at.radio(key="colorize_input").set_value("samples")
    ok(at)
    picked = at.multiselect(key="colorize_samples").value
    assert picked == ["photo-astronaut.png", "photo-coffee.png"]
    # per picture: input | model | original, each with its network size; then the before/after view
    assert captions(at)[:3] == ["input (gray)", "run:tiny-unet · 64 px", "original"] and len(at.image) == 6
    assert len(at.download_button) == 2
    table = at.dataframe[0].value
    assert list(table.columns) == ["auc_ab", "psnr", "mae_rgb", "colorfulness_ratio"]
    assert list(table.index) == ["run:tiny-unet · 64 px", "gray (baseline)"]
    assert 0 <= table.loc["run:tiny-unet · 64 px", "auc_ab"] <= 100 and table.loc["gray (baseline)", "mae_rgb"] > 1
    page = wipe(at)
    assert page.count("data:image/jpeg;base64,") == 2 and "http" not in page.replace("http://www.w3.org", "")
    assert "run:tiny-unet · 64 px" in page and "gray input" in page

    at.select_slider(key="colorize_size").set_value(32)
    at.radio(key="colorize_ba_against").set_value("original")
    ok(at)
    assert captions(at)[1] == "run:tiny-unet · 32 px" and "All models at **32 px**" in at.caption[0].value
    assert ">original<" in wipe(at)


def test_colorize_gallery(models):
    at = colorize_page()
    at.session_state["colorize_input"] = "samples"
    at.session_state["colorize_layout"] = "gallery"
    ok(at)
    assert captions(at) == ["photo-astronaut.png · input (gray)", "photo-astronaut.png · run:tiny-unet · 64 px",
                            "photo-coffee.png · input (gray)", "photo-coffee.png · run:tiny-unet · 64 px"]
    assert len(at.download_button) == 2
    table = at.dataframe[0].value
    assert len(table) == 4 and {i[1] for i in table.index} == {"run:tiny-unet · 64 px", "gray (baseline)"}


def test_shipped_models_start_at_their_measured_sizes(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "no-runs"))
    st.cache_data.clear()
    at = colorize_page()
    at.session_state["colorize_input"] = "samples"
    at.session_state["colorize_samples"] = ["photo-chelsea.png"]
    ok(at)
    note = at.caption[0].value
    for name in ("unet", "dcgan", "nogan"):
        card = json.loads((ROOT / "checkpoints" / f"{name}.json").read_text())
        size = card["default_net_size"]
        value = card["net_size_check"]["mean_by_size"][str(size)]
        assert f"**{name}** {size} px (mae_rgb {value:.2f} against gray's {card['net_size_check']['gray_mean']:.2f})" \
            in note
        assert f"{name} · {size} px" in captions(at)
    assert "worse than gray" in note and "Larger sizes" in note
    st.cache_data.clear()


def test_a_large_upload_is_colorized_at_full_resolution(models):
    import common

    rng = np.random.default_rng(3)
    big = Image.fromarray(np.repeat(rng.integers(0, 256, (210, 25, 3), dtype=np.uint8), 10, axis=0).repeat(10, axis=1))
    assert big.size == (250, 2100)
    wide = Image.fromarray(rng.integers(0, 256, (40, 2500, 3), dtype=np.uint8))
    at = colorize_page()
    at.run()
    at.file_uploader(key="colorize_upload").set_value([("tall.png", png(big), "image/png"),
                                                       ("wide.png", png(wide), "image/png")])
    ok(at)
    assert "250×2100 pixels, colorized at full resolution" in at.caption[1].value
    kept = [v for v in common.shared_cache("colorized", 12)._items.values()]
    assert {v.shape for v in kept} >= {(2100, 250, 3), (40, 2500, 3)}  # the colorizations are the uploads' size
    page = wipe(at)
    assert page.count("data:image/jpeg;base64,") == 2


def test_colorize_uploads_with_a_corrupt_file(models):
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (40, 60), dtype=np.uint8), "L")
    deep = Image.fromarray(rng.integers(0, 65536, (24, 30), dtype=np.uint16))
    at = AppTest.from_file(COLORIZE, default_timeout=TIMEOUT)
    at.run()
    at.file_uploader(key="colorize_upload").set_value([
        ("gray.png", png(gray), "image/png"),
        ("broken.png", b"\x89PNG\r\n\x1a\nbroken", "image/png"),
        ("deep.png", png(deep), "image/png"),
    ])
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    assert [s.value for s in at.subheader] == ["gray.png", "deep.png", "Before / after"]
    assert len(at.get("iframe")) == 1
    assert len(at.download_button) == 2  # one model, two readable pictures
    assert len(at.dataframe) == 0  # gray pictures have no colours to score against


def test_colorize_without_models(no_models):
    at = AppTest.from_file(COLORIZE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert any("No trained models yet" in i.value for i in at.info)
    assert len(at.file_uploader) == 0
