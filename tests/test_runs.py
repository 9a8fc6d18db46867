"""core.runs queries: listing runs, what they were started with, the runs table, curves and phases, safe deletion."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import pandas as pd
import pytest

from core import runs
from core.runs import JobError, RunDir, start_job
from tests.run_util import NOGAN_RECORDS, fake_launcher, make_run


# --- listing runs ------------------------------------------------------------------------------------
def test_find_runs_includes_just_started_jobs_newest_first(tmp_path):
    assert runs.find_runs(tmp_path / "missing") == []
    make_run(tmp_path, "old", started=100.0)
    start_job({"model": "dcgan", "split": "hue", "out": str(tmp_path / "new")}, launcher=fake_launcher)
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert [r.id for r in runs.find_runs(tmp_path)] == ["new", "old"]


def test_find_runs_can_ask_for_a_saved_configuration(tmp_path):
    make_run(tmp_path, "old", started=100.0)
    make_run(tmp_path, "newer", started=200.0)
    start_job({"model": "dcgan", "split": "hue", "out": str(tmp_path / "new")}, launcher=fake_launcher)
    assert [r.id for r in runs.find_runs(tmp_path)] == ["new", "newer", "old"]
    assert [r.id for r in runs.find_runs(tmp_path, require_config=True)] == ["newer", "old"]


def test_resolve_run_by_name_or_path(tmp_path):
    done = make_run(tmp_path, "done")
    assert runs.resolve_run("done", tmp_path).path == done.path
    assert runs.resolve_run(str(done.path), tmp_path / "elsewhere").path == done.path
    (tmp_path / "plain").mkdir()
    for spec in ("missing", "plain"):
        with pytest.raises(JobError, match="no run"):
            runs.resolve_run(spec, tmp_path)


def test_command_options_and_run_config_before_the_job_reports(tmp_path):
    assert runs.command_options(["py", "-m", "core.train", "--model", "nogan", "--quiet", "--out", "o"]) == {
        "model": "nogan", "quiet": True, "out": "o"}
    run, _, _ = start_job({"model": "nogan", "split": "random", "out": str(tmp_path / "r")}, launcher=fake_launcher)
    assert runs.run_config(run)["model"] == "nogan" and runs.run_config(run)["split"] == "random"
    done = make_run(tmp_path, "done", model="classifier")
    assert runs.run_config(done)["model"] == "classifier"


def test_runs_table(tmp_path):
    assert list(runs.runs_table(runs_dir=tmp_path).columns) == list(runs.RUNS_COLUMNS)
    make_run(tmp_path, "done", started=time.time() - 60, records=NOGAN_RECORDS, model="nogan")
    clf = make_run(tmp_path, "clf", model="classifier", state="cancelled", step=5, total_steps=20, eta_s=30,
                   records=[{"type": "val", "step": 5, "accuracy": 41.0},
                            {"type": "val", "step": 10, "accuracy": 40.0}])
    busy = make_run(tmp_path, "busy", state="running", step=30, total_steps=120, eta_s=75.0, started=time.time())
    busy.write_status(pid=os.getpid())
    table = runs.runs_table(runs_dir=tmp_path).set_index("run")
    assert table.loc["done", "state"] == "completed" and table.loc["done", "progress"] == 100.0
    assert table.loc["done", "best_metric"] == "auc_ab" and table.loc["done", "best_value"] == 85.0
    assert table.loc["done", "method"] == "nogan" and table.loc["done", "split"] == "random"
    assert isinstance(table.loc["done", "started"], datetime)
    assert table.loc["clf", "best_metric"] == "accuracy" and table.loc["clf", "best_value"] == 41.0
    assert table.loc["clf", "progress"] == 25.0 and pd.isna(table.loc["clf", "eta_s"])  # not running: no ETA
    assert table.loc["busy", "state"] == "running" and table.loc["busy", "progress"] == 25.0
    assert table.loc["busy", "eta_s"] == 75.0 and table.loc["busy", "best_metric"] == ""
    assert clf.id == "clf"


def test_runs_table_shows_a_vanished_process_as_lost(tmp_path):
    run = make_run(tmp_path, "gone", state="running")
    status = json.loads(run.status_file.read_text()) | {"pid": 999_999, "heartbeat": time.time() - 61}
    run.status_file.write_text(json.dumps(status))
    assert runs.runs_table(runs_dir=tmp_path).iloc[0]["state"] == "failed (process lost)"
    assert run.live_status()["state"] == "failed" and run.live_status()["lost"] is True


def test_run_metrics_rereads_a_changed_file(tmp_path):
    run = make_run(tmp_path, "r", records=[{"type": "val", "step": 1, "auc_ab": 1.0}])
    assert len(runs.run_metrics(run)) == 1
    run.append_metrics({"type": "val", "step": 2, "auc_ab": 2.0})
    assert len(runs.run_metrics(run)) == 2
    assert runs.run_metrics(RunDir(tmp_path / "none")) == []


@pytest.mark.parametrize("status,expected", [
    ({"state": "completed"}, 1.0), ({"step": 5, "total_steps": 20}, 0.25), ({"step": 5}, 0.0),
    ({"step": 50, "total_steps": 20}, 1.0), ({}, 0.0)])
def test_progress_fraction(status, expected):
    assert runs.progress_fraction(status) == expected


def test_key_metric_and_best_validation():
    assert runs.key_metric("classifier") == "accuracy" and runs.key_metric("dcgan") == "auc_ab"
    assert runs.best_validation(NOGAN_RECORDS, "auc_ab") == 85.0
    assert runs.best_validation(NOGAN_RECORDS, "colorfulness_ratio") == 0.5  # NaN is skipped
    assert runs.best_validation(NOGAN_RECORDS, "accuracy") is None


# --- curves ------------------------------------------------------------------------------------------
def test_loss_and_val_frames():
    losses = runs.loss_frame(NOGAN_RECORDS)
    assert set(losses["loss"]) == {"g_loss", "d_loss", "d_acc"}
    assert len(losses) == 8 and not {"time", "epoch", "step"} & set(losses["loss"])
    vals = runs.val_frame(NOGAN_RECORDS)
    assert set(vals["metric"]) == {"auc_ab", "colorfulness_ratio", "val_loss"}
    assert len(vals) == 5  # the NaN ratio is left out
    assert runs.loss_frame([]).empty and list(runs.val_frame([]).columns) == ["step", "epoch", "phase", "metric",
                                                                              "value"]


def test_phase_spans():
    assert runs.phase_spans(NOGAN_RECORDS) == [{"phase": "generator", "start": 0, "end": 4},
                                               {"phase": "critic", "start": 4, "end": 6},
                                               {"phase": "gan", "start": 6, "end": 7}]
    assert runs.phase_spans([]) == []


# --- deletion ----------------------------------------------------------------------------------------
def test_delete_run(tmp_path):
    done = make_run(tmp_path, "done")
    runs.delete_run(done, tmp_path)
    assert not done.path.exists()


def test_delete_refuses_an_active_run(tmp_path):
    busy = make_run(tmp_path, "busy", state="running")
    busy.write_status(pid=os.getpid())
    with pytest.raises(JobError, match="cancel it"):
        runs.delete_run(busy, tmp_path)
    assert busy.path.is_dir()


def test_delete_refuses_what_is_not_a_run_in_the_runs_folder(tmp_path):
    other = make_run(tmp_path / "elsewhere", "r")
    with pytest.raises(JobError, match="not a run in"):
        runs.delete_run(other, tmp_path / "runs")
    plain = tmp_path / "runs" / "plain"
    plain.mkdir(parents=True)
    with pytest.raises(JobError, match="not a run directory"):
        runs.delete_run(RunDir(plain), tmp_path / "runs")
    assert other.path.is_dir() and plain.is_dir()




def _set_status(run: RunDir, **fields) -> None:
    """Status fields as written long ago (write_status always stamps a fresh heart-beat)."""
    run.status_file.write_text(json.dumps(run.status() | fields))


def test_heartbeat_keeps_a_busy_lockless_trainer_alive_and_leaves_a_final_status_alone(tmp_path):
    run = make_run(tmp_path, "busy", state="running", message="preparing data")
    _set_status(run, heartbeat=time.time() - 50)
    old = run.status()["heartbeat"]
    with runs.Heartbeat(run, every_s=0.02):
        time.sleep(0.2)
        fresh = run.status()["heartbeat"]
        assert fresh > old + 40  # refreshed from the thread while the trainer "prepares"
        for step in range(100):  # the trainer's own writes meanwhile are never lost to a beat
            run.write_status(step=step)
    status = run.status()
    assert status["step"] == 99 and status["state"] == "running" and status["message"] == "preparing data"
    # a run trained on another machine (its lock names that host): only the heart-beat tells it is alive
    (run.path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "locked_at": time.time()}))
    assert not runs.lock_visible(run.path)
    assert run.live_status()["state"] == "running"
    _set_status(run, heartbeat=time.time() - runs.HEARTBEAT_STALE_S - 1)  # without beats it reads as lost
    assert run.live_status().get("lost") is True
    _set_status(run, state="completed", heartbeat=123.0)
    with runs.Heartbeat(run, every_s=0.01):
        time.sleep(0.1)
    assert run.status()["heartbeat"] == 123.0 and not run.beat()  # a final status is left as it is
