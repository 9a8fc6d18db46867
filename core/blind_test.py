"""The colorization Turing test (Zhang et al. 2016; Nazeri et al. 2018): real picture or colorization?

A person sees a real test image and one model's colorization of it side by side, in random order, and
clicks the one they think is real. Picking the colorization means the person was *fooled*. A perfect
colorizer fools people half the time (they can only guess), so a fooled rate near 50% is the best possible.

Answers are kept per model in a small JSON file::

    {"version": 1, "models": {"<model name>": {"trials": 12, "fooled": 5}, ...}}

Every change re-reads the file under an exclusive lock (``<file>.lock``), updates the counts and replaces
the file atomically, so several dashboard sessions answering at once never lose an answer and a reader
never sees half a file. A file that is not valid tally JSON raises :class:`BlindTestFileError` (a
``ValueError``) saying what to do; it is never silently overwritten, except by :func:`reset`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from core.atomic import atomic_write_text
from core.colour import uint8_to_model
from core.figures import picture_columns
from core.sources import default_cache_dir

FILE_ENV = "COLORIZE_BLIND_TEST_FILE"
FILE_VERSION = 1
SIDES = ("left", "right")
TALLY_COLUMNS = ("model", "trials", "fooled", "fooled_rate", "ci_low", "ci_high")
LOCK_TIMEOUT_S = 10.0


class BlindTestFileError(ValueError):
    """The tally file exists but cannot be read as tallies (corrupt or foreign JSON)."""


class Predictor(Protocol):
    """A model-space L -> ab predictor (a trained colorizer or a baseline)."""

    def predict(self, L: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Trial:
    """One question: test image ``image_index``, colorized by ``model``; the real image is on ``real_side``."""

    image_index: int
    model: str
    real_side: str  # "left" | "right"


# --- statistics ------------------------------------------------------------------------------------------
def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (z=1.96: 95%); (0.0, 1.0) when n = 0 (nothing known yet).

    Unlike the normal approximation it stays within [0, 1] and is sensible for small n and for k = 0 or n.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# --- choosing and answering trials ----------------------------------------------------------------------
def make_trial(rng: np.random.Generator, n_images: int, models: Sequence[str]) -> Trial:
    """A random trial: an image among ``n_images``, a model among ``models``, a random side for the real one."""
    if n_images < 1:
        raise ValueError("the blind test needs at least one test image")
    if not models:
        raise ValueError("the blind test needs at least one model")
    return Trial(image_index=int(rng.integers(n_images)), model=str(models[int(rng.integers(len(models)))]),
                 real_side=SIDES[int(rng.integers(2))])


def is_fooled(trial: Trial, clicked_side: str) -> bool:
    """True when the person clicked the colorization (the side that is not the real one)."""
    if clicked_side not in SIDES:
        raise ValueError(f"clicked side must be one of {SIDES}, got {clicked_side!r}")
    return clicked_side != trial.real_side


@torch.no_grad()
def trial_pair(model: Predictor, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(real, colorized) uint8 (H, W, 3) versions of one uint8 image, both through the same Lab -> RGB path.

    The real one is rebuilt from its own L and a,b so that rounding cannot tell the two apart; the
    colorized one joins the same L with the model's a,b.
    """
    L, ab_true = uint8_to_model(np.asarray(image)[None])
    (_, fake), (_, real) = picture_columns(L, {"colorized": model.predict(L)}, ab_true, gray=False)
    return real[0], fake[0]


def arrange(trial: Trial, real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) images of a trial: the real one on ``trial.real_side``."""
    return (real, fake) if trial.real_side == "left" else (fake, real)


# --- the tally file ---------------------------------------------------------------------------------------
def tally_file() -> Path:
    """Where tallies live: env COLORIZE_BLIND_TEST_FILE, else ``<cache dir>/blind_test.json``."""
    env = os.environ.get(FILE_ENV)
    return Path(env).expanduser() if env else default_cache_dir() / "blind_test.json"


def _parse(text: str, path: Path) -> dict[str, dict[str, int]]:
    """Model -> {"trials", "fooled"} from the file's text; BlindTestFileError if it is not tally JSON."""
    if not text.strip():
        return {}
    hint = "fix it, delete it, or reset the tallies"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BlindTestFileError(f"blind-test file {path} is not valid JSON ({e.msg}, line {e.lineno}); {hint}") from e
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise BlindTestFileError(f"blind-test file {path} has no 'models' table; {hint}")
    out: dict[str, dict[str, int]] = {}
    for name, counts in models.items():
        try:
            trials, fooled = int(counts["trials"]), int(counts["fooled"])
        except (TypeError, KeyError, ValueError) as e:
            raise BlindTestFileError(f"blind-test file {path}: bad counts for model {name!r}; {hint}") from e
        if not 0 <= fooled <= trials:
            raise BlindTestFileError(f"blind-test file {path}: model {name!r} has {fooled} fooled of {trials}; {hint}")
        out[str(name)] = {"trials": trials, "fooled": fooled}
    return out


def _read(path: Path) -> dict[str, dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as e:
        raise BlindTestFileError(f"blind-test file {path} is not text; fix it, delete it, or reset the tallies") from e
    return _parse(text, path)


def _write(path: Path, models: dict[str, dict[str, int]]) -> None:
    """Replace the file atomically (:func:`core.atomic.atomic_write_text`)."""
    atomic_write_text(path, json.dumps({"version": FILE_VERSION, "models": models}, indent=1, sort_keys=True))


@contextlib.contextmanager
def _exclusive_create_lock(lock: Path, timeout: float) -> Iterator[None]:
    """Lock by creating ``lock`` exclusively (for systems without flock); a lock older than ``timeout`` is stale."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            pass
        with contextlib.suppress(OSError):
            if time.time() - lock.stat().st_mtime > timeout:
                lock.unlink()
                continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"{lock} stayed locked; remove it if no one is answering")
        time.sleep(0.01)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (flock where available, else an exclusive-create lock file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is None:
        with _exclusive_create_lock(lock, timeout):
            yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def record_answer(path: str | Path, model: str, fooled: bool) -> dict[str, int]:
    """Add one answer for ``model`` to the tally file (re-read under the lock, merged, written atomically).

    Returns the model's new counts {"trials", "fooled"}. Raises BlindTestFileError if the file is corrupt.
    """
    path = Path(path)
    with _locked(path):
        models = _read(path)
        counts = models.setdefault(str(model), {"trials": 0, "fooled": 0})
        counts["trials"] += 1
        counts["fooled"] += int(bool(fooled))
        _write(path, models)
    return dict(counts)


def load_tallies(path: str | Path, z: float = 1.96) -> pd.DataFrame:
    """One row per model (by name): trials, fooled, fooled_rate and its Wilson interval ci_low..ci_high.

    A missing or empty file gives an empty table; a corrupt one raises BlindTestFileError.
    """
    models = _read(Path(path))
    rows = []
    for name in sorted(models):
        k, n = models[name]["fooled"], models[name]["trials"]
        lo, hi = wilson_interval(k, n, z)
        rows.append({"model": name, "trials": n, "fooled": k, "fooled_rate": k / n if n else float("nan"),
                     "ci_low": lo, "ci_high": hi})
    table = pd.DataFrame(rows, columns=list(TALLY_COLUMNS))
    return table.astype({"trials": "int64", "fooled": "int64", "fooled_rate": "float64", "ci_low": "float64",
                         "ci_high": "float64"})


def reset(path: str | Path) -> None:
    """Forget every answer: the file is replaced by empty tallies (also when it was corrupt)."""
    path = Path(path)
    with _locked(path):
        _write(path, {})
