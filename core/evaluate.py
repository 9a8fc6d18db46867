"""Evaluate colorizers and baselines on a part of a data set, image by image, with per-class and per-hue tables.

``python -m core.evaluate (--run RUN_DIR | --checkpoint FILE | --baseline {gray,mean_ab}) --source SOURCE
[--part test|val] [--limit N] [--json OUT] [--csv OUT] [--split random|hue] [--seed S] [--batch-size B]
[--no-ssim]`` prints the metrics and writes them as JSON (``--json``) and the per-image table as CSV (``--csv``).

``python -m core.evaluate --leaderboard SPEC... --source SOURCE [...]`` evaluates several models (run
directories, checkpoint files or ``baseline:NAME``) and both baselines on the same images and prints one
table sorted by ``auc_ab``, the best figure of each column marked with ``*``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from core.baselines import BASELINES, make_baseline
from core.cli import ArgumentParser, run_command
from core.colour import uint8_to_model
from core.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    NOT_RANKED,
    RANK_TARGET,
    aggregate,
    parallel_map,
    per_image_metrics,
    validation_score,
)
from core.precision import PRECISIONS
from core.splits import spread_subset

PARTS = ("test", "val")
SUBSET_SEED = 0  # the draw behind --limit: fixed, so that every model is scored on the same images
HUE_BINS = 12
PIECE = 128  # images per piece of CPU work (conversion, forward pass) handed to a worker thread
BASELINE_PREFIX = "baseline:"


class Predictor(Protocol):
    """What :func:`evaluate` needs of a model: a name and model-space L -> ab prediction."""

    name: str

    def predict(self, L: torch.Tensor) -> torch.Tensor: ...


@dataclass
class EvalResult:
    """Metrics of one model on one part of a data set, overall, per image, per class and per hue bin."""

    model: str
    method: str
    source: str
    part: str
    metrics: dict[str, float]
    per_image: pd.DataFrame
    per_class: pd.DataFrame
    per_hue_bin: pd.DataFrame
    predictions: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model

    @property
    def n_images(self) -> int:
        return len(self.per_image)

    @property
    def score(self) -> float:
        """:func:`core.metrics.validation_score` of the overall metrics."""
        return validation_score(self.metrics)

    def to_json(self) -> dict:
        """A JSON-ready dict: metrics at the top level, tables as lists of records; NaN becomes null."""
        out: dict[str, Any] = {"model": self.model, "method": self.method, "source": self.source,
                               "part": self.part, "n_images": self.n_images}
        out |= self.metrics
        out["score"] = self.score
        out["per_class"] = self.per_class.to_dict(orient="records")
        out["per_hue_bin"] = self.per_hue_bin.to_dict(orient="records")
        out["timing"] = self.timing
        out["info"] = self.info
        return jsonable(out)


def jsonable(obj: Any, keep_nan: bool = False) -> Any:
    """Plain Python values for ``json.dumps``: numpy scalars unwrapped, arrays and tensors as lists, anything else
    as text; NaN and infinity become None (strict JSON) unless ``keep_nan`` (Python's own round trip)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, keep_nan) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, keep_nan) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not keep_nan and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return jsonable(obj.tolist(), keep_nan)
    return str(obj)


def _group_table(per_image: pd.DataFrame, key: str) -> list[dict[str, float]]:
    """Aggregated metrics of each group of ``per_image`` rows sharing ``key`` (in sorted key order)."""
    rows = []
    for value, group in per_image.groupby(key, sort=True):
        m = aggregate({k: group[k].to_numpy() for k in METRICS})
        rows.append({key: value, "n_images": len(group)} | m | {"score": validation_score(m)})
    return rows


def per_class_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per class present: label, class name, image count, metrics and score."""
    rows = _group_table(per_image, "label")
    names = per_image.groupby("label")["class_name"].first().to_dict()
    for r in rows:
        r["class_name"] = names.get(r["label"], "")
    cols = ["label", "class_name", "n_images", *METRICS, "score"]
    return pd.DataFrame(rows, columns=cols)


def per_hue_table(per_image: pd.DataFrame, bins: int = HUE_BINS) -> pd.DataFrame:
    """One row per hue bin of [0, 1) (all ``bins`` of them; an empty bin has count 0 and NaN metrics)."""
    found = {r["hue_bin"]: r for r in _group_table(per_image, "hue_bin")}
    rows = []
    for b in range(bins):
        r = found.get(b) or {"hue_bin": b, "n_images": 0} | {k: float("nan") for k in (*METRICS, "score")}
        rows.append(r | {"hue_lo": b / bins, "hue_hi": (b + 1) / bins})
    cols = ["hue_bin", "hue_lo", "hue_hi", "n_images", *METRICS, "score"]
    return pd.DataFrame(rows, columns=cols)


def hue_bin(hues: np.ndarray, bins: int = HUE_BINS) -> np.ndarray:
    """Bin index 0..bins-1 of hues in [0, 1)."""
    return np.clip(np.floor(np.asarray(hues, dtype=np.float64) * bins), 0, bins - 1).astype(np.int64)


def _on_cpu(model: Any) -> bool:
    """Whether the model runs a network on the CPU (only such models gain from worker threads)."""
    device = getattr(model, "device", None)
    return device is not None and torch.device(device).type == "cpu"


def _predict(model: Predictor, L: torch.Tensor, precisions: set[str] | None = None) -> torch.Tensor:
    """The model's prediction for a batch; CPU networks run on pieces in single-threaded worker threads,
    which on a busy machine is much faster than torch's own threads (see :mod:`core.metrics`). The precision
    each piece ran in is added to ``precisions`` (for models that choose one)."""
    chosen = getattr(model, "chosen_precision", None)
    if not _on_cpu(model):
        out = model.predict(L)
        if chosen is not None and precisions is not None and len(L):
            precisions.add(chosen(L[:1]))
        return out

    def piece(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread
            out = model.predict(x)
        if chosen is not None and precisions is not None:
            precisions.add(chosen(x))  # measured by predict in this thread: a look-up now
        return out

    return torch.cat(parallel_map(piece, L.split(PIECE)))


def predictions(model: Predictor, L: torch.Tensor, precisions: set[str] | None = None) -> torch.Tensor:
    """The model's model-space ab for model-space L, computed as :func:`evaluate` computes them (CPU networks
    in pieces on worker threads, in the model's chosen precision, added to ``precisions``), float32 on the CPU."""
    return _predict(model, L, precisions).detach().float().cpu()


def _convert(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> model-space (L, ab), converted in pieces by the worker threads."""
    pieces = parallel_map(uint8_to_model, [images[i : i + PIECE] for i in range(0, len(images), PIECE)])
    return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])


_CONVERTED: dict[tuple, tuple[weakref.ref, torch.Tensor, torch.Tensor]] = {}
_CONVERTED_LOCK = threading.Lock()
CONVERTED_KEEP = 2  # parts kept converted, the most recent first out last
CONVERTED_MAX_PIXELS = 16 * 1024 * 1024  # larger parts are converted batch by batch instead


def model_space(prepared: Any, part: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Model-space (L, ab) of the images :func:`evaluate` scores for ``part`` and ``limit``, converted once and
    kept for the last few parts asked for, so that every model evaluated on them shares one conversion;
    None for a part too large to keep (it is converted batch by batch)."""
    images = prepared.images(part)
    rows = spread_subset(len(images), limit, SUBSET_SEED)
    if len(rows) * int(np.prod(images.shape[1:3])) > CONVERTED_MAX_PIXELS:
        return None
    key = (id(prepared), part, len(rows))
    with _CONVERTED_LOCK:
        found = _CONVERTED.get(key)
        if found is not None and found[0]() is prepared:
            return found[1], found[2]
    L, ab = _convert(images[rows] if len(rows) < len(images) else images)
    with _CONVERTED_LOCK:
        _CONVERTED.pop(key, None)
        _CONVERTED[key] = (weakref.ref(prepared), L, ab)
        while len(_CONVERTED) > CONVERTED_KEEP:
            _CONVERTED.pop(next(iter(_CONVERTED)))
    return L, ab


def _source_indices(prepared: Any, part: str, rows: np.ndarray) -> np.ndarray:
    """Indices in the data set's own train/test part of the part's images at ``rows`` (``-1`` when unknown)."""
    idx = getattr(getattr(prepared, "split", None), part, None)
    if idx is None or len(rows) and len(idx) <= int(rows.max()):
        return np.full(len(rows), -1, dtype=np.int64)
    return np.asarray(idx, dtype=np.int64)[rows]


@torch.no_grad()
def evaluate(model: Predictor, prepared: Any, part: str = "test", limit: int | None = None,
             batch_size: int = 512, ssim: bool = True, progress: bool = False,
             keep_predictions: bool = False, callback: Callable[[int, int], None] | None = None) -> EvalResult:
    """Evaluate a colorizer or baseline on ``part`` of ``prepared``: all its images, or ``limit`` of them drawn
    with a fixed seed (the same images for every model, every class in proportion).

    ``part`` is ``test`` or ``val`` (``train`` works too). Images go through in batches of ``batch_size``:
    convert to model space, predict, score; only the per-image figures (and, with ``keep_predictions``, the
    predicted ab) are kept. ``progress`` shows a tqdm bar on stderr; ``callback(done, total)`` is called
    after every batch (for a dashboard's progress bar).
    """
    if part not in PARTS and part != "train":
        raise ValueError(f"unknown part {part!r}; use one of {', '.join(PARTS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    t_start = time.perf_counter()
    images = prepared.images(part)
    labels = np.asarray(prepared.labels(part))
    hues = np.asarray(prepared.subset_hues(part))
    if len(images) == 0:
        raise ValueError(f"part {part!r} of {prepared.dataset.source!r} has no images to evaluate")
    rows = spread_subset(len(images), limit, SUBSET_SEED)
    n = len(rows)
    if n < len(images):
        images, labels, hues = images[rows], labels[rows], hues[rows]

    t_convert = t_forward = t_metrics = 0.0
    t0 = time.perf_counter()
    converted = model_space(prepared, part, limit)
    t_convert = time.perf_counter() - t0
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in METRICS}
    kept: list[torch.Tensor] = []
    precisions: set[str] = set()
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"evaluating {model.name}", unit="batch", file=sys.stderr)
    for start in starts:
        t0 = time.perf_counter()
        if converted is not None:
            L, ab_true = converted[0][start : start + batch_size], converted[1][start : start + batch_size]
        else:
            L, ab_true = _convert(images[start : start + batch_size])
        t1 = time.perf_counter()
        ab_pred = _predict(model, L, precisions).detach().float().cpu()
        if ab_pred.shape != ab_true.shape:
            raise ValueError(f"{model.name} predicted shape {tuple(ab_pred.shape)}, expected {tuple(ab_true.shape)}")
        t2 = time.perf_counter()
        m = per_image_metrics(L, ab_pred, ab_true, ssim=ssim)
        t3 = time.perf_counter()
        for k in METRICS:
            chunks[k].append(m[k])
        if keep_predictions:
            kept.append(ab_pred)
        t_convert, t_forward, t_metrics = t_convert + t1 - t0, t_forward + t2 - t1, t_metrics + t3 - t2
        if callback is not None:
            callback(min(start + batch_size, n), n)

    names = list(getattr(prepared.dataset, "class_names", []) or [])
    class_name = [names[lab] if 0 <= lab < len(names) else "" for lab in labels.tolist()]
    per_image = pd.DataFrame({
        "part_index": rows,
        "source_index": _source_indices(prepared, part, rows),
        "label": labels.astype(np.int64),
        "class_name": class_name,
        "hue": hues.astype(np.float64),
        "hue_bin": hue_bin(hues),
    } | {k: np.concatenate(chunks[k]) for k in METRICS}, index=pd.RangeIndex(n, name="index"))
    total = time.perf_counter() - t_start
    timing = {"convert_s": t_convert, "forward_s": t_forward, "metrics_s": t_metrics, "total_s": total,
              "images_per_s": n / total if total > 0 else float("nan")}
    info = dict(getattr(model, "info", {}) or {})
    if getattr(model, "path", None):
        info["path"] = str(model.path)
    if precisions:
        info["precision"] = "+".join(sorted(precisions))
    return EvalResult(
        model=model.name, method=str(getattr(model, "method", "")), source=str(prepared.dataset.source), part=part,
        metrics=aggregate({k: per_image[k].to_numpy() for k in METRICS}), per_image=per_image,
        per_class=per_class_table(per_image), per_hue_bin=per_hue_table(per_image),
        predictions=torch.cat(kept) if keep_predictions else None, info=info, timing=timing,
    )


LEADERBOARD_COLUMNS = (*METRICS, "score")


def leaderboard(results: list[EvalResult]) -> pd.DataFrame:
    """One row per model (index: model name), columns method, n_images, every metric and score; by auc_ab.

    All results must come from the same images (source, part and count), or the comparison means nothing.
    """
    if not results:
        raise ValueError("no results to compare")
    first = results[0]
    for r in results[1:]:
        if (r.source, r.part, r.n_images) != (first.source, first.part, first.n_images):
            raise ValueError(f"{r.model} was evaluated on {r.n_images} {r.part} images of {r.source}, "
                             f"{first.model} on {first.n_images} {first.part} images of {first.source}")
    rows, seen = [], {}
    for r in results:
        name = r.model
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        rows.append({"model": name, "method": r.method, "n_images": r.n_images} | r.metrics | {"score": r.score})
    table = pd.DataFrame(rows).set_index("model")
    return table.sort_values("auc_ab", ascending=False, kind="stable")


def best_per_column(table: pd.DataFrame) -> dict[str, str]:
    """Model with the best figure of each ranked column: highest, lowest, or (colorfulness_ratio) closest to 1."""
    best: dict[str, str] = {}
    for col in LEADERBOARD_COLUMNS:
        if col in NOT_RANKED or col not in table:
            continue
        values = table[col].astype(float)
        if values.isna().all():
            continue
        if col in RANK_TARGET:
            best[col] = str((values - RANK_TARGET[col]).abs().idxmin())
        elif HIGHER_IS_BETTER.get(col, True):
            best[col] = str(values.idxmax())
        else:
            best[col] = str(values.idxmin())
    return best


def format_table(table: pd.DataFrame, best: dict[str, str] | None = None) -> str:
    """The table as text, figures to 4 significant digits, the best of each column followed by ``*``."""
    best = best or {}
    shown = table.copy().astype(object)
    for col in table.columns:
        if col not in LEADERBOARD_COLUMNS:
            continue
        shown[col] = [("nan" if pd.isna(v) else f"{v:.4g}") + ("*" if best.get(col) == idx else "")
                      for idx, v in table[col].items()]
    return shown.to_string()


def format_metrics(result: EvalResult) -> str:
    """The overall metrics of one result as aligned lines, then a short per-class table."""
    lines = [f"model         {result.model} ({result.method})",
             f"images        {result.n_images} {result.part} images of {result.source}"]
    for k in (*METRICS, "score"):
        v = result.score if k == "score" else result.metrics[k]
        lines.append(f"{k:<19} {'nan' if math.isnan(v) else f'{v:.4f}'}")
    t = result.timing
    precision = f", {result.info['precision']}" if result.info.get("precision") else ""
    lines.append(f"time          {t['total_s']:.2f} s (forward {t['forward_s']:.2f} s{precision}, "
                 f"metrics {t['metrics_s']:.2f} s)")
    if len(result.per_class) > 1:
        cols = ["class_name", "n_images", "psnr", "ssim", "auc_ab", "acc_ab_5", "colorfulness_ratio"]
        lines += ["", "per class", result.per_class[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


class _UserError(Exception):
    """A mistake on the command line or in the inputs: reported in one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from core.checkpoint import CheckpointError
    from core.sources import DataSourceError

    return (_UserError, DataSourceError, CheckpointError, FileNotFoundError, NotADirectoryError,
            PermissionError, ValueError)


def load_model(spec: str, prepared: Any | None = None, device: str = "cpu", precision: str = "auto") -> Any:
    """A colorizer from a run directory or checkpoint file (predicting in ``precision``: auto, fp32, bf16), or a
    baseline from ``baseline:NAME``."""
    if spec.startswith(BASELINE_PREFIX):
        return make_baseline(spec[len(BASELINE_PREFIX):], prepared)
    path = Path(spec)
    if not path.exists():
        raise _UserError(f"no run directory or checkpoint file at {spec}")
    from core.inference import load_colorizer

    try:
        return load_colorizer(spec, device=device, precision=precision)
    except (KeyError, TypeError) as e:  # a checkpoint dict without the fields a colorizer needs
        raise _UserError(f"{spec} is not a usable colorizer checkpoint (missing or bad field {e})") from e
    except RuntimeError as e:  # e.g. --device cuda on a machine without CUDA
        raise _UserError(f"cannot load {spec} on device {device!r}: {str(e).splitlines()[0][:200]}") from e


def _config_of(model: Any) -> dict:
    info = getattr(model, "info", None) or {}
    config = info.get("config") if isinstance(info, dict) else None
    return config if isinstance(config, dict) else {}


def _prepare(args: argparse.Namespace, models: list[Any]) -> Any:
    """Data for the evaluation: command-line settings first, then those of the first model's config.

    A run directory evaluated on ``val`` with no --source/--split/--seed given reuses the run's saved split.
    """
    from core.data import prepare_for, prepare_from_split
    from core.splits import Split

    config = next((c for c in map(_config_of, models) if c), {})
    run_split = Path(args.run) / "split.json" if args.run else None
    if args.part == "val" and run_split is not None and run_split.is_file() \
            and args.source is None and args.split is None and args.seed is None:
        return prepare_from_split(Split.load(run_split), size=int(config.get("size") or 32), progress=False)
    return prepare_for(config, args.source, split=args.split, val_fraction=args.val_fraction, seed=args.seed)


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m core.evaluate", description=__doc__.splitlines()[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="run directory (its best.pt, else last.pt)")
    what.add_argument("--checkpoint", help="checkpoint file (.pt)")
    what.add_argument("--baseline", choices=BASELINES, help="a baseline instead of a model")
    what.add_argument("--leaderboard", nargs="+", metavar="SPEC",
                      help="run directories, checkpoint files or baseline:NAME; both baselines are always added")
    p.add_argument("--source", help="cifar10, sample, or a folder/archive path (default: the model's, else sample)")
    p.add_argument("--part", choices=PARTS, default="test")
    p.add_argument("--limit", type=int,
                   help="evaluate N images of the part (a fixed random draw: the same for every model)")
    p.add_argument("--json", type=Path, help="write the metrics (or the leaderboard) as JSON here")
    p.add_argument("--csv", type=Path, help="write the per-image table (or the leaderboard) as CSV here")
    p.add_argument("--split", choices=("random", "hue"), help="split kind (default: the model's, else hue)")
    p.add_argument("--seed", type=int, help="split seed (default: the model's, else 0)")
    p.add_argument("--val-fraction", type=float, help="validation fraction (default: the model's, else 0.1)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="cpu", help="device for the networks (cpu, cuda)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="numeric precision of the networks: auto (CUDA: bf16; CPU: the faster of fp32 and bf16, "
                   "timed on a real forward pass), fp32 or bf16 (default auto)")
    p.add_argument("--no-ssim", action="store_true", help="skip SSIM (the slowest metric)")
    return p


def _write(path: Path, text: str) -> None:
    """Write a report file atomically (its folder is made when missing)."""
    from core.atomic import atomic_write_text

    atomic_write_text(path, text)


def _run(args: argparse.Namespace) -> int:
    progress = sys.stderr.isatty()
    ssim = not args.no_ssim
    if args.leaderboard:
        specs = list(dict.fromkeys([*args.leaderboard, *(BASELINE_PREFIX + b for b in BASELINES)]))
        colorizers = {s: load_model(s, device=args.device, precision=args.precision) for s in specs
                      if not s.startswith(BASELINE_PREFIX)}
        prepared = _prepare(args, list(colorizers.values()))
        models = [colorizers.get(s) or load_model(s, prepared) for s in specs]
        results = [evaluate(m, prepared, args.part, args.limit, args.batch_size, ssim, progress) for m in models]
        table = leaderboard(results)
        best = best_per_column(table)
        print(f"{results[0].n_images} {args.part} images of {results[0].source}")
        print(format_table(table, best))
        if args.json:
            doc = {"source": results[0].source, "part": args.part, "n_images": results[0].n_images,
                   "rows": table.reset_index().to_dict(orient="records"), "best": best,
                   "results": [r.to_json() for r in results]}
            _write(args.json, json.dumps(jsonable(doc), indent=1))
        if args.csv:
            _write(args.csv, table.to_csv())
        return 0
    spec = args.run or args.checkpoint or BASELINE_PREFIX + args.baseline
    model = None if spec.startswith(BASELINE_PREFIX) else load_model(spec, device=args.device,
                                                                      precision=args.precision)
    prepared = _prepare(args, [model] if model is not None else [])
    if model is None:
        model = load_model(spec, prepared)
    result = evaluate(model, prepared, args.part, args.limit, args.batch_size, ssim, progress)
    print(format_metrics(result))
    if args.json:
        _write(args.json, json.dumps(result.to_json(), indent=1))
    if args.csv:
        _write(args.csv, result.per_image.to_csv())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; user errors print one line on stderr and return 2."""

    args = _parser().parse_args(argv)

    def body() -> int:
        if args.limit is not None and args.limit < 1:
            raise _UserError(f"--limit must be a positive number of images, got {args.limit}")
        if args.batch_size < 1:
            raise _UserError(f"--batch-size must be positive, got {args.batch_size}")
        return _run(args)

    return run_command(body, _user_errors())


if __name__ == "__main__":
    sys.exit(main())
