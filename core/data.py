"""Prepared data: a dataset, its per-image colour statistics and a train/validation split, in one call.

``python -m core.data --source SOURCE --split {random,hue} --val-fraction F --seed S [--json OUT]``
prepares (and caches) the data and prints a short summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_write, atomic_write_text
from core.cli import ArgumentParser, run_command
from core.colour import image_stats
from core.progress import ProgressFn, report
from core.sources import Dataset, DataSourceError, cache_key, default_cache_dir, load_dataset, release_pages
from core.splits import SPLIT_KINDS, Split, make_split, split_stats

STATS_VERSION = 1
STATS_PIECE = 8192  # images per statistics call (one progress report each)


@dataclass
class PreparedData:
    """A dataset with its colour statistics per part and one split of its ``train`` part."""

    dataset: Dataset
    stats: dict[str, dict[str, np.ndarray]]  # part -> statistic name -> per-image values
    split: Split

    def hues(self, part: str) -> np.ndarray:
        return self.stats[part][f"hue_{self.split.hue_method}"]

    def images(self, subset: str) -> np.ndarray:
        """uint8 images of ``train``, ``val`` or ``test`` as the split defines them."""
        src, idx = self._locate(subset)
        return self.dataset.parts[src].images[idx]

    def rows(self, subset: str) -> tuple[np.ndarray, np.ndarray]:
        """The part's whole image array (a memory map when prepared with ``mmap``) and the positions in it of
        ``subset``'s images, so a caller can read a few rows at a time instead of copying the subset."""
        src, idx = self._locate(subset)
        return self.dataset.parts[src].images, idx

    def labels(self, subset: str) -> np.ndarray:
        src, idx = self._locate(subset)
        return self.dataset.parts[src].labels[idx]

    def subset_hues(self, subset: str) -> np.ndarray:
        src, idx = self._locate(subset)
        return self.hues(src)[idx]

    def _locate(self, subset: str) -> tuple[str, np.ndarray]:
        if subset in ("train", "val"):
            return "train", getattr(self.split, subset)
        if subset == "test":
            if "test" not in self.dataset.parts:
                raise DataSourceError(f"source {self.dataset.source!r} has no test part; use a train/test layout")
            return "test", self.split.test
        raise ValueError(f"unknown subset {subset!r}; use train, val or test")

    def summary(self) -> dict:
        """Split statistics (sizes, hue histograms, class counts, KS statistic) as a JSON-ready dict."""
        test = self.dataset.parts.get("test")
        out = split_stats(
            self.split, self.hues("train"), self.dataset.parts["train"].labels,
            self.hues("test") if test is not None else None, test.labels if test is not None else None,
            n_classes=max(1, len(self.dataset.class_names)),
        )
        return {"source": self.dataset.source, "name": self.dataset.name, "class_names": self.dataset.class_names,
                "n_skipped": self.dataset.n_skipped, **self.split.params(), **out}


def dataset_stats(dataset: Dataset, size: int = 32, cache_dir: str | Path | None = None,
                  progress: bool | ProgressFn = False) -> dict[str, dict[str, np.ndarray]]:
    """Per-image colour statistics of every part, cached on disk next to the decoded images; a ``progress``
    callback gets ``("statistics", images done, images in all parts)`` when they are computed."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / "stats" / f"{cache_key(dataset.source, size)}-v{STATS_VERSION}.npz"
    if path.exists():
        with np.load(path) as z:
            out: dict[str, dict[str, np.ndarray]] = {}
            for key in z.files:
                part, name = key.split("/", 1)
                out.setdefault(part, {})[name] = z[key]
            if set(out) == set(dataset.parts):
                return out
    total = sum(len(p.images) for p in dataset.parts.values())
    out, done = {}, 0
    report(progress, "statistics", 0, total)
    for part, p in dataset.parts.items():
        pieces = []
        for start in range(0, len(p.images), STATS_PIECE):  # in pieces, so the reports come every few seconds
            pieces.append(image_stats(p.images[start : start + STATS_PIECE]))
            release_pages(p.images)  # a memory-mapped part is read once, not kept
            done += len(pieces[-1]["is_grayscale"])
            report(progress, "statistics", done, total)
        out[part] = {k: np.concatenate([piece[k] for piece in pieces]) for k in pieces[0]} if pieces \
            else image_stats(p.images)
    atomic_write(path, lambda f: np.savez(f, **{f"{part}/{k}": v for part, d in out.items() for k, v in d.items()}))
    return out


def prepare(source: str = "sample", split: str = "hue", val_fraction: float = 0.1, seed: int = 0,
            gray_threshold: float = 5.0, hue_method: str = "circular", size: int = 32,
            cache_dir: str | Path | None = None, progress: bool | ProgressFn = True,
            download: bool = False, mmap: bool = False) -> PreparedData:
    """Load a source, compute (or reuse) its statistics and split its train part.

    ``progress``: True shows tqdm bars; a callback ``(stage, done, total)`` (:mod:`core.progress`) gets the
    stages ``reading``/``decoding`` (images), ``statistics`` (images) and ``split`` as they run. ``mmap``: the
    images stay in the disk cache, memory-mapped (:func:`core.sources.load_dataset`).
    """
    dataset = load_dataset(source, size=size, cache_dir=cache_dir, progress=progress, download=download,
                           mmap=mmap)
    if "train" not in dataset.parts or len(dataset.parts["train"].images) == 0:
        raise DataSourceError(f"source {source!r} has no training images")
    stats = dataset_stats(dataset, size=size, cache_dir=cache_dir, progress=progress)
    report(progress, "split", 0, 1)
    is_gray = stats["train"]["max_abs_ab"] <= gray_threshold
    n_test = len(dataset.parts["test"].images) if "test" in dataset.parts else 0
    sp = make_split(stats["train"][f"hue_{hue_method}"], is_gray, n_test, kind=split, val_fraction=val_fraction,
                    seed=seed, gray_threshold=gray_threshold, hue_method=hue_method, source=source)
    report(progress, "split", 1, 1)
    return PreparedData(dataset, stats, sp)


def prepare_for(config: Mapping[str, Any] | Any, source: str | None = None, progress: bool = False,
                mmap: bool = False, **overrides: Any) -> PreparedData:
    """The data set and split a run's configuration names (a TrainConfig or its saved dict), ``size`` included;
    ``source`` and ``overrides`` (split, val_fraction, seed) replace the configuration's own."""
    c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    c |= {k: v for k, v in overrides.items() if v is not None}
    return prepare(source or c.get("source") or "sample", c.get("split") or "hue", float(c.get("val_fraction", 0.1)),
                   int(c.get("seed", 0)), float(c.get("gray_threshold", 5.0)), size=int(c.get("size") or 32),
                   progress=progress, mmap=mmap)


def prepare_from_split(split: Split, size: int = 32, cache_dir: str | Path | None = None,
                       progress: bool = True) -> PreparedData:
    """Rebuild prepared data from a saved split, checking the source still has the same images."""
    prepared = prepare(split.source, split.kind, split.val_fraction, split.seed, split.gray_threshold,
                       split.hue_method, size=size, cache_dir=cache_dir, progress=progress)
    if not (np.array_equal(prepared.split.train, split.train) and np.array_equal(prepared.split.val, split.val)):
        raise DataSourceError(f"source {split.source!r} no longer gives the saved split; it changed on disk")
    return prepared


def _print_summary(s: dict, seconds: float) -> None:
    print(f"source        {s['source']} ({s['name']}), {len(s['class_names'])} classes, "
          f"{s['n_skipped']} unreadable files skipped")
    print(f"train part    {s['n_total']} images, {s['n_grayscale_dropped']} grayscale dropped "
          f"(|a|,|b| <= {s['gray_threshold']})")
    print(f"split         {s['kind']} (val_fraction {s['val_fraction']}, seed {s['seed']}): "
          f"{s['n_train']} train, {s['n_val']} val, {s['n_test']} test")
    print(f"hue KS        train vs val: {s['ks_hue']:.4f} (p = {s['ks_pvalue']:.3g})")
    print(f"time          {seconds:.2f} s")


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m core.data", description=__doc__.splitlines()[0])
    p.add_argument("--source", default="sample", help="cifar10, sample, or a folder/archive path (default: sample)")
    p.add_argument("--split", choices=SPLIT_KINDS, default="hue")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gray-threshold", type=float, default=5.0)
    p.add_argument("--hue-method", choices=("circular", "arithmetic"), default="circular")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--download", action="store_true", help="download CIFAR-10 when it is missing (needs network)")
    p.add_argument("--save-split", type=Path, help="write the split (indices and parameters) as JSON here")
    p.add_argument("--json", type=Path, help="write the summary as JSON here")
    args = p.parse_args(argv)

    return run_command(lambda: _run(args), bad_input=(ValueError,))


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    prepared = prepare(args.source, args.split, args.val_fraction, args.seed, args.gray_threshold,
                       args.hue_method, size=args.size, download=args.download)
    summary = prepared.summary()
    _print_summary(summary, time.perf_counter() - t0)
    if args.save_split:
        prepared.split.save(args.save_split)
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
