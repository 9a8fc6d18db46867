"""One writer per run directory: the training process holds an exclusive ``flock`` on ``RUN/.lock`` for its
whole life, with its pid and start time written inside. A second start or resume finds the lock held and is
refused before it writes anything; readers ask the lock (not a pid that may have been reused) whether a run
is alive. The kernel drops the lock when the process ends, however it ends (``kill -9`` included).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class RunLockedError(Exception):
    """The run directory is held by another live training process; the message names its pid."""


def process_start_time(pid: int) -> float | None:
    """The kernel's start time of a process (clock ticks since boot, from /proc), to tell a pid reused by
    another process from the original; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return float(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class RunLock:
    """The exclusive lock of one run directory, held by the process that trains into it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the holder; records this process inside."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.path.parent)
            who = f"process {holder['pid']}" if holder else "another process"
            raise RunLockedError(f"{self.path.parent} is being trained by {who}; wait for it to end or cancel it "
                                 "first (nothing was changed)") from None
        info = {"pid": os.getpid(), "start_time": process_start_time(os.getpid()), "locked_at": time.time(),
                "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def lock_visible(run_dir: str | Path) -> bool:
    """Whether this machine can ask the run's lock: it has a lock file taken here (a run of an older version
    has none, and a run trained on another machine records that machine's name)."""
    if not (Path(run_dir) / LOCK_NAME).is_file():
        return False
    host = (read_holder(run_dir) or {}).get("host")
    return host is None or host == socket.gethostname()


def read_holder(run_dir: str | Path) -> dict | None:
    """What the lock file says of its last holder (pid, start time), or None when there is no lock file."""
    try:
        return json.loads((Path(run_dir) / LOCK_NAME).read_text() or "null")
    except (OSError, json.JSONDecodeError):
        return None


def is_locked(run_dir: str | Path) -> bool:
    """Whether a live process holds the run's lock (asked of the kernel: a shared lock attempt fails)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock if it was taken
    return False


def verified_trainer(run_dir: str | Path) -> int | None:
    """The pid of the process training into ``run_dir``, only when the lock is held and the pid recorded in
    it still belongs to the process that took it (same start time); otherwise None."""
    if not is_locked(run_dir):
        return None
    holder = read_holder(run_dir) or {}
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return None
    started = holder.get("start_time")
    if started is not None and process_start_time(pid) != started:
        return None
    return pid
