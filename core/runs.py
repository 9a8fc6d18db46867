"""Run directories: the on-disk state of a training job, shared by the engine, the dashboard and the tools.

    RUN_DIR/config.json       the TrainConfig
    RUN_DIR/split.json        the split's indices and parameters
    RUN_DIR/status.json       state, phase, epoch, step, speed, ETA, message, pid, heart-beat (atomic rewrite;
                              written only by the trainer, which holds RUN_DIR/.lock for its whole life)
    RUN_DIR/launch.json       what start_job launched: command, pid, its start time, when (the dashboard's file)
    RUN_DIR/metrics.jsonl     one JSON object per logged step and per validation
    RUN_DIR/checkpoints/      last.pt and best.pt
    RUN_DIR/samples/          gray | predicted | truth grids of fixed validation images
    RUN_DIR/log.txt           the job's console output, when started by the dashboard

Besides reading and writing one run, this module lists runs, starts and cancels jobs, and answers the queries the
dashboard and the tools ask of the runs folder (the runs table, curves as long tables, safe deletion), as plain
data. Nothing keeps state in memory, so a job stays visible after a page reload or a dashboard restart.

A run is ``running`` only while its lock is held (``core.runlock``), or, where the lock cannot be asked (no lock
file: an older run, or one trained on another machine), while its heart-beat is fresh; otherwise a run whose
status still says running reads as ``failed (process lost)`` and can be resumed. Cancelling signals only a process
verified to be the run's trainer (or the very process start_job launched for it), never a pid reused since.

``python -m core.runs`` does the same from a shell (the scripts in tools/ use it):

    python -m core.runs list [PREFIX] [--active] [--json]     runs, newest first: run, state, progress, method
    python -m core.runs status RUN                           a run's live status as JSON
    python -m core.runs wait RUN... [--state S ...] [--timeout S] [--interval S]
                                                             until every run has ended; exit 0 if all in the states
    python -m core.runs cancel NAME_OR_PREFIX                SIGTERM to the named run, or to those starting with it

with ``--runs-dir DIR`` (default: env COLORIZE_RUNS_DIR, else runs/). Exit 2: bad input (an unknown run, bad
arguments); 1: a failure while carrying the command out, or a wait that did not end as wanted; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from core.atomic import atomic_write_text
from core.cli import ArgumentParser, reader_gone
from core.config import TrainConfig
from core.runlock import is_locked, lock_visible, process_start_time, read_holder, verified_trainer

if TYPE_CHECKING:
    import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STATES = ("starting", "running", "completed", "failed", "cancelled")
ACTIVE = ("starting", "running")
FINAL = ("completed", "failed", "cancelled")
HEARTBEAT_STALE_S = 60.0
LAUNCH_GRACE_S = 5.0  # a launch this recent reads as starting even before its process can be seen
VAL_METRICS = ("auc_ab", "colorfulness_ratio", "val_loss", "accuracy")
RUNS_COLUMNS = ("run", "state", "progress", "eta_s", "method", "split", "started", "best_metric", "best_value")
STEP_META = ("type", "step", "epoch", "phase", "time")
LAUNCH_NAME = "launch.json"
LOST = "failed (process lost)"
_STATUS_WRITE = threading.RLock()  # one read-merge-write of a status.json at a time (the trainer and its heart-beat)


class JobError(ValueError):
    """A job request or action that cannot be carried out; the message says what to do."""


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
    launch_file = property(lambda self: self.path / LAUNCH_NAME)
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
        with _STATUS_WRITE:
            status = self.status() | fields | {"heartbeat": time.time()}
            atomic_write_text(self.status_file, json.dumps(status))
        return status

    def beat(self) -> bool:
        """Refresh the heart-beat of a status that is still starting or running (a final one is left as it is);
        whether it was refreshed."""
        with _STATUS_WRITE:
            if self.status().get("state") not in ACTIVE:
                return False
            self.write_status()
        return True

    def status(self) -> dict:
        """The last status written by the trainer (empty when none)."""
        try:
            status = json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return status if isinstance(status, dict) else {}

    def launch(self) -> dict:
        """What :func:`start_job` recorded of the process it launched here (command, pid, started); empty if none."""
        try:
            launch = json.loads(self.launch_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return launch if isinstance(launch, dict) else {}

    def live_status(self) -> dict:
        """Status as a reader should show it, from the lock, the launched process and the heart-beat.

        Lock held: the trainer's status (``starting`` until it reports). Not held: ``starting`` while the process
        start_job launched still runs and has not reported; a status that says running is believed only where no
        lock can be asked here and the heart-beat is fresh, else it is ``failed`` with ``lost`` set. A launch that
        ended before reporting is shown with the last error line of its log.
        """
        status, launch = self.status(), self.launch()
        state = status.get("state")
        if is_locked(self.path):
            holder = read_holder(self.path) or {}
            if state in ACTIVE or (state in FINAL and _number(status.get("heartbeat")) >= _number(
                    holder.get("locked_at"))):
                return status  # running, or ending: its final status is written and it is closing
            return status | {"state": "starting", "pid": holder.get("pid"),
                             "message": "the training process has started and is preparing"}
        launched_since = bool(launch) and _number(launch.get("started")) > _number(status.get("heartbeat"))
        pending = launched_pid(launch)
        just_launched = launched_since and time.time() - _number(launch.get("started")) < LAUNCH_GRACE_S
        if (pending is not None and (launched_since or not state)) or (pending is None and just_launched):
            return status | {"state": "starting", "pid": pending or launch.get("pid"), "started": status.get(
                "started", launch.get("started")), "message": f"starting (process {launch.get('pid')})"}
        if state in ACTIVE:
            age = time.time() - _number(status.get("heartbeat"))
            if age <= HEARTBEAT_STALE_S and not lock_visible(self.path):
                return status  # no lock to ask from here: the fresh heart-beat says it is alive
            return status | {"state": "failed", "lost": True, "message": "process lost: the training process ended "
                             f"without a final status (last heart-beat {age:.0f} s ago); resume continues from its "
                             "last checkpoint"}
        if launched_since:  # a start or resume that ended before the trainer reported
            why = last_error(self.log_tail(20))
            if not state:
                return status | {"state": "failed", "started": launch.get("started"),
                                 "message": f"the training process ended before it reported: {why}"}
            return status | {"message": f"the last resume ended before it reported: {why}"}
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


class Heartbeat:
    """A background thread that refreshes a run's heart-beat every ``every_s`` while its trainer is busy inside one
    long step (data preparation, a validation, a checkpoint), so that a reader that cannot ask the run's lock (on
    another machine) does not take a live trainer for lost. A context manager; it stops when the block ends."""

    def __init__(self, run: RunDir, every_s: float = HEARTBEAT_STALE_S / 4) -> None:
        self.run, self.every_s = run, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run.beat()
            except OSError:  # a full or gone disk: the trainer meets it at its next write and reports it
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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


def _number(x: object) -> float:
    """A status field as a number (0 when missing or not a number)."""
    return float(x) if _finite(x) else 0.0


def launched_pid(launch: Mapping) -> int | None:
    """The pid :func:`start_job` launched, while that very process still runs on this machine (same start time,
    so a pid reused by another process does not count); None otherwise."""
    pid = launch.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or launch.get("host") not in (None, socket.gethostname()):
        return None
    if not pid_alive(pid):
        return None
    started = launch.get("pid_start_time")
    if started is not None and process_start_time(pid) != started:
        return None
    return pid


def last_error(log: str) -> str:
    """The line of a job's log that says why it stopped: its last ``error:`` line, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    text = (errors or lines or ["it wrote no output"])[-1]
    return text.removeprefix("error:").strip()[:300]


def _is_run(path: Path, require_config: bool = False) -> bool:
    """Whether ``path`` is a run directory: it holds a config, or (unless ``require_config``) a status or a launch
    record."""
    return path.is_dir() and ((path / "config.json").is_file()
                              or (not require_config and ((path / "status.json").is_file()
                                                          or (path / LAUNCH_NAME).is_file())))


def find_runs(runs_dir: str | Path | None = None, require_config: bool = False) -> list[RunDir]:
    """Run directories in ``runs_dir``, newest first by start time: those with a config, a status or a launch
    record (a job just started has only that), or with ``require_config`` only those that saved their
    configuration."""
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if _is_run(p, require_config)]
    return sorted(runs, key=_started, reverse=True)


def _started(run: RunDir) -> float:
    started = run.status().get("started") or run.launch().get("started")
    if isinstance(started, (int, float)):
        return float(started)
    for f in (run.config, run.status_file, run.launch_file):
        if f.is_file():
            return f.stat().st_mtime
    return 0.0


def resolve_run(spec: str, runs_dir: str | Path | None = None) -> RunDir:
    """The run named ``spec`` in ``runs_dir``, else the run directory at the path ``spec``; JobError if neither."""
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    for path in (root / spec, Path(spec)):
        if _is_run(path):
            return RunDir(path)
    raise JobError(f"no run {spec!r} in {root} (and {spec!r} is not the path of a run directory)")


def command_prefix(processes: int = 1, python: str | None = None) -> list[str]:
    """How a training command starts: ``python`` alone, or torchrun (``python -m torch.distributed.run``) with
    ``--standalone --nproc_per_node=N`` for data-parallel training in N processes on this machine."""
    python = python or sys.executable
    if processes <= 1:
        return [python]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(processes)}"]


def train_command(args: dict[str, object], python: str | None = None) -> list[str]:
    """The ``python -m core.train`` command line for a dict of options (True flags become bare switches); a
    ``processes`` entry above 1 starts it under torchrun (:func:`command_prefix`)."""
    args = dict(args)
    cmd = [*command_prefix(int(args.pop("processes", None) or 1), python), "-m", "core.train"]
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
    """Start a training job for ``args`` (which must hold ``out``) as a separate process; returns its run.

    The trainer alone writes status.json; this records what it launched in launch.json. Resuming a run that a
    live process trains, or that a launch is still starting, is refused with a JobError and changes nothing.
    """
    run = RunDir(Path(str(args["out"])))
    cmd = train_command(args)
    if args.get("resume"):
        if is_locked(run.path):
            pid = verified_trainer(run.path)
            raise JobError(f"{run.id} is being trained by {f'process {pid}' if pid else 'another process'}; wait for "
                           "it to end or cancel it first (nothing was changed)")
        if (pending := launched_pid(run.launch())) is not None:
            raise JobError(f"{run.id} is already starting (process {pending}); wait for it (nothing was changed)")
    else:
        run.path.mkdir(parents=True, exist_ok=False)
    started = time.time()
    pid = launcher(cmd, run.log)
    atomic_write_text(run.launch_file, json.dumps({"command": cmd, "pid": pid, "pid_start_time": process_start_time(
        pid), "started": started, "host": socket.gethostname()}))
    return run, cmd, pid


def cancel_target(run: RunDir) -> int | None:
    """The process a cancel may signal: the run's verified trainer (lock held, same pid and start time), else the
    very process start_job launched for it while it has not taken the lock yet; None when there is neither."""
    pid = verified_trainer(run.path)
    if pid is None and not is_locked(run.path):
        pid = launched_pid(run.launch())
    return pid


def cancel_job(run: RunDir) -> bool:
    """Ask a running job to stop (SIGTERM: it saves last.pt and ends as cancelled); signals nothing, and returns
    False, unless :func:`cancel_target` finds its process."""
    pid = cancel_target(run)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended meanwhile
        return False
    return True


# --- queries: what a run was started with, how far it got, its best validation --------------------------
def run_config(run: RunDir) -> dict:
    """The run's options: config.json, else those of the command that started it (a job not yet reporting)."""
    if run.config.is_file():
        try:
            return TrainConfig.load(run.config).to_dict()
        except (OSError, ValueError, TypeError):
            pass
    return command_options(run.launch().get("command") or run.status().get("command") or [])


def command_options(cmd: Sequence[str]) -> dict[str, object]:
    """``--key value`` pairs of a ``core.train`` command as a dict (bare switches become True)."""
    out: dict[str, object] = {}
    items = list(cmd)
    if "core.train" in items:  # the launcher's own flags (torchrun's) come before the module
        items = items[items.index("core.train") + 1 :]
    for i, item in enumerate(items):
        if isinstance(item, str) and item.startswith("--"):
            nxt = items[i + 1] if i + 1 < len(items) else None
            value: object = True if nxt is None or str(nxt).startswith("--") else nxt
            out[item[2:].replace("-", "_")] = value
    return out


@lru_cache(maxsize=256)
def _read_metrics(path: str, _mtime_ns: int, _size: int) -> tuple[dict, ...]:
    return tuple(RunDir(Path(path)).metrics())


def run_metrics(run: RunDir) -> list[dict]:
    """metrics.jsonl records, re-read only when the file changed."""
    try:
        st = run.metrics_file.stat()
    except OSError:
        return []
    return list(_read_metrics(str(run.path), st.st_mtime_ns, st.st_size))


def key_metric(method: str) -> str:
    """The validation figure that summarises a run: accuracy for the classifier, AuC of ab for colorizers."""
    from core.methods import get_method

    try:
        return get_method(method).key_metric
    except KeyError:
        return "auc_ab"


def best_validation(records: Sequence[Mapping], metric: str) -> float | None:
    """The highest value of ``metric`` over the validation records (None before the first validation)."""
    values = [float(r[metric]) for r in records if r.get("type") == "val" and _finite(r.get(metric))]
    return max(values) if values else None


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def progress_fraction(status: Mapping) -> float:
    """Share of the run's steps done, 0..1 (1 for a completed run)."""
    if status.get("state") == "completed":
        return 1.0
    step, total = status.get("step"), status.get("total_steps")
    if _finite(step) and _finite(total) and float(total) > 0:
        return max(0.0, min(1.0, float(step) / float(total)))
    return 0.0


def is_active(status: Mapping) -> bool:
    """Whether a status belongs to a job still starting or running."""
    return status.get("state") in ACTIVE


def state_label(status: Mapping) -> str:
    """A live status's state as shown: ``failed (process lost)`` for a trainer that vanished, else the state."""
    return LOST if status.get("lost") else str(status.get("state") or "unknown")


def run_state(run: RunDir, status: Mapping) -> str:
    """The run's state as listed: its status's (see :func:`state_label`), else unknown (a config, no state) or
    starting (nothing yet)."""
    if status.get("state"):
        return state_label(status)
    return "unknown" if run.exists() else "starting"


def run_row(run: RunDir, status: Mapping | None = None) -> dict[str, object]:
    """One row of the runs table (``eta_s`` only while the job is active; ``started`` as a datetime), from
    ``status`` when given (a status read once for several views), else the run's live status."""
    status = run.live_status() if status is None else status
    cfg = run_config(run)
    method = str(cfg.get("model") or status.get("model") or "")
    metric = key_metric(method)
    best = best_validation(run_metrics(run), metric) if method else None
    started = status.get("started")
    state = run_state(run, status)
    eta = status.get("eta_s")
    return {
        "run": run.id, "state": state, "progress": round(100.0 * progress_fraction(status), 1),
        "eta_s": float(eta) if state in ACTIVE and _finite(eta) else None,
        "method": method, "split": str(cfg.get("split") or ""),
        "started": datetime.fromtimestamp(float(started)) if _finite(started) else None,
        "best_metric": metric if best is not None else "", "best_value": best,
    }


def runs_table(runs: Sequence[RunDir] | None = None, runs_dir: str | Path | None = None,
               statuses: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """The runs table: state, progress %, ETA (s), method, split, started time and best validation figure;
    ``statuses`` (run id -> live status, read once) makes it show exactly what other views of that moment show."""
    import pandas as pd

    runs = find_runs(runs_dir) if runs is None else runs
    statuses = statuses or {}
    return pd.DataFrame([run_row(r, statuses.get(r.id)) for r in runs], columns=list(RUNS_COLUMNS))


# --- curves ------------------------------------------------------------------------------------------
def loss_frame(records: Sequence[Mapping]) -> pd.DataFrame:
    """Step records in long form: step, epoch, phase, loss, value."""
    import pandas as pd

    rows = [{"step": int(r["step"]), "epoch": float(r.get("epoch", math.nan)), "phase": str(r.get("phase", "")),
             "loss": k, "value": float(v)}
            for r in records if r.get("type") == "step" and "step" in r
            for k, v in r.items() if k not in STEP_META and _finite(v)]
    return pd.DataFrame(rows, columns=["step", "epoch", "phase", "loss", "value"])


def val_frame(records: Sequence[Mapping], metrics: Sequence[str] = VAL_METRICS) -> pd.DataFrame:
    """Validation records in long form: step, epoch, phase, metric, value (only ``metrics``)."""
    import pandas as pd

    rows = [{"step": int(r["step"]), "epoch": float(r.get("epoch", math.nan)), "phase": str(r.get("phase", "")),
             "metric": k, "value": float(r[k])}
            for r in records if r.get("type") == "val" and "step" in r
            for k in metrics if _finite(r.get(k))]
    return pd.DataFrame(rows, columns=["step", "epoch", "phase", "metric", "value"])


def phase_spans(records: Sequence[Mapping]) -> list[dict[str, object]]:
    """Stretches of one phase as ``{"phase", "start", "end"}`` in steps (a phase starts where the last ended)."""
    spans: list[dict[str, object]] = []
    for r in sorted((r for r in records if "step" in r and r.get("phase")), key=lambda r: int(r["step"])):
        step, phase = int(r["step"]), str(r["phase"])
        if spans and spans[-1]["phase"] == phase:
            spans[-1]["end"] = max(int(spans[-1]["end"]), step)
        else:
            start = int(spans[-1]["end"]) if spans else 0
            spans.append({"phase": phase, "start": start, "end": step})
    return spans


# --- deletion and waiting ----------------------------------------------------------------------------
def delete_run(run: RunDir, runs_dir: str | Path | None = None) -> None:
    """Delete a run directory; refuses an active run and anything that is not a run directly in ``runs_dir``."""
    root = (Path(runs_dir) if runs_dir else default_runs_dir()).resolve()
    path = run.path.resolve()
    if path.parent != root:
        raise JobError(f"{run.path} is not a run in {root}; nothing deleted")
    if not (run.config.is_file() or run.status_file.is_file() or run.launch_file.is_file()):
        raise JobError(f"{run.path} is not a run directory (no config.json, status.json or {LAUNCH_NAME}); nothing "
                       "deleted")
    status = run.live_status()
    if is_active(status):
        raise JobError(f"{run.id} is {status['state']}; cancel it and wait for it to stop before deleting")
    shutil.rmtree(path)


def wait_for_state(run: RunDir, states: Sequence[str], timeout: float = 30.0) -> dict:
    """Poll the run's live status until its state is one of ``states`` or ``timeout`` seconds pass."""
    end = time.time() + timeout
    status = run.live_status()
    while status.get("state") not in states and time.time() < end:
        time.sleep(0.2)
        status = run.live_status()
    return status


def runs_to_cancel(name_or_prefix: str, runs_dir: str | Path | None = None) -> list[RunDir]:
    """The active runs ``cancel`` stops: the run of that name if there is one, else those whose name starts with it.

    JobError when no run at all (active or not) has that name or prefix, so a typo does not pass for "nothing to do".
    """
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    if not name_or_prefix:
        raise JobError("give a run name or a prefix of run names")
    runs = find_runs(root)
    matches = [r for r in runs if r.id == name_or_prefix] or [r for r in runs if r.id.startswith(name_or_prefix)]
    if not matches:
        raise JobError(f"no run named or starting with {name_or_prefix!r} in {root}")
    return [r for r in matches if is_active(r.live_status())]


# --- python -m core.runs -------------------------------------------------------------------------------
def _status_line(label: str, status: Mapping, run: RunDir) -> str:
    """``LABEL: STATE (MESSAGE)``, one line."""
    message = " ".join(str(status.get("message") or "").split())
    return f"{label}: {run_state(run, status)}" + (f" ({message})" if message else "")


def _list_command(args: argparse.Namespace) -> int:
    runs = [r for r in find_runs(args.runs_dir) if r.id.startswith(args.prefix)]
    rows = [run_row(r) for r in runs]
    if args.active:
        rows = [row for row in rows if row["state"] in ACTIVE]
    if args.json:
        for row in rows:
            row["started"] = row["started"].isoformat(timespec="seconds") if row["started"] else None
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        what = "active runs" if args.active else "runs"
        print(f"no {what}" + (f" starting with {args.prefix!r}" if args.prefix else "")
              + f" in {args.runs_dir or default_runs_dir()}", file=sys.stderr)
        return 0
    cells = [("run", "state", "progress", "method")]
    cells += [(str(r["run"]), str(r["state"]), f"{float(r['progress']):.0f}%", str(r["method"])) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    for row in cells:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip())
    return 0


def _wait_command(args: argparse.Namespace) -> int:
    runs = {spec: resolve_run(spec, args.runs_dir) for spec in dict.fromkeys(args.runs)}
    end = None if args.timeout is None else time.monotonic() + args.timeout
    waiting, ok = dict(runs), True
    while True:
        for spec, run in list(waiting.items()):
            status = run.live_status()
            if run_state(run, status) not in ACTIVE:
                print(_status_line(spec, status, run), flush=True)
                ok &= status.get("state") in args.state
                del waiting[spec]
        if not waiting:
            return 0 if ok else 1
        if end is not None and time.monotonic() >= end:
            for spec, run in waiting.items():  # still going: as it stands now
                print(_status_line(spec, run.live_status(), run), flush=True)
            return 1
        time.sleep(args.interval if end is None else max(0.0, min(args.interval, end - time.monotonic())))


def _cancel_command(args: argparse.Namespace) -> int:
    runs = runs_to_cancel(args.name, args.runs_dir)
    if not runs:
        print(f"nothing to cancel: no active run named or starting with {args.name!r}")
    failed = 0
    for run in runs:
        pid = cancel_target(run)
        if pid is not None and cancel_job(run):
            print(f"cancelling {run.id} (SIGTERM to process {pid}; it saves last.pt and ends as cancelled)")
        else:
            print(f"error: {run.id} could not be cancelled: no process on this machine is verified to be its trainer "
                  "(nothing was signalled)", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _seconds(text: str) -> float:
    """A non-negative number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be zero or more, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m core.runs", description="List, show, wait for and cancel training "
                                "runs (the run directories in the runs folder).")
    p.add_argument("--runs-dir", type=Path, default=None, metavar="DIR",
                   help="the runs folder (default: env COLORIZE_RUNS_DIR, else runs/ in the project)")
    common = argparse.ArgumentParser(add_help=False)  # --runs-dir after the subcommand too
    common.add_argument("--runs-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", parents=[common], help="runs, newest first: run, state, progress, method")
    ls.add_argument("prefix", nargs="?", default="", help="only runs whose name starts with this")
    ls.add_argument("--active", action="store_true", help="only runs still starting or running")
    ls.add_argument("--json", action="store_true", help="every column of the runs table, as JSON")
    st = sub.add_parser("status", parents=[common], help="a run's live status as JSON")
    st.add_argument("run", help="a run's name in the runs folder, or the path of a run directory")
    wt = sub.add_parser("wait", parents=[common], help="wait until every run has ended (completed, failed or "
                        "cancelled); exit 0 if all ended in the wanted states, 1 otherwise")
    wt.add_argument("runs", nargs="+", metavar="RUN", help="run names, or paths of run directories")
    wt.add_argument("--state", nargs="+", choices=FINAL, default=["completed"],
                    help="the states that count as success (default: completed)")
    wt.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                    help="give up after this many seconds (exit 1; 0: look once); default: no limit")
    wt.add_argument("--interval", type=_seconds, default=2.0, metavar="S", help="seconds between looks (default 2)")
    cn = sub.add_parser("cancel", parents=[common], help="SIGTERM to the active run of that name, or else to "
                        "every active run whose name starts with it (each saves last.pt and ends as cancelled)")
    cn.add_argument("name", metavar="NAME_OR_PREFIX")
    return p


def _command(args: argparse.Namespace) -> int:
    if args.command == "list":
        return _list_command(args)
    if args.command == "status":
        print(json.dumps(resolve_run(args.run, args.runs_dir).live_status(), indent=1))
        return 0
    if args.command == "wait":
        if args.interval <= 0:
            raise JobError("--interval must be more than 0 seconds")
        return _wait_command(args)
    return _cancel_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m core.runs`` command: 0 done, 1 failed (or a wait not ended as wanted), 2 bad input."""
    args = _parser().parse_args(argv)
    try:
        code = _command(args)
        sys.stdout.flush()  # a reader gone away is met here, not at the interpreter's exit
        return code
    except BrokenPipeError:

        return reader_gone()
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
