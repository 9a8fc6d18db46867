"""The Leaderboard and Blind test pages, run headless with Streamlit's AppTest on the bundled sample."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.run_util import train_tiny

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboard"
LEADERBOARD = DASHBOARD / "pages" / "5_Leaderboard.py"
BLIND = DASHBOARD / "pages" / "6_Blind_test.py"
TIMEOUT = 180
RUN_NAME = "run:tiny-unet"

if str(DASHBOARD) not in sys.path:  # pages import `common` as they do under `streamlit run dashboard/Home.py`
    sys.path.insert(0, str(DASHBOARD))

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, completed one-epoch U-Net run on a slice of the sample, alone in its runs folder, tagged keep (so the
    Blind test offers it without "Show all runs")."""
    from core.tags import add_tag

    out = tmp_path_factory.mktemp("runs") / "tiny-unet"
    train_tiny(out)
    add_tag(out, "keep")
    return out


def _isolate(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Use ``runs`` as the runs folder, no shipped checkpoints, the sample, and a private tally file."""
    import streamlit as st

    import core.inference

    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    tallies = tmp_path / "blind" / "tallies.json"
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(runs))
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", shipped)
    monkeypatch.setenv("COLORIZE_DATA", "sample")
    monkeypatch.setenv("COLORIZE_BLIND_TEST_FILE", str(tallies))
    st.cache_data.clear()
    return tallies


@pytest.fixture
def with_run(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny run is the only model; returns the tally file."""
    tallies = _isolate(tiny_run.parent, tmp_path, monkeypatch)
    yield tallies
    import streamlit as st

    st.cache_data.clear()


@pytest.fixture
def no_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No run and no shipped checkpoint; returns the tally file."""
    runs = tmp_path / "runs"
    runs.mkdir()
    tallies = _isolate(runs, tmp_path, monkeypatch)
    yield tallies
    import streamlit as st

    st.cache_data.clear()


def _app(path: Path, **state: object) -> AppTest:
    at = AppTest.from_file(str(path), default_timeout=TIMEOUT)
    at.session_state["source"] = "sample"
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def _text(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success)]
    return "\n".join(str(p) for p in parts)


def _chart(at: AppTest, title: str) -> tuple[dict, dict]:
    """The Vega-Lite chart whose title holds ``title``: its spec, and its datasets as frames by name."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        if title in json.dumps(spec.get("title", "")):
            return spec, {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in element.proto.datasets}
    raise AssertionError(f"no chart titled {title!r}")


def _bars(chart: tuple[dict, dict]):
    """The bars' rows (model, group, n_images and the plotted figure) and the bar layer's spec."""
    spec, data = chart
    layer = next(layer for layer in spec.get("layer", [spec]) if layer["mark"]["type"] == "bar")
    return data[layer["data"]["name"]], layer


# --- Leaderboard -------------------------------------------------------------------------------------------
def _board(at: AppTest):
    """The leaderboard as shown: figures as text, the best of each column followed by ★."""
    return at.table[0].value


def test_leaderboard_lists_run_and_baselines(with_run: Path) -> None:
    at = _app(LEADERBOARD, lb_limit=300)  # fewer images than the default, to keep the test quick
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = _board(at)
    assert set(table.index.astype(str)) == {RUN_NAME, "gray", "mean_ab"}
    assert "No trained models yet" not in _text(at)
    assert "300 test images" in _text(at)
    assert list(table.columns) == ["method", "psnr ↑", "ssim ↑", "mae_rgb ↓", "auc_ab ↑", "acc_ab_2 ↑", "acc_ab_5 ↑",
                                   "acc_ab_10 ↑", "colorfulness ↑", "colorfulness ratio → 1", "score ↑"]
    for column in table.columns[1:]:  # one best figure per column, marked
        assert sum(str(v).endswith("\u00a0★") for v in table[column]) == 1, column
    aucs = {m: float(str(v).rstrip("\u00a0★")) for m, v in table["auc_ab ↑"].items()}
    assert table.loc[max(aucs, key=aucs.get), "auc_ab ↑"].endswith("\u00a0★")

    downloads = at.get("download_button")
    assert len(downloads) == 1 and "CSV" in downloads[0].label
    assert downloads[0].proto.url.endswith(".csv")  # served as text/csv

    # the bars: each model's difference from gray, per class and per hue bin (gray itself is the zero line)
    before = _chart(at, "auc_ab per class")
    hue_before = _chart(at, "auc_ab per hue bin")
    bars, layer = _bars(before)
    assert set(bars["model"]) == {RUN_NAME, "mean_ab"}
    assert layer["encoding"]["y"]["field"] == "vs_baseline"
    from core.baselines import make_baseline
    from core.data import prepare
    from core.evaluate import evaluate

    prepared = prepare("sample", progress=False)
    gray = evaluate(make_baseline("gray"), prepared, "test", limit=300).per_class.set_index("class_name")["auc_ab"]
    mean_ab = evaluate(make_baseline("mean_ab", prepared), prepared, "test", limit=300).per_class
    shown = bars[bars["model"] == "mean_ab"].set_index("group")["vs_baseline"]
    expected = (mean_ab.set_index("class_name")["auc_ab"] - gray).loc[shown.index]
    assert list(shown) == pytest.approx(list(expected))
    spec, data = before
    rule = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "rule")  # the zero line
    assert data[rule["data"]["name"]].iloc[:, 0].tolist() == [0.0]

    at.selectbox(key="lb_metric").set_value("psnr").run()
    assert not at.exception
    after = _chart(at, "psnr per class")
    assert not _bars(after)[0].equals(bars)
    assert not _bars(_chart(at, "psnr per hue bin"))[0].equals(_bars(hue_before)[0])

    at.radio(key="lb_view").set_value("values").run()  # the values themselves, the axis zoomed to their spread
    assert not at.exception
    values, layer = _bars(_chart(at, "psnr per class"))
    assert set(values["model"]) == {RUN_NAME, "gray", "mean_ab"}
    lo, hi = layer["encoding"]["y"]["scale"]["domain"]
    assert 0 < lo < values["value"].min() and values["value"].max() < hi


def test_leaderboard_val_part(with_run: Path) -> None:
    at = _app(LEADERBOARD, lb_limit=100)
    assert "100 test images" in _text(at)
    at.radio(key="lb_part").set_value("val")
    at.number_input(key="lb_limit").set_value(50)
    at.run()
    assert not at.exception and not at.error
    assert not at.warning
    assert "50 val images" in _text(at)
    assert len(_board(at)) == 3


def test_leaderboard_empty_state(no_models: Path) -> None:
    at = _app(LEADERBOARD)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.number_input(key="lb_limit").value == 2000
    assert "1,000 test images" in _text(at)  # the default takes every test image of the sample
    assert "No trained models yet" in _text(at)
    table = _board(at)
    assert set(table.index.astype(str)) == {"gray", "mean_ab"}
    assert len(table) == 2
    assert len(at.get("download_button")) == 1


# --- Blind test ----------------------------------------------------------------------------------------------
def _tally(path: Path) -> dict:
    return json.loads(path.read_text())["models"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_blind_answer_is_recorded(with_run: Path, side: str) -> None:
    at = _app(BLIND)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert sum(len(el.proto.imgs) for el in at.get("image")) == 2
    assert "No answers yet" in _text(at)
    trial = at.session_state["bt_trial"]
    assert trial.model == RUN_NAME
    fooled = side != trial.real_side

    at.button(key=f"bt_{side}").click().run()
    assert not at.exception, at.exception
    assert _tally(with_run) == {RUN_NAME: {"trials": 1, "fooled": int(fooled)}}
    text = _text(at)
    assert ("Fooled!" in text) == fooled and ("Correct" in text) == (not fooled)
    table = at.dataframe[0].value
    row = table[table["model"] == RUN_NAME].iloc[0]
    assert (row["trials"], row["fooled"]) == (1, int(fooled))
    assert len(at.get("plotly_chart")) == 1
    assert "bt_trial" in at.session_state  # the next pair is on screen
    assert sum(len(el.proto.imgs) for el in at.get("image")) == 2


def test_blind_chosen_model_and_reset(with_run: Path) -> None:
    at = _app(BLIND)
    at.selectbox(key="bt_model").set_value(RUN_NAME).run()
    for _ in range(3):
        at.button(key="bt_left").click().run()
    assert _tally(with_run)[RUN_NAME]["trials"] == 3
    at.button(key="bt_reset").click().run()
    assert "Delete all 3 answers" in _text(at)
    at.button(key="bt_reset_no").click().run()
    assert _tally(with_run)[RUN_NAME]["trials"] == 3
    at.button(key="bt_reset").click().run()
    at.button(key="bt_reset_yes").click().run()
    assert not at.exception
    assert _tally(with_run) == {}
    assert "All answers deleted" in _text(at) and "No answers yet" in _text(at)


def test_blind_corrupt_file_shows_error_and_can_be_reset(with_run: Path) -> None:
    with_run.parent.mkdir(parents=True, exist_ok=True)
    with_run.write_text("{oops")
    at = _app(BLIND)
    assert not at.exception, at.exception
    assert any("not valid JSON" in e.value for e in at.error)
    at.button(key="bt_left").click().run()
    assert not at.exception
    assert any("not saved" in e.value for e in at.error)
    assert with_run.read_text() == "{oops"
    at.button(key="bt_reset").click().run()
    at.button(key="bt_reset_yes").click().run()
    assert not at.error and _tally(with_run) == {}


def test_blind_empty_state(no_models: Path) -> None:
    at = _app(BLIND)
    assert not at.exception, at.exception
    text = _text(at)
    assert "No trained models yet" in text and "No answers yet" in text
    assert not at.get("image")
    assert not [b for b in at.button if b.key in ("bt_left", "bt_right")]
