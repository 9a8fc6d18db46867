"""The Home and Data & splits pages, run headless with Streamlit's AppTest on the bundled sample."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.run_util import train_tiny

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboard"
HOME = DASHBOARD / "Home.py"
DATA_PAGE = DASHBOARD / "pages" / "1_Data_and_splits.py"
TIMEOUT = 180

if str(DASHBOARD) not in sys.path:  # pages import `common` as they do under `streamlit run dashboard/Home.py`
    sys.path.insert(0, str(DASHBOARD))

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs folder and no shipped checkpoints; the cached model list is cleared."""
    import streamlit as st

    import core.inference

    runs = tmp_path / "runs"
    runs.mkdir()
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(runs))
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", shipped)
    monkeypatch.setenv("COLORIZE_DATA", "sample")
    st.cache_data.clear()
    yield runs
    st.cache_data.clear()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, completed one-epoch U-Net run on a slice of the sample."""

    out = tmp_path_factory.mktemp("tiny") / "tiny-unet"
    train_tiny(out)
    return out


def _app(path: Path) -> AppTest:
    at = AppTest.from_file(str(path), default_timeout=TIMEOUT)
    at.session_state["source"] = "sample"
    return at.run()


def _text(at: AppTest) -> str:
    """All markdown, captions, info boxes and metric labels/values of a run, as one string."""
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.error)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def _image_captions(at: AppTest) -> list[str]:
    """Captions of every image shown (st.image lists)."""
    return [c for el in at.image for c in el.captions]


# --- Home ---------------------------------------------------------------------------------------------
def test_home_empty_state(models_dir: Path) -> None:
    at = _app(HOME)
    assert not at.exception, at.exception
    text = _text(at)
    assert "No trained models yet" in text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test"] == "1,000"
    assert int(metrics["Train"].replace(",", "")) + int(metrics["Validation"].replace(",", "")) \
        + int(metrics["Grayscale dropped"].replace(",", "")) == 1000
    # the table holds only the gray baseline; the strip is gray | truth
    table = at.dataframe[0].value
    assert list(table.index) == ["baseline:gray"]
    assert {"auc_ab", "mae_rgb", "psnr", "colorfulness_ratio"} <= set(table.columns)
    headers = [m.value for m in at.markdown if m.value.startswith("**")]
    assert headers == ["**Gray input**", "**Truth**"]


def test_home_lists_a_completed_run(models_dir: Path, tiny_run: Path) -> None:
    import shutil

    from core.tags import add_tag

    shutil.copytree(tiny_run, models_dir / "tiny-unet")
    add_tag(models_dir / "tiny-unet", "keep")  # Home shows shipped models and runs tagged keep
    at = _app(HOME)
    assert not at.exception, at.exception
    assert "No trained models yet" not in _text(at)
    table = at.dataframe[0].value
    assert "run:tiny-unet" in table.index and "baseline:gray" in table.index
    assert table.loc["run:tiny-unet", "method"] == "unet"
    assert table.loc["run:tiny-unet", "n_images"] == 500
    assert table.loc["baseline:gray", "colorfulness_ratio"] < 0.01
    headers = [m.value for m in at.markdown if m.value.startswith("**")]
    assert headers[0] == "**Gray input**" and headers[-1] == "**Truth**"
    assert any("run:tiny-unet" in h for h in headers)


def test_home_links_only_existing_pages(models_dir: Path) -> None:
    at = _app(HOME)
    assert not at.exception
    shown = {el.proto.page for el in at.get("page_link")}
    assert "Data_and_splits" in shown
    existing = {p.stem.split("_", 1)[1] for p in (DASHBOARD / "pages").glob("*.py")}
    assert shown <= existing


# --- Data & splits ------------------------------------------------------------------------------------
def _overview(at: AppTest):
    return at.dataframe[0].value


def test_data_page_renders_and_reacts_to_split_settings(models_dir: Path) -> None:
    at = _app(DATA_PAGE)
    assert not at.exception, at.exception
    overview = _overview(at)
    assert list(overview.index) == ["random", "hue"]
    n_val = int(overview.loc["hue", "n_val"])
    assert n_val > 0
    # two histograms titled with their KS statistic
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    assert all("KS" in c.proto.spec for c in charts)
    # class counts and the dropped grayscale images
    classes = at.dataframe[1].value
    assert "airplane" in classes.index and "total" in classes.index
    n_dropped = int(overview.loc["hue", "n_grayscale_dropped"])
    assert f"**{n_dropped:,}** images" in _text(at)
    assert sum(1 for c in _image_captions(at) if c.startswith("#") and "·" not in c) == min(n_dropped, 40)

    at.slider(key="val_fraction").set_value(0.3).run()
    assert not at.exception
    assert int(_overview(at).loc["hue", "n_val"]) > 2 * n_val

    ks_before = float(_overview(at).loc["random", "ks_hue"])
    val_before = list(at.dataframe[1].value["random · val"])
    at.number_input(key="seed").set_value(3).run()
    assert not at.exception
    after = _overview(at)
    assert float(after.loc["random", "ks_hue"]) != ks_before or list(at.dataframe[1].value["random · val"]) \
        != val_before


def test_data_page_hue_range_slider_changes_images(models_dir: Path) -> None:
    at = _app(DATA_PAGE)
    assert not at.exception
    all_captions = [c for c in _image_captions(at) if "·" in c]
    at.slider(key="hue_range").set_value((0.5, 0.6)).run()
    assert not at.exception
    narrow = [c for c in _image_captions(at) if "·" in c]
    assert narrow and narrow != all_captions
    hues = [float(c.split("·")[1]) for c in narrow]
    assert all(0.5 - 0.005 <= h <= 0.6 + 0.005 for h in hues)
    assert "[0.500, 0.600]" in _text(at)
    # the other split's images for the same range
    at.radio(key="gallery_split").set_value("random").run()
    assert not at.exception
    assert "random split" in _text(at)


def test_data_page_arithmetic_hue(models_dir: Path) -> None:
    at = _app(DATA_PAGE)
    at.radio(key="hue_method").set_value("arithmetic").run()
    assert not at.exception
    assert "arithmetic mean hue" in _text(at)


def test_home_after_a_restart_reads_its_evaluations_from_disk(models_dir: Path, tiny_run: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted dashboard (nothing in memory) shows the same figures without evaluating anything again."""
    import shutil

    import streamlit as st

    import core.eval_cache
    from core.tags import add_tag

    shutil.copytree(tiny_run, models_dir / "tiny-unet")
    add_tag(models_dir / "tiny-unet", "keep")  # Home shows shipped models and runs tagged keep
    first = _app(HOME)
    assert not first.exception, first.exception
    before = first.dataframe[0].value
    st.cache_resource.clear()  # what a server restart loses: data, models and evaluations held in memory

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated again instead of reading the disk cache")

    monkeypatch.setattr(core.eval_cache, "evaluate", refuse)
    again = _app(HOME)
    assert not again.exception, again.exception
    assert not again.error, [e.value for e in again.error]
    after = again.dataframe[0].value
    assert set(after.index) == {"run:tiny-unet", "baseline:gray"}
    assert after.equals(before)
