"""Data-exploration helpers for the dashboard: hue histograms, hue ranges, galleries and comparison strips.

Everything here is a pure function over arrays, tables and evaluation results, returning numpy arrays and
pandas DataFrames; the dashboard draws them (its figures are in dashboard/charts.py).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.colour import gray_images, model_to_rgb, rgb_to_uint8, uint8_to_model
from core.figures import enlarge, picture_columns
from core.methods import method_names
from core.splits import HUE_BINS, hue_histogram, spread_subset

HEADLINE_METRICS = ("auc_ab", "mae_rgb", "psnr", "colorfulness_ratio")


# --- hue histograms ---------------------------------------------------------------------------------
def hue_colour(hue: float) -> str:
    """The colour of a hue in [0, 1) at full saturation and value, as ``#rrggbb``."""
    r, g, b = colorsys.hsv_to_rgb(float(hue) % 1.0, 1.0, 1.0)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def hue_bin_edges(bins: int = HUE_BINS) -> np.ndarray:
    """The ``bins + 1`` edges of equal hue bins over [0, 1]."""
    return np.linspace(0.0, 1.0, bins + 1)


def hue_histogram_frame(hues_by_part: Mapping[str, np.ndarray], bins: int = HUE_BINS) -> pd.DataFrame:
    """Long table of hue-bin counts per part: part, bin, hue_lo, hue_mid, hue_hi, count, share (%), colour."""
    edges = hue_bin_edges(bins)
    colours = [hue_colour((edges[i] + edges[i + 1]) / 2) for i in range(bins)]
    rows = []
    for part, hues in hues_by_part.items():
        counts = hue_histogram(np.asarray(hues), bins)
        total = max(1, sum(counts))
        for i, c in enumerate(counts):
            rows.append({"part": part, "bin": i, "hue_lo": edges[i], "hue_mid": (edges[i] + edges[i + 1]) / 2,
                         "hue_hi": edges[i + 1], "count": int(c), "share": 100.0 * c / total, "colour": colours[i]})
    return pd.DataFrame(rows, columns=["part", "bin", "hue_lo", "hue_mid", "hue_hi", "count", "share", "colour"])


def indices_in_hue_range(hues: np.ndarray, lo: float, hi: float, limit: int | None = None,
                         order: str = "hue") -> np.ndarray:
    """Positions of the hues in [lo, hi) (hi = 1 includes 1; lo > hi wraps round red), by hue or by position;
    with ``limit``, a fixed draw of that many spread over the whole range (not just its start)."""
    h = np.asarray(hues, dtype=np.float64)
    upper = h <= hi if hi >= 1.0 else h < hi
    inside = (h >= lo) & upper if lo <= hi else (h >= lo) | upper
    idx = np.flatnonzero(inside)
    if order == "hue":
        idx = idx[np.argsort(h[idx], kind="stable")]
    elif order != "position":
        raise ValueError(f"unknown order {order!r}; use hue or position")
    return idx[spread_subset(len(idx), limit)]


# --- tables -----------------------------------------------------------------------------------------
def split_overview(summaries: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per split kind: sizes, grayscale dropped and the hue KS statistic with its p-value."""
    cols = ["n_train", "n_val", "n_test", "n_grayscale_dropped", "ks_hue", "ks_pvalue"]
    rows = {kind: {c: s.get(c) for c in cols} for kind, s in summaries.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    frame.index.name = "split"
    return frame


def class_counts_table(summaries: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Images per class (rows) in each split's train and val parts and in test (columns such as ``hue · val``)."""
    first = next(iter(summaries.values()), {})
    names = list(first.get("class_names") or [])
    columns: dict[str, list[int]] = {}
    for kind, s in summaries.items():
        for part in ("train", "val"):
            if part in s.get("class_counts", {}):
                columns[f"{kind} · {part}"] = list(s["class_counts"][part])
    if "test" in first.get("class_counts", {}):
        columns["test"] = list(first["class_counts"]["test"])
    n = max((len(v) for v in columns.values()), default=0)
    index = [names[i] if i < len(names) else str(i) for i in range(n)]
    table = pd.DataFrame(columns, index=pd.Index(index, name="class"))
    if len(table):
        table.loc["total"] = table.sum()
    return table


def headline_table(results: Sequence[tuple[str, str, str, Any]], metrics: Sequence[str] = HEADLINE_METRICS,
                   ) -> pd.DataFrame:
    """Rows ``(label, method, kind, EvalResult)`` as a table of headline metrics, best ``auc_ab`` first."""
    rows = [{"model": label, "method": method, "kind": kind, "n_images": r.n_images}
            | {m: float(r.metrics.get(m, float("nan"))) for m in metrics} for label, method, kind, r in results]
    table = pd.DataFrame(rows, columns=["model", "method", "kind", "n_images", *metrics])
    if "auc_ab" in table and len(table):
        table = table.sort_values("auc_ab", ascending=False, kind="stable")
    return table.set_index("model")


def row_labels(results: Sequence[Any]) -> list[str]:
    """Each result's model name as the leaderboard lists it: a repeated name gets a number (``unet (2)``)."""
    seen: dict[str, int] = {}
    labels = []
    for r in results:
        seen[r.model] = seen.get(r.model, 0) + 1
        labels.append(r.model if seen[r.model] == 1 else f"{r.model} ({seen[r.model]})")
    return labels


def group_table(results: Sequence[Any], table: str, metric: str, baseline: str | None = "gray") -> pd.DataFrame:
    """One row per model and group of a per-group table of every result (``table``: ``per_class`` or
    ``per_hue_bin``): ``model``, ``group`` (class name, or hue range in degrees), ``n_images``, ``value`` (the
    metric) and ``vs_baseline`` (the value minus the ``baseline`` model's in the same group; NaN without one).

    Groups with no images are left out."""
    frames = []
    for r, label in zip(results, row_labels(results)):
        t = getattr(r, table)
        if table == "per_hue_bin":
            group = [f"{lo * 360:.0f}–{hi * 360:.0f}°" for lo, hi in zip(t["hue_lo"], t["hue_hi"])]
        else:
            group = list(t["class_name"])
        frames.append(pd.DataFrame({"model": label, "group": group, "n_images": t["n_images"].to_numpy(),
                                    "value": t[metric].to_numpy(dtype=np.float64)}))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "group", "n_images",
                                                                                      "value"])
    out = out[out["n_images"] > 0].reset_index(drop=True)
    base = out[out["model"] == baseline].set_index("group")["value"] if baseline else pd.Series(dtype=float)
    out["vs_baseline"] = out["value"] - out["group"].map(base).astype(np.float64)
    return out


def zoomed_range(values: Sequence[float], margin: float = 0.1) -> tuple[float, float] | None:
    """An axis range that shows the spread of ``values`` (with ``margin`` of it either side) instead of starting
    at zero; None when there is no finite value."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    pad = (hi - lo) * margin or max(abs(hi) * 0.01, 1e-3)
    return lo - pad, hi + pad


# --- models and image strips ------------------------------------------------------------------------
def strip_models(entries: Sequence[Any], methods: Sequence[str] | None = None) -> list[Any]:
    """One model per method, in ``methods`` order (default: the registered colorizers): a shipped one when there
    is one, else the last run listed."""
    chosen = []
    for method in method_names(colorizers_only=True) if methods is None else methods:
        mine = [e for e in entries if getattr(e, "method", None) == method]
        shipped = [e for e in mine if getattr(e, "kind", None) == "shipped"]
        if shipped:
            chosen.append(shipped[0])
        elif mine:
            chosen.append(mine[-1])
    return chosen


def strip_positions(n_available: int, count: int = 6) -> np.ndarray:
    """``count`` fixed positions spread evenly over the first ``n_available`` images (fewer when there are fewer)."""
    if n_available <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n_available - 1, min(count, n_available)).round().astype(np.int64))


def colorized_images(images: np.ndarray, ab: torch.Tensor) -> np.ndarray:
    """uint8 pictures from the true L of ``images`` and predicted model-space ``ab`` (N, 2, H, W)."""
    L, _ = uint8_to_model(np.asarray(images))
    if tuple(ab.shape[0:1] + ab.shape[2:]) != (L.shape[0], *L.shape[2:]):
        raise ValueError(f"predictions of shape {tuple(ab.shape)} do not fit {len(L)} images of {tuple(L.shape[2:])}")
    return rgb_to_uint8(model_to_rgb(L, ab.float()))


def stack_column(images: np.ndarray, scale: int = 3, pad: int = 2, background: int = 255) -> np.ndarray:
    """Images enlarged (nearest-neighbour) and stacked top to bottom with a thin gap: one strip column."""
    if len(images) == 0:
        raise ValueError("stack_column needs at least one image")
    cells = [enlarge(img, scale) for img in images]
    h, w = cells[0].shape[:2]
    out = np.full((len(cells) * (h + pad) - pad, w, 3), background, np.uint8)
    for i, cell in enumerate(cells):
        out[i * (h + pad) : i * (h + pad) + h] = cell
    return out


def comparison_strip(truth: np.ndarray, predictions: Mapping[str, torch.Tensor], scale: int = 3,
                     ) -> list[tuple[str, np.ndarray]]:
    """Columns gray | one per model | truth, each ``(title, picture)``: the images stacked and enlarged."""
    truth = np.asarray(truth)
    L, _ = uint8_to_model(truth)
    columns = picture_columns(L, predictions, truth, gray_title="Gray input", truth_title="Truth")
    return [(title, stack_column(pictures, scale)) for title, pictures in columns]


def enlarged(images: np.ndarray, scale: int = 3) -> list[np.ndarray]:
    """Each image enlarged by ``scale`` with nearest-neighbour, for galleries."""
    return [enlarge(img, scale) for img in np.asarray(images)]


__all__ = ["HEADLINE_METRICS", "hue_colour", "hue_bin_edges", "hue_histogram_frame", "indices_in_hue_range",
           "split_overview", "class_counts_table", "headline_table", "row_labels", "group_table", "zoomed_range",
           "strip_models", "strip_positions", "gray_images", "colorized_images", "stack_column", "comparison_strip",
           "enlarged"]
