"""Side-by-side comparison of colorizers, and pictures of any size colorized and scored against their own colours.

Comparison grids: choose the rows of an evaluation (filter by class and hue, sort by a per-image metric or by
how much two models disagree, page through), render each row as gray | each model | truth, and export a page
as one PNG. Pictures: read uploaded bytes (any format Pillow reads, colour or gray, 8- or 16-bit, with or
without alpha) into RGB, score a colorization against the picture's own colours, and build before/after views.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from core.colour import AB_SCALE, image_stats, uint8_to_model
from core.figures import enlarge, image_grid, picture_rows
from core.inference import PictureError, open_picture, picture_rgb  # noqa: F401 - PictureError: pages catch it here
from core.metrics import METRICS, per_image_metrics

PAGE_SIZE = 8
GRID_SCALE = 4
MAX_SIDE = 2048  # pictures with a longer side are reduced to this before colorizing
SCORE_SIDE = 1024  # scores are computed on pictures reduced to at most this longer side
DISPLAY_SIDE = 256  # small pictures are enlarged (nearest-neighbour) to at least this for display
PICTURE_TYPES = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")
PICTURE_SCORES = ("auc_ab", "psnr", "mae_rgb", "colorfulness_ratio")


# --- choosing rows -----------------------------------------------------------------------------------
def filter_rows(per_image: pd.DataFrame, classes: Sequence[str] | None = None,
                hue_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Positions of the rows whose class is in ``classes`` (all when empty) and whose hue lies in ``hue_range``."""
    lo, hi = float(hue_range[0]), float(hue_range[1])
    hues = per_image["hue"].to_numpy(dtype=np.float64)
    keep = (hues >= lo) & (hues <= hi)
    if classes:
        keep &= per_image["class_name"].isin(list(classes)).to_numpy()
    return np.flatnonzero(keep)


def disagreement(pred_a: torch.Tensor, pred_b: torch.Tensor) -> np.ndarray:
    """Per image: mean per-pixel a,b distance (Lab units) between two model-space predictions (N, 2, H, W)."""
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"predictions differ in shape: {tuple(pred_a.shape)} and {tuple(pred_b.shape)}")
    if len(pred_a) == 0:
        return np.zeros(0)
    diff = (pred_a.float() - pred_b.float()) * AB_SCALE
    return diff.square().sum(dim=1).sqrt().mean(dim=(1, 2)).double().numpy()


def sort_rows(rows: np.ndarray, key: np.ndarray, descending: bool = True) -> np.ndarray:
    """``rows`` ordered by ``key[rows]`` (stable; rows whose key is NaN go last either way)."""
    rows = np.asarray(rows, dtype=np.int64)
    values = np.asarray(key, dtype=np.float64)[rows]
    nan = np.isnan(values)
    good, bad = rows[~nan], rows[nan]
    v = values[~nan]
    order = np.argsort(-v if descending else v, kind="stable")
    return np.concatenate((good[order], bad))


def select_rows(per_image: pd.DataFrame, classes: Sequence[str] | None = None,
                hue_range: tuple[float, float] = (0.0, 1.0), key: np.ndarray | None = None,
                descending: bool = True) -> np.ndarray:
    """Filter by class and hue, then sort by ``key`` (one value per row of ``per_image``; None keeps the order)."""
    rows = filter_rows(per_image, classes, hue_range)
    return rows if key is None else sort_rows(rows, key, descending)


def page_count(n_rows: int, page_size: int = PAGE_SIZE) -> int:
    """Number of pages for ``n_rows`` rows (at least 1, so an empty selection still has a page)."""
    return max(1, math.ceil(n_rows / max(1, page_size)))


def page_of(rows: np.ndarray, page: int, page_size: int = PAGE_SIZE) -> np.ndarray:
    """The rows on ``page`` (counted from 1; clipped to the pages there are)."""
    page = min(max(1, int(page)), page_count(len(rows), page_size))
    return np.asarray(rows)[(page - 1) * page_size : page * page_size]


# --- rendering and export ---------------------------------------------------------------------------
def render_rows(images: np.ndarray, predictions: Sequence[torch.Tensor], rows: np.ndarray) -> list[list[np.ndarray]]:
    """One list per row: gray | each model's prediction | truth, as uint8 (H, W, 3) pictures."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return []
    truth = images[rows]
    L, _ = uint8_to_model(truth)
    index = torch.from_numpy(rows)
    return picture_rows(L, [(str(k), pred[index]) for k, pred in enumerate(predictions)], truth)[0]


def grid_titles(model_names: Sequence[str]) -> list[str]:
    """Column titles of a comparison grid: the gray input, the models, the truth."""
    return ["input", *model_names, "truth"]


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) picture encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


DECIMALS = {"ssim": 3, "colorfulness_ratio": 2}  # every other metric: one decimal (auc_ab 75.0, mae_rgb 11.2)
CAPTION_NAMES = {"colorfulness_ratio": "colour ratio"}  # shorter, so name and value fit under a 128-pixel cell


def format_value(metric: str, value: float) -> str:
    """A metric's value as a caption shows it: ``75.0`` for auc_ab, ``0.952`` for ssim, ``–`` for no value."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.{DECIMALS.get(metric, 1)}f}"


def grid_captions(per_image: pd.DataFrame, model_tables: Sequence[pd.DataFrame], rows: np.ndarray,
                  metric: str, extra: np.ndarray | None = None, extra_label: str = "") -> list[list[str]]:
    """The lines under each cell of a grid: '#index class' under the input (and ``extra_label`` with the row's
    ``extra`` value, such as the disagreement sorted by, on a second line), each model's ``metric`` under its
    prediction ('auc_ab 75.0'), 'hue h' (the truth's mean hue) under the truth."""
    out = []
    for i in np.asarray(rows, dtype=np.int64).tolist():
        info = per_image.iloc[i]
        label = CAPTION_NAMES.get(metric, metric)
        named = [f"{label} {format_value(metric, t[metric].iloc[i])}" for t in model_tables]
        first = f"#{i} {info['class_name']}".strip()
        if extra is not None:
            first += f"\n{extra_label} {float(extra[i]):.2f}".rstrip()
        out.append([first, *named, f"hue {info['hue']:.2f}"])
    return out


def page_table(per_image: pd.DataFrame, model_tables: Sequence[pd.DataFrame], model_names: Sequence[str],
               rows: np.ndarray, metric: str, extra: np.ndarray | None = None, extra_label: str = "",
               ) -> pd.DataFrame:
    """The rows of a grid page as a table indexed '#<image index>': class, mean hue, ``extra_label`` (the row's
    ``extra`` value, when given) and each model's ``metric``."""
    rows = np.asarray(rows, dtype=np.int64)
    table = pd.DataFrame({"class": per_image["class_name"].to_numpy()[rows], "hue": per_image["hue"].to_numpy()[rows]},
                         index=pd.Index([f"#{i}" for i in rows.tolist()], name="image"))
    if extra is not None:
        table[extra_label] = np.asarray(extra, dtype=np.float64)[rows]
    for name, t in zip(model_names, model_tables):
        table[name] = t[metric].to_numpy()[rows]
    return table


def grid_png(rows: list[list[np.ndarray]], titles: Sequence[str], scale: int = GRID_SCALE,
             captions: list[list[str]] | None = None) -> bytes:
    """Rows of a comparison as one PNG figure (the one the Compare page shows and exports): column titles,
    cells enlarged ``scale`` times, a caption line under each cell."""
    return png_bytes(image_grid(rows, scale=scale, titles=list(titles), captions=captions))


# --- pictures ---------------------------------------------------------------------------------------
@dataclass
class Picture:
    """An uploaded picture as RGB, whether it has colour, and its size before any reduction."""

    name: str
    rgb: np.ndarray  # uint8 (H, W, 3)
    is_colour: bool
    original_size: tuple[int, int]  # (width, height) as uploaded

    @property
    def reduced(self) -> bool:
        return (self.rgb.shape[1], self.rgb.shape[0]) != self.original_size

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "picture"


def is_colour(rgb: np.ndarray, threshold: float = 5.0) -> bool:
    """Whether a uint8 (H, W, 3) picture has colour: some pixel with |a| or |b| above ``threshold``."""
    small = np.array(limit_size(Image.fromarray(rgb), 512))
    return not bool(image_stats(small[None], gray_threshold=threshold)["is_grayscale"][0])


def limit_size(image: Image.Image, max_side: int | None) -> Image.Image:
    """The picture reduced (area-averaged) so that its longer side is at most ``max_side``; None: unchanged."""
    w, h = image.size
    if max_side is None or max(w, h) <= max_side:
        return image
    scale = max_side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)


def read_picture(data: bytes, name: str = "picture", max_side: int | None = MAX_SIDE) -> Picture:
    """Decode uploaded bytes into a :class:`Picture`; raises :class:`PictureError` with a one-line reason that
    names the file (see :func:`core.inference.open_picture`)."""
    im = open_picture(data, name)
    try:
        rgb = np.array(limit_size(Image.fromarray(picture_rgb(im)), max_side))
    except PictureError:
        raise
    except Exception as e:  # a mode or depth the conversion does not take
        raise PictureError(f"{name}: not a readable picture ({type(e).__name__} while converting its "
                           f"{im.mode} pixels); upload a PNG, JPEG, WebP, BMP or TIFF file") from None
    return Picture(name, rgb, is_colour(rgb), im.size)


def score_picture(colorized: np.ndarray, original: np.ndarray, max_side: int | None = SCORE_SIDE) -> dict[str, float]:
    """Metrics (``core.metrics.METRICS``) of a colorized picture against the original's own colours.

    Both are judged as shown: L comes from the original, a,b from each picture; both are first reduced
    alike to at most ``max_side`` pixels on the longer side to bound the work.
    """
    if colorized.shape != original.shape:
        raise ValueError(f"colorized picture is {colorized.shape}, original {original.shape}")
    if max_side is not None and max(original.shape[:2]) > max_side:
        colorized = np.array(limit_size(Image.fromarray(colorized), max_side))
        original = np.array(limit_size(Image.fromarray(original), max_side))
    L, ab_true = uint8_to_model(original[None])
    _, ab_pred = uint8_to_model(colorized[None])
    values = per_image_metrics(L, ab_pred, ab_true, ssim=min(original.shape[:2]) >= 7)
    return {k: float(values[k][0]) for k in METRICS}


def before_after(before: np.ndarray, after: np.ndarray, position: float = 0.5) -> np.ndarray:
    """A wipe between two pictures of one size: ``after`` left of ``position`` (0..1 of the width), ``before``
    right of it, with a thin white line between."""
    if before.shape != after.shape:
        raise ValueError(f"pictures differ in size: {before.shape} and {after.shape}")
    w = before.shape[1]
    cut = int(round(min(max(position, 0.0), 1.0) * w))
    out = before.copy()
    out[:, :cut] = after[:, :cut]
    line = max(1, w // 200)
    if 0 < cut < w:
        out[:, max(0, cut - line // 2 - line % 2) : cut + line // 2] = 255
    return out


def for_display(image: np.ndarray, min_side: int = DISPLAY_SIDE) -> np.ndarray:
    """A small picture enlarged (nearest-neighbour, integer factor) so its longer side reaches ``min_side``."""
    side = max(image.shape[:2])
    if side >= min_side or side == 0:
        return image
    return enlarge(image, math.ceil(min_side / side))


def sample_pictures(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], count: int = 6,
                    scale: int = 8) -> list[tuple[str, bytes]]:
    """A few test images of different classes, enlarged ``scale`` times, as (file name, PNG bytes)."""
    out: list[tuple[str, bytes]] = []
    seen: set[int] = set()
    for i, label in enumerate(np.asarray(labels).tolist()):
        if label in seen:
            continue
        seen.add(label)
        name = class_names[label] if 0 <= label < len(class_names) else f"class{label}"
        out.append((f"sample-{i:04d}-{name}.png", png_bytes(enlarge(images[i], scale))))
        if len(out) >= count:
            break
    return out
