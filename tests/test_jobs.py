"""core.jobs: training arguments from the form, resuming, and a real job started, cancelled, resumed and deleted."""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest

from core import jobs, runs
from core.jobs import JobError, TrainForm
from core.runs import RunDir, cancel_job, launch_process, start_job, train_command
from core.train import config_from_args, parse_args
from tests.run_util import make_run

NOW = datetime(2025, 1, 2, 3, 4, 5)


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
    wide = make_run(tmp_path, "w", state="cancelled")
    wide.config.write_text(wide.config.read_text().replace('"world_size": 1', '"world_size": 2'))
    assert jobs.resume_args(wide)["processes"] == 2  # as many processes as trained it last
    assert runs.train_command(jobs.resume_args(wide), "python")[:5] == [
        "python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    bare = RunDir(tmp_path / "bare")
    bare.path.mkdir()
    bare.write_status(state="failed")
    with pytest.raises(JobError, match="configuration"):
        jobs.resume_args(bare)


# --- a real job --------------------------------------------------------------------------------------
def test_real_job_can_be_cancelled_resumed_and_deleted(tmp_path):
    """A real ``python -m core.train`` process: start, cancel with SIGTERM, resume arguments, delete."""
    form = TrainForm(method="unet", epochs=200, width=8, batch_size=32, limit=128, val_limit=32, name="real")
    args = jobs.build_train_args(form, tmp_path) | {"threads": 1}
    run, _, pid = start_job(args, launcher=launch_process)
    try:
        assert [r.id for r in runs.find_runs(tmp_path)] == ["real"]  # visible at once, before the job reports
        status = runs.wait_for_state(run, ("running", "failed", "completed"), timeout=120)
        assert status.get("state") == "running", run.log_tail()
        deadline = time.time() + 120  # SIGTERM is handled once the training loop has started
        while run.live_status().get("total_steps") is None and time.time() < deadline:
            assert runs.is_active(run.live_status()), run.log_tail()
            time.sleep(0.2)
        with pytest.raises(JobError):
            runs.delete_run(run, tmp_path)
        assert cancel_job(run)
        status = runs.wait_for_state(run, ("cancelled", "failed", "completed"), timeout=60)
        assert status["state"] == "cancelled", run.log_tail()
        assert jobs.resume_args(run)["resume"] is True
    finally:
        if runs.is_active(run.live_status()):
            os.kill(pid, 9)
    runs.wait_for_state(run, ("cancelled", "failed"), timeout=10)
    for _ in range(50):  # the process exits right after writing its final status
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    runs.delete_run(run, tmp_path)
    assert not run.path.exists()
