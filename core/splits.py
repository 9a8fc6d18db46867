"""Train/validation splits of a dataset's ``train`` part: ``random`` and ``hue`` (stratified by mean hue).

Grayscale images are dropped first. The ``test`` part is never split, so test figures compare with
published ones. A split is a plain record of indices and parameters, saved as JSON so that training,
evaluation and the dashboard all use the very same images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.atomic import atomic_write_text  # also importable from here, as before core.atomic existed

SPLIT_KINDS = ("random", "hue")
HUE_BINS = 36


@dataclass
class Split:
    """Indices into a dataset's parts: ``train``, ``val``, ``dropped`` index its train part, ``test`` its test part."""

    kind: str
    val_fraction: float
    seed: int
    gray_threshold: float
    hue_method: str
    source: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    dropped: np.ndarray  # grayscale images removed before splitting
    extra: dict = field(default_factory=dict)

    def params(self) -> dict:
        """The parameters that, with the source, reproduce this split."""
        return {
            "kind": self.kind,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "gray_threshold": self.gray_threshold,
            "hue_method": self.hue_method,
            "source": self.source,
        }

    def to_dict(self) -> dict:
        d = self.params() | {k: getattr(self, k).tolist() for k in ("train", "val", "test", "dropped")}
        d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Split:
        arrays = {k: np.asarray(d[k], dtype=np.int64) for k in ("train", "val", "test", "dropped")}
        return cls(**{k: d[k] for k in ("kind", "val_fraction", "seed", "gray_threshold", "hue_method", "source")},
                   **arrays, extra=d.get("extra", {}))

    def save(self, path: str | Path) -> None:
        """Write the split as JSON, atomically (temporary file, then rename)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        return cls.from_dict(json.loads(Path(path).read_text()))


def random_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions 0..n-1 split by a seeded permutation: (train, val), each sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def hue_split(hues: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sort by mean hue and send every k-th image (k = round(1 / val_fraction)) to validation.

    The sort is stable (ties keep index order), so the split is deterministic; the seed picks which
    of the k offsets goes to validation.
    """
    k = max(2, int(round(1.0 / val_fraction)))
    order = np.argsort(hues, kind="stable")
    is_val = (np.arange(len(order)) % k) == (seed % k)
    return np.sort(order[~is_val]), np.sort(order[is_val])


def make_split(
    hues: np.ndarray,
    is_gray: np.ndarray,
    n_test: int,
    kind: str = "hue",
    val_fraction: float = 0.1,
    seed: int = 0,
    gray_threshold: float = 5.0,
    hue_method: str = "circular",
    source: str = "",
) -> Split:
    """Drop grayscale train images, then split the rest into train and validation by ``kind``."""
    if kind not in SPLIT_KINDS:
        raise ValueError(f"unknown split kind {kind!r}; use one of {SPLIT_KINDS}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    keep = np.flatnonzero(~is_gray)
    if kind == "random":
        tr, va = random_split(len(keep), val_fraction, seed)
    else:
        tr, va = hue_split(hues[keep], val_fraction, seed)
    return Split(kind, val_fraction, seed, gray_threshold, hue_method, source,
                 train=keep[tr], val=keep[va], test=np.arange(n_test, dtype=np.int64),
                 dropped=np.flatnonzero(is_gray))


def spread_subset(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Positions of ``limit`` of ``n`` items drawn at random with ``seed`` (all of them when ``limit`` is None or
    not smaller than ``n``), in increasing order.

    Data parts are stored in class order, so "the first N images" would be one or two classes; a seeded random
    draw keeps every class and hue in proportion, and the same seed always gives the same images.
    """
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    if limit < 1:
        raise ValueError(f"a subset needs at least one item, got limit {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False)).astype(np.int64)


def hue_histogram(hues: np.ndarray, bins: int = HUE_BINS) -> list[int]:
    """Counts of hue values in ``bins`` equal bins over [0, 1)."""
    counts, _ = np.histogram(hues, bins=bins, range=(0.0, 1.0))
    return counts.astype(int).tolist()


def split_stats(split: Split, train_hues: np.ndarray, train_labels: np.ndarray, test_hues: np.ndarray | None = None,
                test_labels: np.ndarray | None = None, n_classes: int = 10, bins: int = HUE_BINS) -> dict:
    """Numbers the dashboard and README show: sizes, hue histograms, class counts and the KS statistic."""
    from scipy.stats import ks_2samp  # here: importing scipy.stats takes about a second, and only this needs it

    parts = {"train": (train_hues[split.train], train_labels[split.train]),
             "val": (train_hues[split.val], train_labels[split.val])}
    if test_hues is not None and test_labels is not None:
        parts["test"] = (test_hues, test_labels)
    ks = ks_2samp(parts["train"][0], parts["val"][0]) if len(split.val) and len(split.train) else None
    return {
        "n_total": int(len(train_hues)),
        "n_grayscale_dropped": int(len(split.dropped)),
        "n_train": int(len(split.train)),
        "n_val": int(len(split.val)),
        "n_test": int(len(split.test)),
        "ks_hue": float(ks.statistic) if ks is not None else float("nan"),
        "ks_pvalue": float(ks.pvalue) if ks is not None else float("nan"),
        "hue_bins": bins,
        "hue_histogram": {p: hue_histogram(h, bins) for p, (h, _) in parts.items()},
        "class_counts": {p: np.bincount(lab[lab >= 0], minlength=n_classes).astype(int).tolist()
                         for p, (_, lab) in parts.items()},
    }


__all__ = ["SPLIT_KINDS", "Split", "make_split", "random_split", "hue_split", "split_stats", "hue_histogram",
           "atomic_write_text"]
