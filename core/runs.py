"""Run directories: the on-disk state of a training job, shared by the engine and the dashboard.

    RUN_DIR/config.json       the TrainConfig
    RUN_DIR/split.json        the split's indices and parameters
    RUN_DIR/status.json       state, phase, epoch, step, speed, ETA, message, pid, heart-beat (atomic rewrite)
    RUN_DIR/metrics.jsonl     one JSON object per logged step and per validation
    RUN_DIR/checkpoints/      last.pt and best.pt
    RUN_DIR/samples/          gray | predicted | truth grids of fixed validation images
    RUN_DIR/log.txt           the job's console output, when started by the dashboard
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.atomic import atomic_write_text

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STATES = ("starting", "running", "completed", "failed", "cancelled")
ACTIVE = ("starting", "running")
HEARTBEAT_STALE_S = 60.0


def machine_description() -> str:
    """A one-line description of this machine (CPU, GPU, torch) for run status and model cards."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}"


def default_runs_dir() -> Path:
    """Where runs live: env COLORIZE_RUNS_DIR, else ``runs/`` in the project."""
    return Path(os.environ.get("COLORIZE_RUNS_DIR", PROJECT_ROOT / "runs"))


@dataclass
class RunDir:
    """Paths and small readers/writers of one run directory."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def id(self) -> str:
        return self.path.name

    config = property(lambda self: self.path / "config.json")
    split = property(lambda self: self.path / "split.json")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last = property(lambda self: self.path / "checkpoints" / "last.pt")
    best = property(lambda self: self.path / "checkpoints" / "best.pt")
    samples = property(lambda self: self.path / "samples")
    log = property(lambda self: self.path / "log.txt")

    def exists(self) -> bool:
        return self.config.is_file()

    def write_status(self, **fields: object) -> dict:
        """Merge ``fields`` into status.json and rewrite it atomically, with a fresh heart-beat."""
        status = self.status() | fields | {"heartbeat": time.time()}
        atomic_write_text(self.status_file, json.dumps(status))
        return status

    def status(self) -> dict:
        """The last status written (empty when none), with ``stale`` set if a running job stopped beating."""
        try:
            status = json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return status

    def live_status(self) -> dict:
        """Status as a reader should show it: an active job whose process is gone reads as ``failed``."""
        status = self.status()
        if status.get("state") in ACTIVE:
            pid = status.get("pid")
            alive = isinstance(pid, int) and pid_alive(pid)
            if not alive and time.time() - float(status.get("heartbeat", 0)) > 5:
                status = status | {"state": "failed", "message": "the training process ended without a final status"}
        return status

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict]:
        """All records of metrics.jsonl; a partly written last line is ignored."""
        if not self.metrics_file.is_file():
            return []
        out = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_metrics(self, after_step: int) -> None:
        """Drop records past ``after_step`` (used on resume, so the log matches the checkpoint)."""
        kept = [r for r in self.metrics() if int(r.get("step", 0)) <= after_step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))

    def latest_sample(self) -> Path | None:
        files = sorted(self.samples.glob("*.png"), key=lambda p: p.stat().st_mtime) if self.samples.is_dir() else []
        return files[-1] if files else None

    def log_tail(self, n: int = 40) -> str:
        if not self.log.is_file():
            return ""
        with open(self.log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.replace("\r", "\n").splitlines()[-n:])


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def list_runs(runs_dir: str | Path | None = None) -> list[RunDir]:
    """Run directories under ``runs_dir``, newest first."""
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: r.config.stat().st_mtime, reverse=True)


def train_command(args: dict[str, object], python: str | None = None) -> list[str]:
    """The ``python -m core.train`` command line for a dict of options (True flags become bare switches)."""
    cmd = [python or sys.executable, "-m", "core.train"]
    for key, value in args.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif isinstance(value, (list, tuple)):
            cmd += [flag, *map(str, value)]
        else:
            cmd += [flag, str(value)]
    return cmd


Launcher = Callable[[Sequence[str], Path], int]


def launch_process(cmd: Sequence[str], log_path: Path) -> int:
    """Start ``cmd`` detached (its own session), output to ``log_path``; returns the pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(cmd), cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})
    return proc.pid


def start_job(args: dict[str, object], launcher: Launcher = launch_process) -> tuple[RunDir, list[str], int]:
    """Start a training job for ``args`` (which must hold ``out``) as a separate process; returns its run."""
    run = RunDir(Path(str(args["out"])))
    cmd = train_command(args)
    if not args.get("resume"):
        run.path.mkdir(parents=True, exist_ok=False)
    run.write_status(state="starting", message="starting", command=cmd, started=time.time())
    pid = launcher(cmd, run.log)
    if run.status().get("state") == "starting":  # the job has not reported yet: record its pid for liveness
        run.write_status(pid=pid)
    return run, cmd, pid


def cancel_job(run: RunDir) -> bool:
    """Ask a running job to stop (SIGTERM: it saves last.pt and ends as cancelled)."""
    pid = run.status().get("pid")
    if isinstance(pid, int) and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        return True
    return False
