"""Home and the Blind test offer the shipped models and the runs tagged ``keep``; the other completed runs are one
toggle ("Show all runs") away. Run headless with Streamlit's AppTest over a real tiny run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from core.tags import add_tag
from dashboard.display import hidden_runs_note
from tests.run_util import train_tiny

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboard"
HOME = DASHBOARD / "Home.py"
BLIND = DASHBOARD / "pages" / "6_Blind_test.py"
TIMEOUT = 180
RUN = "run:tiny-unet"

if str(DASHBOARD) not in sys.path:  # pages import `common` as they do under `streamlit run dashboard/Home.py`
    sys.path.insert(0, str(DASHBOARD))

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, completed one-epoch U-Net run on a slice of the sample (untagged)."""

    out = tmp_path_factory.mktemp("featured") / "tiny-unet"
    train_tiny(out)
    return out


@pytest.fixture
def runs(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runs folder holding a copy of the tiny run; no shipped checkpoints; the sample; private tallies."""
    import streamlit as st

    import core.inference

    folder = tmp_path / "runs"
    shutil.copytree(tiny_run, folder / "tiny-unet")
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(folder))
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", shipped)
    monkeypatch.setenv("COLORIZE_DATA", "sample")
    monkeypatch.setenv("COLORIZE_BLIND_TEST_FILE", str(tmp_path / "tallies.json"))
    st.cache_data.clear()
    yield folder
    st.cache_data.clear()


def _app(path: Path, **state: object) -> AppTest:
    at = AppTest.from_file(str(path), default_timeout=TIMEOUT)
    at.session_state["source"] = "sample"
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def _text(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in (*at.markdown, *at.caption, *at.info, *at.warning))


def test_hidden_runs_note():
    assert hidden_runs_note(0) == ""
    assert hidden_runs_note(1).startswith("1 completed run is not shown") and "keep" in hidden_runs_note(1)
    assert hidden_runs_note(3).startswith("3 completed runs are not shown")


def test_home_shows_an_untagged_run_only_when_asked(runs: Path) -> None:
    at = _app(HOME)
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value.index) == ["baseline:gray"]
    assert "1 completed run is not shown" in _text(at) and "No trained models yet" not in _text(at)

    at.toggle(key="home_show_all_runs").set_value(True).run()
    assert not at.exception, at.exception
    assert RUN in at.dataframe[0].value.index
    assert "not shown" not in _text(at)


def test_home_shows_a_keep_run_by_default(runs: Path) -> None:
    add_tag(runs / "tiny-unet", "keep")
    at = _app(HOME)
    assert not at.exception, at.exception
    assert RUN in at.dataframe[0].value.index and "not shown" not in _text(at)
    assert not at.toggle(key="home_show_all_runs").value


def test_blind_test_pool_follows_the_toggle(runs: Path) -> None:
    at = _app(BLIND)
    assert not at.exception, at.exception
    assert "1 completed run is not shown" in _text(at)
    assert not at.get("image") and "bt_trial" not in at.session_state
    assert not [b for b in at.button if b.key in ("bt_left", "bt_right")]

    at.toggle(key="bt_show_all_runs").set_value(True).run()
    assert not at.exception, at.exception
    assert at.session_state["bt_trial"].model == RUN
    assert sum(len(el.proto.imgs) for el in at.get("image")) == 2
    at.selectbox(key="bt_model").set_value(RUN).run()
    at.toggle(key="bt_show_all_runs").set_value(False).run()  # the chosen model is hidden again: no stale choice
    assert not at.exception, at.exception
    assert "bt_model" not in at.session_state or at.session_state["bt_model"] != RUN
    assert not at.get("image")


def test_blind_test_offers_a_keep_run_by_default(runs: Path) -> None:
    add_tag(runs / "tiny-unet", "keep")
    at = _app(BLIND)
    assert not at.exception, at.exception
    assert at.session_state["bt_trial"].model == RUN
    assert "not shown" not in _text(at)



def test_the_warm_up_loads_stored_page_evaluations_and_computes_none(tmp_path, monkeypatch):
    import common
    import streamlit as st

    import core.eval_cache

    monkeypatch.setenv("COLORIZE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "runs"))
    home = common.PAGE_EVALUATIONS["home"]
    st.cache_resource.clear()  # nothing from the pages opened before: this test's cache folder is a new one
    stored = common.evaluate_cached("baseline:gray", "gray", "sample", home["part"], home["limit"],
                                    ssim=home["ssim"])  # computed and stored on disk, as a page leaves it
    st.cache_resource.clear()  # a restarted server: nothing in memory

    def no_evaluation(*_args, **_kwargs):
        raise AssertionError("the warm-up evaluated something")

    monkeypatch.setattr(core.eval_cache, "evaluate", no_evaluation)
    assert common.warm_evaluations("sample") == 1  # the one stored; the shipped models' are not on disk here
    again = common.evaluate_cached("baseline:gray", "gray", "sample", home["part"], home["limit"], ssim=home["ssim"])
    finite = {k: v for k, v in stored.metrics.items() if v == v}  # ssim is NaN: not computed at Home's setting
    assert {k: again.metrics[k] for k in finite} == finite and again.n_images == stored.n_images
    assert common.evaluate_cached("baseline:mean_ab", "mean_ab", "sample", "test", 500, ssim=False,
                                  only_stored=True) is None
