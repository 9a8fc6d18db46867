"""The Train page: empty state, the form's training command, the runs table, ``?run=``, a real run, deletion."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import TrainConfig
from core.runs import RunDir, start_job
from tests.run_util import train_tiny

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "dashboard" / "pages" / "2_Train.py")
TIMEOUT = 120


class FakeLauncher:
    """Records the commands it is given instead of starting processes."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Path]] = []

    def __call__(self, cmd, log_path) -> int:
        self.calls.append((list(cmd), Path(log_path)))
        return 999_999


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A completed tiny U-Net run (a few seconds of training)."""
    out = tmp_path_factory.mktemp("train-page") / "tiny-unet"
    train_tiny(out, log_every=1)
    (out / "log.txt").write_text("step 4/4 (train) val_loss 0.01\ncompleted 4 steps\n")
    return out


def app(launcher: FakeLauncher | None = None, run: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["_launcher"] = launcher or FakeLauncher()
    if run is not None:
        at.query_params["run"] = run
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_empty_state(runs_dir):
    at = app()
    assert not at.exception
    assert "No runs yet" in texts(at.info)
    assert [b.label for b in at.button if b.label == "Start training"]
    assert not at.dataframe


def test_form_builds_the_training_command_and_the_run_appears(runs_dir):
    launcher = FakeLauncher()
    at = app(launcher)
    at.segmented_control(key="train_method").set_value("dcgan").run()
    assert not at.exception
    at.text_input(key="train_source").set_value("sample")
    at.radio(key="train_split").set_value("random")
    at.number_input(key="train_epochs").set_value(3)
    at.number_input(key="train_width").set_value(16)
    at.number_input(key="train_batch_size").set_value(64)
    at.text_input(key="train_lr").set_value("1e-4")
    at.number_input(key="train_opt_dcgan_l1_weight").set_value(50.0)
    at.number_input(key="train_opt_dcgan_real_label").set_value(0.9)
    at.number_input(key="train_limit").set_value(512)
    at.number_input(key="train_val_limit").set_value(64)
    at.number_input(key="train_seed").set_value(7)
    at.selectbox(key="train_device").set_value("cpu")
    at.text_input(key="train_name").set_value("my-dcgan")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)

    assert len(launcher.calls) == 1
    cmd, log = launcher.calls[0]
    argv = " ".join(cmd[1:])
    out = runs_dir / "my-dcgan"
    assert argv.startswith("-m core.train --model dcgan --source sample --split random --epochs 3 --width 16 ")
    for part in ("--batch-size 64", "--lr 0.0001", "--limit 512", "--val-limit 64", "--seed 7", "--device cpu",
                 "--l1-weight 50.0", "--real-label 0.9", f"--out {out}"):
        assert part in argv, (part, argv)
    assert "--critic-epochs" not in argv
    assert log == out / "log.txt"

    # the new run is in the table, selected, and in the address
    table = at.dataframe[0].value
    assert list(table["run"]) == ["my-dcgan"]
    assert table.iloc[0]["method"] == "dcgan" and table.iloc[0]["split"] == "random"
    assert at.selectbox(key="train_run").value == "my-dcgan"
    assert at.query_params.get("run") == "my-dcgan"
    assert "Started" in texts(at.success)

    # a reload (a new session) still shows it: everything is on disk
    again = app()
    assert not again.exception
    assert list(again.dataframe[0].value["run"]) == ["my-dcgan"]


def test_default_run_name_and_bad_values(runs_dir):
    launcher = FakeLauncher()
    at = app(launcher)
    at.segmented_control(key="train_method").set_value("nogan").run()
    at.number_input(key="train_opt_nogan_critic_epochs").set_value(2.0)
    at.number_input(key="train_opt_nogan_gan_checkpoints").set_value(4)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    argv = " ".join(launcher.calls[0][0])
    assert "--model nogan" in argv and "--critic-epochs 2.0" in argv and "--gan-checkpoints 4" in argv
    name = Path(argv.split("--out ")[1].split()[0]).name
    assert name.startswith("nogan-") and len(name) == len("nogan-20250101-120000")

    at.text_input(key="train_lr").set_value("fast")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    assert "learning rate" in texts(at.error)
    assert len(launcher.calls) == 1


def test_processes_field_starts_the_job_under_torchrun(runs_dir):
    launcher = FakeLauncher()
    at = app(launcher)
    at.number_input(key="train_processes").set_value(2)
    at.number_input(key="train_batch_size").set_value(64)
    at.text_input(key="train_name").set_value("ddp-unet")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error, texts(at.error)
    cmd = launcher.calls[0][0]
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert cmd[6] == "core.train" and "--processes" not in cmd and "--batch-size" in cmd
    table = at.dataframe[0].value  # the launch record's command is read past torchrun's own flags
    assert table.iloc[0]["method"] == "unet"

    at.number_input(key="train_batch_size").set_value(63)
    at.text_input(key="train_name").set_value("odd")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    assert "multiple of 2" in texts(at.error) and len(launcher.calls) == 1 and not (runs_dir / "odd").exists()


def test_query_param_selects_a_run_and_selecting_updates_it(runs_dir):
    fake = FakeLauncher()
    for name in ("run-a", "run-b"):
        start_job({"model": "unet", "out": str(runs_dir / name)}, launcher=fake)
    at = app(run="run-a")
    assert not at.exception
    assert at.selectbox(key="train_run").value == "run-a"
    assert "Run run-a" in texts(at.subheader)
    at.selectbox(key="train_run").set_value("run-b").run()
    assert not at.exception
    assert at.query_params.get("run") == "run-b"
    assert "Run run-b" in texts(at.subheader)

    missing = app(run="no-such-run")
    assert not missing.exception
    assert "not found" in texts(missing.warning)
    assert missing.selectbox(key="train_run").value in ("run-a", "run-b")


def test_completed_run_shows_curves_metrics_sample_and_log(runs_dir, finished_run):
    runs_dir.mkdir(parents=True)
    shutil.copytree(finished_run, runs_dir / finished_run.name)
    at = app(run=finished_run.name)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    table = at.dataframe[0].value
    row = table.iloc[0]
    assert row["state"] == "completed" and row["progress"] == 100.0
    assert row["best_metric"] == "auc_ab" and 0 < row["best_value"] <= 100
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["state"] == "completed"
    assert len(at.get("plotly_chart")) == 2
    assert len(at.image) == 1
    assert "completed 4 steps" in at.code[0].value
    buttons = {b.label: b for b in at.button}
    assert buttons["Cancel"].disabled and buttons["Resume"].disabled and not buttons["Delete"].disabled


def test_delete_requires_confirmation(runs_dir, finished_run):
    runs_dir.mkdir(parents=True)
    target = runs_dir / "to-delete"
    shutil.copytree(finished_run, target)
    at = app(run="to-delete")
    at.button(key="train_delete").click().run()
    assert not at.exception
    assert target.is_dir()
    assert "cannot be undone" in texts(at.warning)
    at.button(key="train_delete_no").click().run()
    assert target.is_dir() and "cannot be undone" not in texts(at.warning)

    at.button(key="train_delete").click().run()
    at.button(key="train_delete_yes").click().run()
    assert not at.exception
    assert not target.exists()
    assert "No runs yet" in texts(at.info)


def test_active_run_shows_progress_and_cannot_be_deleted(runs_dir):
    import os

    run = RunDir(runs_dir / "busy")
    run.path.mkdir(parents=True)
    run.write_status(state="running", pid=os.getpid(), total_steps=100, step=25, steps_per_epoch=10, epoch=2.5,
                     eta_s=90.0, images_per_s=1000.0, started=1.0, message="step 25/100")
    at = app(run="busy")
    assert not at.exception
    buttons = {b.label: b for b in at.button}
    assert buttons["Delete"].disabled and not buttons["Cancel"].disabled and buttons["Resume"].disabled
    row = at.dataframe[0].value.iloc[0]
    assert row["state"] == "running" and row["progress"] == 25.0 and row["eta"] == "1m 30s"
    assert len(at.get("progress")) == 1


def test_table_picker_and_panel_show_one_reading_of_a_resumed_run(runs_dir):
    """A run resumed from step 260 of 5120, its process still preparing data: the table, the picker and the
    panel all say so, with no ETA left over from the run it resumes."""

    run = RunDir(runs_dir / "resumed")
    run.path.mkdir(parents=True)
    TrainConfig(model="unet").save(run.config)
    run.write_status(state="cancelled", step=260, total_steps=5120, steps_per_epoch=512, epoch=260 / 512, eta_s=0.0,
                     images_per_s=900.0, started=1.0)
    start_job({"model": "unet", "out": str(run.path), "resume": True}, launcher=FakeLauncher())  # as Resume does
    at = app(run="resumed")
    assert not at.exception
    row = at.dataframe[0].value.iloc[0]
    metrics = {m.label: m.value for m in at.metric}
    assert row["state"] == metrics["state"] == "starting"
    assert row["progress"] == round(100 * 260 / 5120, 1) and metrics["step"] == "260 / 5120"
    assert row["eta"] == metrics["ETA"] == "preparing data"
    assert at.selectbox(key="train_run").format_func("resumed") == "resumed (starting)"

    run.write_status(state="running", phase="data", message="preparing data", eta_s=None)  # the job took over
    at = app(run="resumed")
    assert at.dataframe[0].value.iloc[0]["eta"] == {m.label: m.value for m in at.metric}["ETA"] == "preparing data"
    run.write_status(phase="train")  # its first phase began; no step timed yet
    at = app(run="resumed")
    assert {m.label: m.value for m in at.metric}["ETA"] == "measuring" == at.dataframe[0].value.iloc[0]["eta"]
    run.write_status(step=300, eta_s=75.0)
    at = app(run="resumed")
    row = at.dataframe[0].value.iloc[0]
    assert row["eta"] == {m.label: m.value for m in at.metric}["ETA"] == "1m 15s"
    assert row["progress"] == round(100 * 300 / 5120, 1)
