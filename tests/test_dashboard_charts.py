"""dashboard/charts.py and dashboard/display.py: training curves with phases, hue histograms and their picks,
durations, status fields and the runs table as the Train page shows it."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

from core import explore, runs
from dashboard import charts, display
from tests.run_util import NOGAN_RECORDS, make_run


# --- training curves ---------------------------------------------------------------------------------
def test_figures_mark_nogan_phases():
    fig = charts.loss_figure(NOGAN_RECORDS)
    names = {a.text for a in fig.layout.annotations}
    assert {"<b>generator</b>", "<b>critic</b>", "<b>gan</b>"} <= names
    assert {"g_loss", "d_loss", "d_acc"} <= names  # the panel titles
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) >= 3 and {s.x0 for s in rects} >= {0, 4, 6}
    assert len(fig.data) == 3
    assert charts.val_figure(NOGAN_RECORDS) is not None
    assert charts.loss_figure([]) is None and charts.val_figure([]) is None


def test_single_phase_figure_has_no_phase_marks():
    records = [{"type": "step", "step": s, "phase": "train", "mse": 1.0 / s} for s in (1, 2, 3)]
    fig = charts.loss_figure(records)
    assert not fig.layout.shapes and len(fig.data) == 1


# --- hue histograms ----------------------------------------------------------------------------------
def test_hue_histogram_figure_bars_coloured_by_hue() -> None:
    frame = explore.hue_histogram_frame({"train": np.linspace(0, 0.99, 50), "val": np.linspace(0, 0.99, 5)}, 36)
    fig = charts.hue_histogram_figure(frame, "Hue split — KS 0.1")
    assert [t.name for t in fig.data] == ["train", "val"]
    assert len(fig.data[0].x) == 36
    assert list(fig.data[0].marker.color) == list(frame[frame["part"] == "train"]["colour"])
    assert fig.data[1].marker.pattern.shape == "/"
    assert fig.layout.title.text == "Hue split — KS 0.1"
    assert fig.layout.barmode == "group"


def test_ks_title() -> None:
    assert charts.ks_title("hue", {"ks_hue": 0.01234}) == "Hue split — hue KS 0.0123 (train vs val)"
    assert "n/a" in charts.ks_title("random", {"ks_hue": float("nan")})


def test_selected_hue_range_from_points_and_box() -> None:
    bins = 36
    w = 1 / bins
    event = {"selection": {"points": [{"x": 2.5 * w}, {"x": 5.5 * w}], "box": [], "lasso": []}}
    lo, hi = charts.selected_hue_range(event, bins)
    assert lo == pytest.approx(2 * w) and hi == pytest.approx(6 * w)
    box = {"selection": {"points": [], "box": [{"x": [0.7, 0.2], "y": [0, 5]}]}}
    assert charts.selected_hue_range(box, bins) == pytest.approx((0.2, 0.7))
    outside = {"selection": {"points": [], "box": [{"x": [-0.3, 1.4]}]}}
    assert charts.selected_hue_range(outside, bins) == pytest.approx((0.0, 1.0))
    assert charts.selected_hue_range({"selection": {"points": [], "box": []}}, bins) is None
    assert charts.selected_hue_range(None, bins) is None
    attr = SimpleNamespace(selection=SimpleNamespace(points=[{"x": 0.5 + w / 2}], box=[]))
    assert charts.selected_hue_range(attr, bins) == pytest.approx((0.5, 0.5 + w))


# --- display text ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds,text", [(None, ""), (float("nan"), ""), (0, "0s"), (45.4, "45s"), (200, "3m 20s"),
                                          (3720, "1h 02m")])
def test_format_duration(seconds, text):
    assert display.format_duration(seconds) == text


def test_status_fields():
    f = display.status_fields({"state": "running", "phase": "gan", "epoch": 2.5, "step": 25, "total_steps": 100,
                               "steps_per_epoch": 10, "images_per_s": 1234.5, "eta_s": 90})
    assert f == {"state": "running", "phase": "gan", "epoch": "2.50 / 10", "step": "25 / 100", "images/s": "1,234",
                 "ETA": "1m 30s"}
    empty = display.status_fields({})
    assert empty["state"] == "unknown" and empty["ETA"] == "—" and empty["step"] == "—"


def test_runs_display_shows_the_eta_of_running_jobs_only(tmp_path):
    make_run(tmp_path, "clf", model="classifier", state="cancelled", step=5, total_steps=20, eta_s=30)
    busy = make_run(tmp_path, "busy", state="running", step=30, total_steps=120, eta_s=75.0, started=time.time())
    busy.write_status(pid=os.getpid())
    columns = [c if c != "eta_s" else "eta" for c in runs.RUNS_COLUMNS]
    table = display.runs_display(runs.runs_table(runs_dir=tmp_path))
    assert list(table.columns) == columns
    table = table.set_index("run")
    assert table.loc["clf", "eta"] == "" and table.loc["busy", "eta"] == "1m 15s"
    assert table.loc["busy", "progress"] == 25.0
    assert list(display.runs_display(runs.runs_table(runs_dir=tmp_path / "none")).columns) == columns


def test_method_labels():
    from core.methods import method_label

    assert [method_label(m) for m in ("unet", "dcgan", "nogan")] == ["U-Net", "DCGAN", "NoGAN"]


@pytest.mark.parametrize("status,text", [
    ({"state": "starting", "eta_s": 0.0}, "preparing data"),
    ({"state": "running", "phase": "data", "eta_s": 0.0}, "preparing data"),
    ({"state": "running", "phase": "gan"}, "measuring"),
    ({"state": "running", "phase": "gan", "eta_s": 61}, "1m 01s"),
    ({"state": "completed", "eta_s": 0.0}, "—"),
])
def test_eta_text(status, text):
    assert display.eta_text(status) == text


def test_hue_histogram_selects_by_click_and_offers_box_select() -> None:
    """Streamlit turns click-selection off while a figure's drag mode is select or lasso: the histogram sets none
    (a click selects a bar) and keeps the toolbar's Box Select for ranges; its axes do not zoom or pan."""
    frame = explore.hue_histogram_frame({"train": np.linspace(0, 0.99, 50)}, 36)
    fig = charts.hue_histogram_figure(frame)
    assert fig.layout.dragmode is None and fig.layout.clickmode is None
    assert fig.layout.xaxis.fixedrange and fig.layout.yaxis.fixedrange
    removed = charts.HISTOGRAM_CONFIG["modeBarButtonsToRemove"]
    assert "select2d" not in removed and {"zoom2d", "pan2d", "lasso2d"} <= set(removed)
