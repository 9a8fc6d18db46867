"""Evaluations kept on disk, so that a restarted dashboard (or a second process) finds them instead of recomputing.

An entry is keyed by what decides its figures: the model's content (sha256 of the checkpoint's bytes; for a run
directory, of the file :func:`core.inference.load_colorizer` loads: best.pt, else last.pt; a baseline by its
name), the source as the decode cache keys it (:func:`core.sources.cache_key`: path, size and modification
time), the split settings, the part, the limit, whether SSIM was computed, and :data:`CODE_VERSION`. Change any
of them and the entry is not found; change the checkpoint's bytes (a resumed run's new best.pt) and the same
path gets a new entry.

An entry is a folder ``<cache root>/evaluations/<digest>/``: ``per_image.parquet``, ``per_class.parquet``,
``per_hue_bin.parquet``, ``predictions.npy`` (model-space a,b, when kept) and ``meta.json`` (the key, the overall
metrics, info and timing), each written atomically (:mod:`core.atomic`), ``meta.json`` last: an entry without
it is incomplete and ignored. :func:`cached_evaluate` looks an evaluation up and computes and stores it when it
is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.atomic import atomic_write, atomic_write_text
from core.evaluate import BASELINE_PREFIX, EvalResult, evaluate, jsonable
from core.progress import ProgressFn
from core.sources import cache_key, default_cache_dir

CODE_VERSION = 2  # bump when evaluation, the metrics, the inference precision or the stored layout change
TABLES = ("per_image", "per_class", "per_hue_bin")
DEFAULT_MAX_BYTES = 2 << 30  # entries beyond this total size are removed, least recently used first
SIZE = 32  # the image size the dashboard's evaluations use


# --- keys ----------------------------------------------------------------------------------------------
def checkpoint_file(spec: str | Path) -> Path:
    """The file a model spec loads: the path itself, or a run directory's best.pt (else its last.pt)."""
    path = Path(spec)
    if path.is_dir():
        best, last = path / "checkpoints" / "best.pt", path / "checkpoints" / "last.pt"
        return best if best.is_file() or not last.is_file() else last
    return path


@lru_cache(maxsize=256)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (re-read only when its size or modification time changed)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def model_key(spec: str) -> str:
    """``baseline:NAME`` as it is, a checkpoint or run directory as ``sha256:<hash of the file it loads>``."""
    if spec.startswith(BASELINE_PREFIX):
        return spec
    return "sha256:" + content_hash(checkpoint_file(spec))


def evaluation_key(spec: str, source: str, part: str, limit: int | None, split: str = "hue",
                   val_fraction: float = 0.1, seed: int = 0, hue_method: str = "circular", ssim: bool = True,
                   ) -> dict[str, Any]:
    """Everything that decides an evaluation's figures, as a JSON-ready dict (see the module docstring)."""
    return {"version": CODE_VERSION, "model": model_key(spec), "source": cache_key(source, SIZE), "part": part,
            "limit": None if limit is None else int(limit), "split": split, "val_fraction": float(val_fraction),
            "seed": int(seed), "hue_method": hue_method, "ssim": bool(ssim)}


def key_digest(key: dict[str, Any]) -> str:
    """A short stable name for a key (its folder name)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


# --- the store -----------------------------------------------------------------------------------------
class EvalCache:
    """Evaluations on disk under ``root`` (default ``<cache root>/evaluations``), one folder per key."""

    def __init__(self, root: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "evaluations"
        self.max_bytes = max_bytes

    def folder(self, key: dict[str, Any]) -> Path:
        return self.root / key_digest(key)

    def load(self, key: dict[str, Any], need_predictions: bool = False) -> EvalResult | None:
        """The stored evaluation of ``key``, or None (absent, incomplete, damaged, or without the predictions
        asked for)."""
        folder = self.folder(key)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("key") != key or (need_predictions and not meta.get("has_predictions")):
                return None
            tables = {t: pd.read_parquet(folder / f"{t}.parquet") for t in TABLES}
            predictions = None
            if meta.get("has_predictions"):
                predictions = torch.from_numpy(np.load(folder / "predictions.npy", allow_pickle=False))
                if len(predictions) != len(tables["per_image"]):
                    return None
        except (OSError, ValueError, KeyError, TypeError):  # absent or damaged: evaluate again
            return None
        try:
            os.utime(folder / "meta.json")  # recently used: pruned last
        except OSError:
            pass
        return EvalResult(model=meta["model"], method=meta["method"], source=meta["source"], part=meta["part"],
                          metrics={k: float(v) for k, v in meta["metrics"].items()}, predictions=predictions,
                          info=meta.get("info") or {}, timing=meta.get("timing") or {}, **tables)

    def save(self, key: dict[str, Any], result: EvalResult) -> Path | None:
        """Store ``result`` under ``key`` (tables, predictions, then meta.json); None when the disk refused."""
        folder = self.folder(key)
        try:
            for t in TABLES:
                table = getattr(result, t)
                atomic_write(folder / f"{t}.parquet", lambda f, table=table: table.to_parquet(f))
            has_predictions = result.predictions is not None
            if has_predictions:
                array = result.predictions.detach().float().cpu().numpy()
                atomic_write(folder / "predictions.npy", lambda f: np.save(f, array, allow_pickle=False))
            meta = {"key": key, "model": result.model, "method": result.method, "source": result.source,
                    "part": result.part, "n_images": result.n_images, "metrics": result.metrics,
                    "has_predictions": has_predictions, "info": result.info, "timing": result.timing}
            atomic_write_text(folder / "meta.json", json.dumps(jsonable(meta, keep_nan=True)))
        except OSError:  # a full or read-only disk costs speed, not the evaluation
            return None
        self.prune()
        return folder

    def entries(self) -> list[Path]:
        """Complete entries, least recently used first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if (p / "meta.json").is_file()]
        return sorted(found, key=lambda p: (p / "meta.json").stat().st_mtime)

    def prune(self) -> list[Path]:
        """Remove the least recently used entries while the total size is over ``max_bytes``; returns them."""
        entries = self.entries()
        sizes = {p: sum(f.stat().st_size for f in p.iterdir() if f.is_file()) for p in entries}
        total, removed = sum(sizes.values()), []
        for p in entries[:-1]:  # the newest entry always stays
            if total <= self.max_bytes:
                break
            shutil.rmtree(p, ignore_errors=True)
            total -= sizes[p]
            removed.append(p)
        return removed


# --- look up, else evaluate ----------------------------------------------------------------------------
def cached_evaluate(spec: str, name: str, source: str, part: str, limit: int | None,
                    get_prepared: Callable[..., Any], get_model: Callable[[str, str, Any], Any], *,
                    split: str = "hue", val_fraction: float = 0.1, seed: int = 0, hue_method: str = "circular",
                    ssim: bool = True, keep_predictions: bool = True, progress: ProgressFn | None = None,
                    cache: EvalCache | None = None) -> EvalResult:
    """The evaluation of model ``spec`` (shown as ``name``) on ``part`` of ``source``: from the disk cache when
    it holds it, else computed and stored.

    ``get_prepared(progress)`` returns the prepared data (called only when evaluating) and ``get_model(spec,
    name, prepared)`` the colorizer or baseline. ``progress`` gets ``("evaluating NAME", images done, images)``
    reports while it runs (and the data's own stages, through ``get_prepared``).
    """
    cache = cache or EvalCache()
    key = evaluation_key(spec, source, part, limit, split, val_fraction, seed, hue_method, ssim)
    found = cache.load(key, need_predictions=keep_predictions)
    if found is not None:
        found.model = name
        return found
    prepared = get_prepared(progress)
    model = get_model(spec, name, prepared)
    stage = f"evaluating {name}"
    if progress is not None:
        progress(stage, 0, 0)
    result = evaluate(model, prepared, part=part, limit=limit, ssim=ssim, keep_predictions=keep_predictions,
                      callback=None if progress is None else lambda done, total: progress(stage, done, total))
    result.model = name
    cache.save(key, result)
    return result


__all__ = ["CODE_VERSION", "EvalCache", "cached_evaluate", "checkpoint_file", "content_hash", "evaluation_key",
           "key_digest", "model_key"]
