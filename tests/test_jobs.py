"""core.jobs: training arguments from the form, the runs table, curves and phases, safe deletion, a real cancel."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from core import jobs
from core.config import TrainConfig
from core.jobs import JobError, TrainForm
from core.runs import RunDir, cancel_job, launch_process, start_job, train_command
from core.train import config_from_args, parse_args

NOW = datetime(2025, 1, 2, 3, 4, 5)


def fake_launcher(cmd, log_path) -> int:
    return 999_999


def make_run(root: Path, name: str, state: str = "completed", model: str = "unet", records: list[dict] | None = None,
             **status) -> RunDir:
    """A run directory as the engine leaves it: config, status and metrics."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    TrainConfig(model=model, split="random").save(run.config)
    run.write_status(state=state, pid=None, **status)
    for r in records or []:
        run.append_metrics(r)
    return run


NOGAN_RECORDS = [
    {"type": "step", "step": 2, "epoch": 1.0, "phase": "generator", "g_loss": 1.0, "time": 0},
    {"type": "val", "step": 2, "epoch": 1.0, "phase": "generator", "auc_ab": 80.0, "colorfulness_ratio": 0.5,
     "val_loss": 0.02, "score": 40.0, "time": 0},
    {"type": "step", "step": 4, "epoch": 2.0, "phase": "generator", "g_loss": 0.8, "time": 0},
    {"type": "step", "step": 5, "epoch": 2.5, "phase": "critic", "d_loss": 1.3, "d_acc": 0.5, "time": 0},
    {"type": "step", "step": 6, "epoch": 3.0, "phase": "critic", "d_loss": 1.2, "d_acc": 0.6, "time": 0},
    {"type": "step", "step": 7, "epoch": 3.5, "phase": "gan", "g_loss": 0.9, "d_loss": 1.1, "time": 0},
    {"type": "val", "step": 7, "epoch": 3.5, "phase": "gan", "auc_ab": 85.0, "colorfulness_ratio": float("nan"),
     "val_loss": 0.018, "score": 85.0, "time": 0},
]


# --- a new run ---------------------------------------------------------------------------------------
def test_default_run_name():
    assert jobs.default_run_name("dcgan", NOW) == "dcgan-20250102-030405"


@pytest.mark.parametrize("text,expected", [("", None), ("  ", None), (None, None), ("1e-4", 1e-4), ("0.002", 2e-3)])
def test_parse_lr(text, expected):
    assert jobs.parse_lr(text) == expected


@pytest.mark.parametrize("text", ["fast", "-1", "0", "nan", "inf"])
def test_parse_lr_rejects(text):
    with pytest.raises(JobError, match="learning rate"):
        jobs.parse_lr(text)


def test_method_default_lr():
    assert jobs.method_default_lr("dcgan") == 2e-4
    assert jobs.method_default_lr("unet") == 1e-3


def test_build_train_args_unet(tmp_path):
    args = jobs.build_train_args(TrainForm(method="unet", epochs=2, limit=0, val_limit=64), tmp_path, NOW)
    assert args["out"] == str(tmp_path / "unet-20250102-030405")
    assert args["limit"] is None and args["val_limit"] == 64 and args["lr"] is None
    assert not {"l1_weight", "real_label", "critic_epochs"} & set(args)  # settings of other methods are left out


def test_build_train_args_round_trips_through_the_cli(tmp_path):
    form = TrainForm(method="dcgan", source=" sample ", split="random", epochs=3, width=16, batch_size=64, lr="1e-4",
                     options={"l1_weight": 50.0, "real_label": 0.9}, limit=512, val_limit=64, seed=7, device="cpu",
                     name="x", lr_decay_epochs=1.5)
    cmd = train_command(jobs.build_train_args(form, tmp_path))
    ns = parse_args(cmd[3:])
    assert cmd[1:3] == ["-m", "core.train"]
    assert (ns.model, ns.source, ns.split, ns.epochs, ns.width, ns.batch_size) == (
        "dcgan", "sample", "random", 3, 16, 64)
    assert (ns.lr, ns.l1_weight, ns.real_label, ns.limit, ns.val_limit, ns.seed, ns.device) == (
        1e-4, 50.0, 0.9, 512, 64, 7, "cpu")
    assert ns.out == str(tmp_path / "x") and ns.quiet and not ns.resume and ns.lr_decay_epochs == 1.5


def test_build_train_args_nogan_phases(tmp_path):
    form = TrainForm(method="nogan", options={"critic_epochs": 2.0, "gan_fraction": 0.25, "gan_checkpoints": 5,
                                              "real_label": 0.9, "gan_lr": 3e-5, "feature_layers": "0 1",
                                              "feature_layer_weights": "1, 2"})
    ns = parse_args(train_command(jobs.build_train_args(form, tmp_path, NOW))[3:])
    assert (ns.critic_epochs, ns.gan_fraction, ns.gan_checkpoints, ns.real_label) == (2.0, 0.25, 5, 0.9)
    assert ns.gan_lr == 3e-5 and config_from_args(ns).feature_layers == [0, 1]
    with pytest.raises(JobError, match="GAN checkpoints.*--gan-checkpoints must be at least 1"):
        jobs.build_train_args(TrainForm(method="nogan", options={"gan_checkpoints": 0}), tmp_path)
    with pytest.raises(JobError, match="GAN learning rate.*above 0"):
        jobs.build_train_args(TrainForm(method="nogan", options={"gan_lr": 0.0}), tmp_path)
    with pytest.raises(JobError, match="not an option of unet"):
        jobs.build_train_args(TrainForm(method="unet", options={"gan_lr": 1e-4}), tmp_path)


@pytest.mark.parametrize("change,match", [
    ({"method": "vae"}, "unknown method"), ({"split": "odd"}, "unknown split"), ({"device": "tpu"}, "unknown device"),
    ({"source": " "}, "source is empty"), ({"epochs": 0}, "epochs"), ({"name": "a/b"}, "run name"),
    ({"name": "has space"}, "run name"), ({"lr": "x"}, "learning rate"), ({"limit": -1}, "image limit"),
    ({"lr_decay_epochs": -1.0}, "decay epochs"),
])
def test_build_train_args_rejects(tmp_path, change, match):
    with pytest.raises(JobError, match=match):
        jobs.build_train_args(TrainForm(**change), tmp_path)


def test_run_names_never_collide_by_default_and_taken_names_are_refused(tmp_path):
    (tmp_path / "unet-20250102-030405").mkdir()
    assert jobs.build_train_args(TrainForm(), tmp_path, NOW)["out"].endswith("unet-20250102-030405-2")
    (tmp_path / "mine").mkdir()
    with pytest.raises(JobError, match="already exists"):
        jobs.build_train_args(TrainForm(name="mine"), tmp_path)


def test_resume_args(tmp_path):
    cancelled = make_run(tmp_path, "c", state="cancelled")
    assert jobs.resume_args(cancelled) == {"out": str(cancelled.path), "resume": True, "quiet": True}
    with pytest.raises(JobError, match="only a cancelled or failed"):
        jobs.resume_args(make_run(tmp_path, "done"))
    bare = RunDir(tmp_path / "bare")
    bare.path.mkdir()
    bare.write_status(state="failed")
    with pytest.raises(JobError, match="configuration"):
        jobs.resume_args(bare)


# --- listing runs ------------------------------------------------------------------------------------
def test_find_runs_includes_just_started_jobs_newest_first(tmp_path):
    assert jobs.find_runs(tmp_path / "missing") == []
    make_run(tmp_path, "old", started=100.0)
    start_job({"model": "dcgan", "split": "hue", "out": str(tmp_path / "new")}, launcher=fake_launcher)
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert [r.id for r in jobs.find_runs(tmp_path)] == ["new", "old"]


def test_command_options_and_run_config_before_the_job_reports(tmp_path):
    assert jobs.command_options(["py", "-m", "core.train", "--model", "nogan", "--quiet", "--out", "o"]) == {
        "model": "nogan", "quiet": True, "out": "o"}
    run, _, _ = start_job({"model": "nogan", "split": "random", "out": str(tmp_path / "r")}, launcher=fake_launcher)
    assert jobs.run_config(run)["model"] == "nogan" and jobs.run_config(run)["split"] == "random"
    done = make_run(tmp_path, "done", model="classifier")
    assert jobs.run_config(done)["model"] == "classifier"


def test_runs_table(tmp_path):
    assert list(jobs.runs_table(runs_dir=tmp_path).columns) == list(jobs.RUNS_COLUMNS)
    make_run(tmp_path, "done", started=time.time() - 60, records=NOGAN_RECORDS, model="nogan")
    clf = make_run(tmp_path, "clf", model="classifier", state="cancelled", step=5, total_steps=20, eta_s=30,
                   records=[{"type": "val", "step": 5, "accuracy": 41.0},
                            {"type": "val", "step": 10, "accuracy": 40.0}])
    busy = make_run(tmp_path, "busy", state="running", step=30, total_steps=120, eta_s=75.0, started=time.time())
    busy.write_status(pid=os.getpid())
    table = jobs.runs_table(runs_dir=tmp_path).set_index("run")
    assert table.loc["done", "state"] == "completed" and table.loc["done", "progress"] == 100.0
    assert table.loc["done", "best_metric"] == "auc_ab" and table.loc["done", "best_value"] == 85.0
    assert table.loc["done", "method"] == "nogan" and table.loc["done", "split"] == "random"
    assert isinstance(table.loc["done", "started"], datetime)
    assert table.loc["clf", "best_metric"] == "accuracy" and table.loc["clf", "best_value"] == 41.0
    assert table.loc["clf", "progress"] == 25.0 and table.loc["clf", "eta"] == ""
    assert table.loc["busy", "state"] == "running" and table.loc["busy", "progress"] == 25.0
    assert table.loc["busy", "eta"] == "1m 15s" and table.loc["busy", "best_metric"] == ""
    assert clf.id == "clf"


def test_runs_table_shows_a_vanished_process_as_failed(tmp_path):
    run = make_run(tmp_path, "gone", state="running")
    status = json.loads(run.status_file.read_text()) | {"pid": 999_999, "heartbeat": time.time() - 60}
    run.status_file.write_text(json.dumps(status))
    assert jobs.runs_table(runs_dir=tmp_path).iloc[0]["state"] == "failed"


def test_run_metrics_rereads_a_changed_file(tmp_path):
    run = make_run(tmp_path, "r", records=[{"type": "val", "step": 1, "auc_ab": 1.0}])
    assert len(jobs.run_metrics(run)) == 1
    run.append_metrics({"type": "val", "step": 2, "auc_ab": 2.0})
    assert len(jobs.run_metrics(run)) == 2
    assert jobs.run_metrics(RunDir(tmp_path / "none")) == []


@pytest.mark.parametrize("status,expected", [
    ({"state": "completed"}, 1.0), ({"step": 5, "total_steps": 20}, 0.25), ({"step": 5}, 0.0),
    ({"step": 50, "total_steps": 20}, 1.0), ({}, 0.0)])
def test_progress_fraction(status, expected):
    assert jobs.progress_fraction(status) == expected


@pytest.mark.parametrize("seconds,text", [(None, ""), (float("nan"), ""), (0, "0s"), (45.4, "45s"), (200, "3m 20s"),
                                          (3720, "1h 02m")])
def test_format_duration(seconds, text):
    assert jobs.format_duration(seconds) == text


def test_key_metric_and_best_validation():
    assert jobs.key_metric("classifier") == "accuracy" and jobs.key_metric("dcgan") == "auc_ab"
    assert jobs.best_validation(NOGAN_RECORDS, "auc_ab") == 85.0
    assert jobs.best_validation(NOGAN_RECORDS, "colorfulness_ratio") == 0.5  # NaN is skipped
    assert jobs.best_validation(NOGAN_RECORDS, "accuracy") is None


# --- curves ------------------------------------------------------------------------------------------
def test_loss_and_val_frames():
    losses = jobs.loss_frame(NOGAN_RECORDS)
    assert set(losses["loss"]) == {"g_loss", "d_loss", "d_acc"}
    assert len(losses) == 8 and not {"time", "epoch", "step"} & set(losses["loss"])
    vals = jobs.val_frame(NOGAN_RECORDS)
    assert set(vals["metric"]) == {"auc_ab", "colorfulness_ratio", "val_loss"}
    assert len(vals) == 5  # the NaN ratio is left out
    assert jobs.loss_frame([]).empty and list(jobs.val_frame([]).columns) == ["step", "epoch", "phase", "metric",
                                                                              "value"]


def test_phase_spans():
    assert jobs.phase_spans(NOGAN_RECORDS) == [{"phase": "generator", "start": 0, "end": 4},
                                               {"phase": "critic", "start": 4, "end": 6},
                                               {"phase": "gan", "start": 6, "end": 7}]
    assert jobs.phase_spans([]) == []


def test_figures_mark_nogan_phases():
    fig = jobs.loss_figure(NOGAN_RECORDS)
    names = {a.text for a in fig.layout.annotations}
    assert {"<b>generator</b>", "<b>critic</b>", "<b>gan</b>"} <= names
    assert {"g_loss", "d_loss", "d_acc"} <= names  # the panel titles
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) >= 3 and {s.x0 for s in rects} >= {0, 4, 6}
    assert len(fig.data) == 3
    assert jobs.val_figure(NOGAN_RECORDS) is not None
    assert jobs.loss_figure([]) is None and jobs.val_figure([]) is None


def test_single_phase_figure_has_no_phase_marks():
    records = [{"type": "step", "step": s, "phase": "train", "mse": 1.0 / s} for s in (1, 2, 3)]
    fig = jobs.loss_figure(records)
    assert not fig.layout.shapes and len(fig.data) == 1


def test_status_fields():
    f = jobs.status_fields({"state": "running", "phase": "gan", "epoch": 2.5, "step": 25, "total_steps": 100,
                            "steps_per_epoch": 10, "images_per_s": 1234.5, "eta_s": 90})
    assert f == {"state": "running", "phase": "gan", "epoch": "2.50 / 10", "step": "25 / 100", "images/s": "1,234",
                 "ETA": "1m 30s"}
    empty = jobs.status_fields({})
    assert empty["state"] == "unknown" and empty["ETA"] == "—" and empty["step"] == "—"


# --- deletion ----------------------------------------------------------------------------------------
def test_delete_run(tmp_path):
    done = make_run(tmp_path, "done")
    jobs.delete_run(done, tmp_path)
    assert not done.path.exists()


def test_delete_refuses_an_active_run(tmp_path):
    busy = make_run(tmp_path, "busy", state="running")
    busy.write_status(pid=os.getpid())
    with pytest.raises(JobError, match="cancel it"):
        jobs.delete_run(busy, tmp_path)
    assert busy.path.is_dir()


def test_delete_refuses_what_is_not_a_run_in_the_runs_folder(tmp_path):
    other = make_run(tmp_path / "elsewhere", "r")
    with pytest.raises(JobError, match="not a run in"):
        jobs.delete_run(other, tmp_path / "runs")
    plain = tmp_path / "runs" / "plain"
    plain.mkdir(parents=True)
    with pytest.raises(JobError, match="not a run directory"):
        jobs.delete_run(RunDir(plain), tmp_path / "runs")
    assert other.path.is_dir() and plain.is_dir()


# --- a real job --------------------------------------------------------------------------------------
def test_real_job_can_be_cancelled_resumed_and_deleted(tmp_path):
    """A real ``python -m core.train`` process: start, cancel with SIGTERM, resume arguments, delete."""
    form = TrainForm(method="unet", epochs=200, width=8, batch_size=32, limit=128, val_limit=32, name="real")
    args = jobs.build_train_args(form, tmp_path) | {"threads": 1}
    run, _, pid = start_job(args, launcher=launch_process)
    try:
        assert [r.id for r in jobs.find_runs(tmp_path)] == ["real"]  # visible at once, before the job reports
        status = jobs.wait_for_state(run, ("running", "failed", "completed"), timeout=120)
        assert status.get("state") == "running", run.log_tail()
        deadline = time.time() + 120  # SIGTERM is handled once the training loop has started
        while run.live_status().get("total_steps") is None and time.time() < deadline:
            assert jobs.is_active(run.live_status()), run.log_tail()
            time.sleep(0.2)
        with pytest.raises(JobError):
            jobs.delete_run(run, tmp_path)
        assert cancel_job(run)
        status = jobs.wait_for_state(run, ("cancelled", "failed", "completed"), timeout=60)
        assert status["state"] == "cancelled", run.log_tail()
        assert jobs.resume_args(run)["resume"] is True
    finally:
        if jobs.is_active(run.live_status()):
            os.kill(pid, 9)
    jobs.wait_for_state(run, ("cancelled", "failed"), timeout=10)
    for _ in range(50):  # the process exits right after writing its final status
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    jobs.delete_run(run, tmp_path)
    assert not run.path.exists()
