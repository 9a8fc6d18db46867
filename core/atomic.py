"""Atomic file writes: readers see the old file or the new one, never half of one.

Every writer of checkpoints, status, config, split files, settings, cached arrays and blind-test answers goes
through :func:`atomic_write`: the content goes to a temporary file ``.<name>.<random>.tmp`` in the target's
folder, is flushed and synced to disk, made 0644 and renamed over the target (``os.replace``, atomic on one
file system), and the folder is synced so the rename itself survives a crash. On any error the temporary file
is removed and the error re-raised, so the old file stays intact. A process killed mid-write can still leave
a temporary file behind; :func:`remove_stale_temporaries` clears those.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o644  # mkstemp makes 0600 files; outputs are as readable as any other file
TEMPORARY_SUFFIX = ".tmp"
# ".<name>.<8 random characters of tempfile's alphabet>.tmp": what atomic_write leaves behind when killed
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def temporary_prefix(path: Path) -> str:
    """The start of the temporary files' names for ``path`` (``.<name>.``), so callers and tests can find them."""
    return f".{path.name}."


def _fsync_folder(folder: Path) -> None:
    """Sync a folder's entries to disk, so a rename in it survives a crash (best effort: not every OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    """Sync a file that its writer already closed, by opening it again."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Replace ``path`` with what ``write`` writes to the binary file object it gets (``torch.save``, PNG, npy):
    temporary file in the same folder, flush, fsync, chmod 0644, rename, folder fsync; nothing left on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX)
    tmp = Path(name)
    try:
        f = os.fdopen(fd, "wb")
        try:
            write(f)
            closed_by_writer = f.closed
            if not closed_by_writer:
                f.flush()
                os.fsync(f.fileno())
        finally:
            f.close()
        if closed_by_writer:
            _fsync_path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically (see :func:`atomic_write`), encoded as ``encoding``."""
    return atomic_write_bytes(path, text.encode(encoding))


def is_temporary(path: str | Path) -> bool:
    """Whether a file name has the shape of :func:`atomic_write`'s temporary files (``.<name>.<random>.tmp``)."""
    return bool(_TEMPORARY.match(Path(path).name))


def remove_stale_temporaries(folder: str | Path, recursive: bool = False, min_age_s: float = 0.0) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder`` (and below, when
    ``recursive``), so a run starting in a folder does not keep them; ``min_age_s`` spares files younger than
    that many seconds (another process may still be writing them). Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    now = time.time()
    removed = []
    for p in sorted(candidates):
        if not is_temporary(p) or p.is_symlink() or not p.is_file():
            continue
        try:
            if min_age_s > 0 and now - p.stat().st_mtime < min_age_s:
                continue
            p.unlink()
        except FileNotFoundError:  # its writer finished (renamed it) or gave up meanwhile
            continue
        removed.append(p)
    return removed


__all__ = ["FILE_MODE", "atomic_write", "atomic_write_bytes", "atomic_write_text", "is_temporary",
           "remove_stale_temporaries", "temporary_prefix"]
