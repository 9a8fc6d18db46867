"""One writer per run directory: the lock refuses a second trainer, and a failed write loses nothing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.runlock import RunLock, RunLockedError, is_locked, verified_trainer
from core.runs import RunDir
from core.train import TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "unet", "--source", "sample", "--width", "8", "--batch-size", "16", "--limit", "128",
        "--val-limit", "32", "--threads", "1", "--quiet"]


def tiny(**kw) -> TrainConfig:
    return TrainConfig.from_dict(dict(model="unet", source="sample", epochs=1, limit=128, val_limit=32, width=8,
                                      batch_size=32, threads=1) | kw)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_lock_is_exclusive_and_names_its_holder(tmp_path) -> None:
    with RunLock(tmp_path):
        assert is_locked(tmp_path) and verified_trainer(tmp_path) == os.getpid()
        probe = subprocess.run([sys.executable, "-c", "import sys; from core.runlock import RunLock;"
                                f"RunLock({str(tmp_path)!r}).acquire()"], cwd=ROOT, capture_output=True, text=True)
        assert probe.returncode != 0 and f"process {os.getpid()}" in probe.stderr
    assert not is_locked(tmp_path) and verified_trainer(tmp_path) is None


def test_resume_of_a_live_run_is_refused_and_changes_nothing(tmp_path) -> None:
    out = tmp_path / "run"
    assert train(tiny(epochs=2), out, progress=False, max_steps=2)["state"] == "cancelled"
    before = snapshot(out)
    with RunLock(out):  # stands in for the live trainer
        with pytest.raises(RunLockedError, match="being trained by process"):
            train(None, out, resume=True, progress=False)
        r = subprocess.run([sys.executable, "-m", "core.train", "--out", str(out), "--resume"], cwd=ROOT,
                           capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


def test_two_trainings_started_at_once_into_one_folder_one_runs(tmp_path) -> None:
    out = tmp_path / "race"
    cmd = [sys.executable, "-m", "core.train", *TINY, "--epochs", "2", "--out", str(out)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "Traceback" not in refused and ("being trained by process" in refused or "already holds a run" in refused)
    run = RunDir(out)
    assert run.status()["state"] == "completed"
    vals = [r["step"] for r in run.metrics() if r["type"] == "val"]
    assert vals == sorted(set(vals))  # one writer: no duplicated validations


def test_a_failed_write_ends_the_run_as_failed_with_the_last_checkpoint_intact(tmp_path, monkeypatch) -> None:
    import core.train as engine

    out = tmp_path / "full"
    real = engine.CheckpointKeeper.save_last
    calls = {"n": 0}

    def full_disk(self, payload):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.run.last))
        return real(self, payload)

    monkeypatch.setattr(engine.CheckpointKeeper, "save_last", full_disk)
    with pytest.raises(TrainingError, match="No space left on device.*--resume"):
        train(tiny(epochs=2, val_per_epoch=1), out, progress=False)
    status = RunDir(out).status()
    assert status["state"] == "failed" and "No space left" in status["message"]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4  # the first epoch's, whole
    assert not is_locked(out)
    monkeypatch.setattr(engine.CheckpointKeeper, "save_last", real)
    assert train(None, out, resume=True, progress=False)["state"] == "completed"


def test_leftover_temporary_files_are_removed_at_the_next_start(tmp_path) -> None:
    out = tmp_path / "tmpfiles"
    train(tiny(epochs=2), out, progress=False, max_steps=2)
    stale = [out / ".status.json.abcd1234.tmp", out / "checkpoints" / ".last.pt.zz9_ab12.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    mine = out / "notes.tmp"  # not one of the engine's temporary names: kept
    mine.write_text("keep")
    train(None, out, resume=True, progress=False)
    assert not any(p.exists() for p in stale) and mine.exists()


def test_resume_continues_as_configured_and_extends_only_when_asked(tmp_path) -> None:
    out = tmp_path / "resume"
    train(tiny(epochs=1), out, progress=False, max_steps=2)
    assert train(None, out, resume=True, progress=False)["step"] == 4  # its own 1 epoch, not a default of 5
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    final = train(None, out, resume=True, progress=False, extend_epochs=2)
    assert final["step"] == 8 and json.loads((out / "config.json").read_text())["epochs"] == 2
    assert "extended from 1 to 2 epochs" in final["note"]
    with pytest.raises(TrainingError, match="only be lengthened"):
        train(None, out, resume=True, progress=False, extend_epochs=1)
    r = subprocess.run([sys.executable, "-m", "core.train", "--out", str(out), "--resume", "--lr", "0.1"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--lr cannot be changed" in r.stderr


@pytest.mark.parametrize("flags,needle", [
    (["--epochs", "0"], "--epochs must be at least 1"), (["--epochs", "-1"], "--epochs must be at least 0"),
    (["--batch-size", "-5"], "--batch-size must be at least 1"), (["--batch-size", "0"], "--batch-size"),
    (["--lr", "0"], "--lr must be above 0"), (["--lr", "nan"], "--lr must be a finite number"),
    (["--log-every", "0"], "--log-every must be at least 1"), (["--width", "0"], "--width must be at least 1"),
    (["--threads", "-1"], "--threads must be at least 1"), (["--val-fraction", "1.5"], "--val-fraction"),
    (["--val-fraction", "0"], "--val-fraction must be above 0"),
    (["--model", "nogan", "--epochs", "0"], "needs --init"), (["--l1-weight", "5"], "option of dcgan"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, flags, needle) -> None:
    out = tmp_path / "bad"
    start = time.time()
    r = subprocess.run([sys.executable, "-m", "core.train", *TINY, *flags, "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists() and time.time() - start < 60


def test_out_naming_a_file_or_a_read_only_place_is_refused(tmp_path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    r = subprocess.run([sys.executable, "-m", "core.train", *TINY, "--out", str(afile)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is a file" in r.stderr and afile.read_text() == "x"
    r = subprocess.run([sys.executable, "-m", "core.train", *TINY, "--out", str(afile / "run")], cwd=ROOT,
                       capture_output=True, text=True)  # a folder that cannot be made (a file is in the way)
    assert r.returncode == 2 and "cannot create the run folder" in r.stderr and "Traceback" not in r.stderr
