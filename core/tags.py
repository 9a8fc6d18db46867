"""Tags on runs: short plain words such as ``keep`` and ``archive``, kept in the run folder as ``RUN/tags.json``.

    {"version": 1, "tags": ["archive", "keep"]}

A tag is a lower-case word of letters, digits, ``_`` and ``-`` (at most 32 characters, starting with a letter or
a digit); names are lower-cased and checked before anything is written, and the file is replaced atomically
(:func:`core.atomic.atomic_write_text`). :func:`add_tag` and :func:`remove_tag` read, change and write the file
under an exclusive lock on ``RUN/.tags.lock``, so two sessions tagging one run at once lose neither change.

``keep`` marks the runs that Home and the Blind test offer beside the shipped models (:func:`featured_models`);
``archive`` marks runs the Runs page hides unless asked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from core.atomic import atomic_write_text
from core.runs import RunDir

TAGS_NAME = "tags.json"
LOCK_NAME = ".tags.lock"
FILE_VERSION = 1
KEEP = "keep"
ARCHIVE = "archive"
SUGGESTED = (KEEP, ARCHIVE)
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class TagError(ValueError):
    """A tag name that is not a plain word, or a tags file that cannot be read; the message says what to do."""


class _Entry(Protocol):
    """What :func:`featured_models` needs of a model entry (``core.inference.ModelEntry``)."""

    kind: str
    path: str


E = TypeVar("E", bound=_Entry)


def _run(run: RunDir | str | Path) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir(Path(run))


def tags_file(run: RunDir | str | Path) -> Path:
    """Where a run's tags live: ``RUN/tags.json``."""
    return _run(run).path / TAGS_NAME


def check_tag(name: str) -> str:
    """``name`` stripped and lower-cased, or :class:`TagError` when it is not a plain word."""
    tag = str(name).strip().lower()
    if not TAG_PATTERN.match(tag):
        raise TagError(f"tag {name!r} is not a plain word: use 1 to 32 letters, digits, '_' or '-', starting with a "
                       "letter or a digit (for example keep, archive, best-dcgan)")
    return tag


def check_tags(names: Iterable[str]) -> list[str]:
    """Checked tag names, sorted and without repeats (:class:`TagError` names the first bad one)."""
    return sorted({check_tag(n) for n in names})


def parse_tags(text: str) -> list[str]:
    """Tags typed as one line (separated by spaces or commas), checked (see :func:`check_tags`)."""
    return check_tags(t for t in re.split(r"[\s,]+", str(text)) if t)


def _parse(text: str, path: Path) -> list[str]:
    """The tags in a tags file's text; TagError when it is not a tags file."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TagError(f"{path} is not valid JSON ({e.msg}); set the run's tags again to replace it") from e
    tags = data.get("tags") if isinstance(data, dict) else data
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TagError(f"{path} holds no list of tags; set the run's tags again to replace it")
    return sorted({t.strip().lower() for t in tags if TAG_PATTERN.match(t.strip().lower())})


def read_tags(run: RunDir | str | Path, strict: bool = False) -> list[str]:
    """A run's tags, sorted (none when the file is missing); a damaged file reads as no tags, or with
    ``strict`` raises :class:`TagError`."""
    path = tags_file(run)
    try:
        return _parse(path.read_text(encoding="utf-8"), path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (TagError, UnicodeDecodeError) as e:
        if strict:
            raise e if isinstance(e, TagError) else TagError(f"{path} is not text; set the run's tags again") from e
        return []


def _write(run: RunDir, tags: Sequence[str]) -> None:
    atomic_write_text(tags_file(run), json.dumps({"version": FILE_VERSION, "tags": list(tags)}))


@contextlib.contextmanager
def _locked(run: RunDir) -> Iterator[None]:
    """An exclusive flock on ``RUN/.tags.lock`` for a read-change-write of the tags."""
    if not run.path.is_dir():
        raise TagError(f"{run.path} is not a run folder; no tags written")
    with open(run.path / LOCK_NAME, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def set_tags(run: RunDir | str | Path, tags: Iterable[str]) -> list[str]:
    """Replace a run's tags with ``tags`` (checked first: a bad name writes nothing); returns them as stored."""
    run = _run(run)
    checked = check_tags(tags)
    with _locked(run):
        _write(run, checked)
    return checked


def add_tag(run: RunDir | str | Path, tag: str) -> list[str]:
    """Add one tag to a run (re-read under the lock, so concurrent changes are kept); returns the run's tags."""
    run = _run(run)
    name = check_tag(tag)
    with _locked(run):
        tags = sorted(set(read_tags(run, strict=True)) | {name})
        _write(run, tags)
    return tags


def remove_tag(run: RunDir | str | Path, tag: str) -> list[str]:
    """Remove one tag from a run (nothing happens when it was not there); returns the run's tags."""
    run = _run(run)
    name = check_tag(tag)
    with _locked(run):
        tags = read_tags(run, strict=True)
        if name in tags:
            tags = [t for t in tags if t != name]
            _write(run, tags)
    return tags


def has_tag(run: RunDir | str | Path, tag: str) -> bool:
    """Whether a run carries ``tag``."""
    return check_tag(tag) in read_tags(run)


# --- the models Home and the Blind test offer ---------------------------------------------------------------
def featured_models(entries: Sequence[E], show_all: bool = False) -> list[E]:
    """The model entries shown by default: every shipped model and the runs tagged ``keep``, in the given order;
    with ``show_all`` every entry. Entries are ``core.inference.available_models``'s."""
    if show_all:
        return list(entries)
    return [e for e in entries if e.kind != "run" or has_tag(e.path, KEEP)]
