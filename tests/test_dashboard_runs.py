"""The Runs page, run headless with Streamlit's AppTest over real tiny runs: the table with its differing settings,
filters and search, tags set from the page, the overlaid curves (x axis, smoothing, NoGAN's phases), the sample
grids and the CSV download; and the overlay figure itself."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import run_table
from core.config import TrainConfig
from core.runs import PROJECT_ROOT, RunDir
from core.tags import read_tags, set_tags
from core.train import train
from dashboard import charts

PAGE = str(PROJECT_ROOT / "dashboard" / "pages" / "7_Runs.py")
TIMEOUT = 120
TINY = dict(source="sample", epochs=1, limit=128, val_limit=32, width=8, batch_size=32, threads=1, log_every=1)
UNET, DCGAN, NOGAN = "tiny-unet", "tiny-dcgan", "tiny-nogan"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real one-epoch runs: a U-Net (seed 0), a DCGAN (seed 1) and a NoGAN over the shipped classifier."""
    root = tmp_path_factory.mktemp("runs-page") / "runs"
    train(TrainConfig(model="unet", **TINY), root / UNET, progress=False)
    train(TrainConfig(model="dcgan", seed=1, **TINY), root / DCGAN, progress=False)
    train(TrainConfig(model="nogan", options={"feature_net": str(PROJECT_ROOT / "checkpoints" / "classifier.pt"),
                                              "critic_epochs": 0.5, "gan_fraction": 0.5, "gan_checkpoints": 1},
                      **TINY), root / NOGAN, progress=False)
    return root


@pytest.fixture
def runs_dir(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the U-Net and DCGAN runs as the runs folder."""
    root = tmp_path / "runs"
    for name in (UNET, DCGAN):
        shutil.copytree(trained / name, root / name)
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(root))
    return root


def app(**state: object) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def table(at: AppTest) -> pd.DataFrame:
    return at.dataframe[0].value


def highlighted(at: AppTest) -> set[str]:
    """The columns whose cells the table's style highlights."""
    styles = at.dataframe[0].proto.arrow_data.styler.styles
    columns = list(table(at).columns)
    return {columns[int(i)] for i in re.findall(r"_col(\d+)", styles)}


def chart(at: AppTest, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec)


def traces(spec: dict, run: str, metric_axis: str = "y") -> list[dict]:
    """The run's traces on one panel (``y`` is the first), the smoothed one last."""
    return [t for t in spec["data"] if t["name"] == run and t.get("yaxis", "y") == metric_axis]


def text(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in (*at.markdown, *at.caption, *at.info, *at.success, *at.warning))


# --- the table ---------------------------------------------------------------------------------------------------
def test_empty_state(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "none"))
    at = app()
    ok(at)
    assert "No runs yet" in text(at) and not at.dataframe


def test_table_shows_runs_figures_and_the_differing_settings(runs_dir):
    at = app()
    ok(at)
    shown = table(at)
    assert list(shown["run"]) == [DCGAN, UNET]
    assert set(shown["state"]) == {"completed"} and list(shown["method"]) == ["dcgan", "unet"]
    assert (shown["best_auc_ab"] > 50).all() and (shown["lowest_mae_rgb"] > 0).all() and (shown["steps"] == 4).all()
    differ = set(run_table.differing_settings(run_table.comparison_table(runs_dir=runs_dir)))
    assert differ == {"seed", "l1_weight", "real_label"}
    assert differ <= set(shown.columns) and "width" not in shown.columns and "batch_size" not in shown.columns
    assert highlighted(at) == differ
    assert "Highlighted: the 3 settings that differ" in text(at) and "the same for all are hidden" in text(at)

    at.toggle(key="runs_show_same").set_value(True).run()
    ok(at)
    assert {"width", "batch_size", "limit", "source"} <= set(table(at).columns)
    assert highlighted(at) == differ  # still only the differing ones


def test_filters_search_and_sort(runs_dir):
    set_tags(RunDir(runs_dir / UNET), ["keep"])
    at = app()
    at.multiselect(key="runs_tags").set_value(["keep"]).run()
    ok(at)
    assert list(table(at)["run"]) == [UNET]
    at.multiselect(key="runs_tags").set_value([]).run()
    at.multiselect(key="runs_methods").set_value(["dcgan"]).run()
    assert list(table(at)["run"]) == [DCGAN]
    at.multiselect(key="runs_methods").set_value([]).run()
    at.text_input(key="runs_search").set_value("seed=1").run()
    ok(at)
    assert list(table(at)["run"]) == [DCGAN]
    at.text_input(key="runs_search").set_value("").run()
    at.selectbox(key="runs_sort").set_value("run").run()
    at.toggle(key="runs_descending").set_value(False).run()
    ok(at)
    assert list(table(at)["run"]) == [DCGAN, UNET]
    at.toggle(key="runs_descending").set_value(True).run()
    assert list(table(at)["run"]) == [UNET, DCGAN]


def test_csv_download(runs_dir):
    at = app()
    ok(at)
    downloads = at.get("download_button")
    assert [d.label for d in downloads] == ["Download CSV"]
    assert downloads[0].proto.url.endswith(".csv")


# --- tags ----------------------------------------------------------------------------------------------------------
def test_tags_set_from_the_page_are_stored_in_the_run(runs_dir):
    at = app()
    at.selectbox(key="runs_tag_run").set_value(UNET).run()
    box = next(t for t in at.text_input if t.key.startswith(f"runs_tag_text_{UNET}"))
    box.set_value("keep best-unet").run()
    at.button(key="runs_tag_save").click().run()
    ok(at)
    assert read_tags(RunDir(runs_dir / UNET)) == ["best-unet", "keep"]
    assert f"Tags of **{UNET}**: best-unet, keep" in text(at)
    assert table(at).set_index("run").loc[UNET, "tags"] == "best-unet, keep"

    at.button(key="runs_tag_archive").click().run()  # one click: archived, so hidden unless asked
    ok(at)
    assert read_tags(RunDir(runs_dir / UNET)) == ["archive", "best-unet", "keep"]
    assert list(table(at)["run"]) == [DCGAN]
    at.toggle(key="runs_show_archived").set_value(True).run()
    assert set(table(at)["run"]) == {DCGAN, UNET}
    at.button(key="runs_tag_keep").click().run()  # the same button takes a tag off
    assert read_tags(RunDir(runs_dir / UNET)) == ["archive", "best-unet"]

    again = app(runs_show_archived=True)  # a new session reads them from disk
    assert again.dataframe[0].value.set_index("run").loc[UNET, "tags"] == "archive, best-unet"


def test_a_bad_tag_is_refused_with_a_message(runs_dir):
    at = app()
    at.selectbox(key="runs_tag_run").set_value(DCGAN).run()
    next(t for t in at.text_input if t.key.startswith(f"runs_tag_text_{DCGAN}")).set_value("good ../bad").run()
    at.button(key="runs_tag_save").click().run()
    assert not at.exception
    assert any("Tags not saved" in e.value and "plain word" in e.value for e in at.error)
    assert read_tags(RunDir(runs_dir / DCGAN)) == []


# --- curves and samples ----------------------------------------------------------------------------------------------
def test_overlay_of_two_runs_x_axis_and_smoothing(runs_dir):
    at = app()
    ok(at)
    assert "Pick runs above" in text(at) and not at.get("plotly_chart")
    at.multiselect(key="runs_overlay").set_value([UNET, DCGAN]).run()
    ok(at)
    losses, val = chart(at, "runs_loss_chart"), chart(at, "runs_val_chart")
    for spec in (losses, val):
        assert {t["name"] for t in spec["data"]} == {UNET, DCGAN}
    assert {t["name"] for t in val["data"] if t.get("showlegend", True)} == {UNET, DCGAN}

    logged = [json.loads(line) for line in (runs_dir / UNET / "metrics.jsonl").read_text().splitlines()]
    mse = [r["mse"] for r in logged if r["type"] == "step"]
    raw, smoothed = traces(losses, UNET)  # the faint logged curve, then the smoothed one (default 0.6)
    assert raw["y"] == pytest.approx(mse) and raw["x"] == [1, 2, 3, 4]
    assert smoothed["y"] == pytest.approx(run_table.ema(mse, 0.6)) and smoothed["y"] != pytest.approx(mse)

    at.slider(key="runs_smoothing").set_value(0.0).run()
    ok(at)
    (plain,) = traces(chart(at, "runs_loss_chart"), UNET)
    assert plain["y"] == pytest.approx(mse)
    at.slider(key="runs_smoothing").set_value(0.9).run()
    assert traces(chart(at, "runs_loss_chart"), UNET)[-1]["y"] == pytest.approx(run_table.ema(mse, 0.9))

    at.radio(key="runs_x").set_value("epoch").run()
    ok(at)
    spec = chart(at, "runs_loss_chart")
    assert traces(spec, UNET)[-1]["x"] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    at.radio(key="runs_x").set_value("time").run()
    ok(at)
    spec = chart(at, "runs_loss_chart")
    xs = traces(spec, UNET)[-1]["x"]
    assert all(x >= 0 for x in xs) and xs == sorted(xs) and xs != [1, 2, 3, 4]
    assert "wall time" in json.dumps(spec["layout"])


def test_nogan_phases_are_marked_per_run(runs_dir, trained):
    shutil.copytree(trained / NOGAN, runs_dir / NOGAN)
    at = app(runs_overlay=[NOGAN, UNET])
    ok(at)
    spec = chart(at, "runs_val_chart")
    panels = {t.get("yaxis", "y") for t in spec["data"] if t["name"] == UNET}
    assert len(panels) == 3  # auc_ab, mae_rgb, colorfulness_ratio (no accuracy)
    dashed = [s for s in spec["layout"].get("shapes", []) if s.get("line", {}).get("dash") == "dash"]
    assert sorted(s["x0"] for s in dashed) == [4] * 3 + [6] * 3  # critic and GAN start, on every panel
    losses = chart(at, "runs_loss_chart")
    assert {NOGAN, UNET} <= {t["name"] for t in losses["data"]}  # each run has a loss among the defaults
    colour = charts.run_colours([NOGAN, UNET])[NOGAN]
    assert {s["line"]["color"] for s in dashed} == {colour}
    assert {"critic", "gan"} <= {a["text"] for a in spec["layout"]["annotations"]}


def test_sample_grids_side_by_side(runs_dir, trained):
    shutil.copytree(trained / NOGAN, runs_dir / NOGAN)
    at = app(runs_overlay=[UNET, NOGAN])
    ok(at)
    assert at.select_slider(key="runs_sample_epoch").value == 2.0  # the latest epoch with a grid
    captions = [c for el in at.image for c in el.captions]
    assert captions == ["epoch_001 (epoch 1)", "gan_step_000008 (epoch 2)"]
    at.select_slider(key="runs_sample_epoch").set_value(1.5).run()
    ok(at)
    assert [c for el in at.image for c in el.captions] == ["epoch_001 (epoch 1)", "critic_step_000006 (epoch 1.5)"]


# --- the figure ------------------------------------------------------------------------------------------------------
def test_overlay_figure_panels_colours_and_phase_lines(trained):
    runs = [RunDir(trained / NOGAN), RunDir(trained / UNET)]
    frame = run_table.overlay_frame(runs, "val", "epoch", ["auc_ab", "mae_rgb"])
    starts = run_table.phase_starts(runs, "epoch")
    fig = charts.overlay_figure(frame, starts, "epoch", "Validation", runs=[NOGAN, UNET])
    assert [t.name for t in fig.data] == [NOGAN, UNET, NOGAN, UNET]  # two panels, no faint copies unsmoothed
    assert {a.text for a in fig.layout.annotations} >= {"auc_ab", "mae_rgb", "critic", "gan"}
    lines = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert sorted({s.x0 for s in lines}) == [1.0, 1.5] and len(lines) == 4  # both starts on both panels
    assert fig.layout.xaxis2.title.text == "epoch"
    colours = charts.run_colours([NOGAN, UNET])
    assert [t.line.color for t in fig.data[:2]] == [colours[NOGAN], colours[UNET]]
    smooth = charts.overlay_figure(run_table.smooth_frame(run_table.overlay_frame(runs, "loss"), 0.5),
                                   run_table.phase_starts(runs), "step")
    assert any(t.opacity == 0.25 for t in smooth.data)  # the logged values drawn faint behind
    assert charts.overlay_figure(frame.iloc[:0], starts, "step") is None
