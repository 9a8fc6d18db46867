"""What the Colorize page shows besides the colorizations themselves: screen-sized copies of full-resolution
pictures, the bundled photographs, each model's measured network size, and score tables with the gray baseline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from core.compare import DISPLAY_SIDE, PICTURE_SCORES, for_display, limit_size, png_bytes, score_picture
from core.inference import gray_picture

SCREEN_SIDE = 1600  # pictures shown on the page are reduced to at most this longer side (downloads stay full size)
GRAY_ROW = "gray (baseline)"


def screen_copy(image: np.ndarray, max_side: int = SCREEN_SIDE, min_side: int = DISPLAY_SIDE) -> np.ndarray:
    """The picture as the page shows it: reduced (area-averaged) to at most ``max_side``, or a small one enlarged
    (nearest-neighbour) to at least ``min_side``."""
    if max(image.shape[:2]) > max_side:
        return np.array(limit_size(Image.fromarray(image), max_side))
    return for_display(image, min_side)


def photo_pictures() -> list[tuple[str, bytes]]:
    """The photo check's photographs (:mod:`core.photo_check`) as ``(file name, PNG bytes)``."""
    from core.photo_check import PHOTOS, photo

    return [(f"photo-{name}.png", png_bytes(photo(name))) for name in PHOTOS]


def size_summary(card: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A card's photo-check result: ``size`` (the default), its mean ``value`` and the ``gray`` mean of the metric,
    ``means`` by size, the ``metric`` and the number of ``photos``; None when the card has none."""
    card = card or {}
    check = card.get("net_size_check")
    size = card.get("default_net_size")
    if not isinstance(check, Mapping) or not isinstance(size, int):
        return None
    means = {int(k): float(v) for k, v in (check.get("mean_by_size") or {}).items()}
    if size not in means:
        return None
    return {"size": size, "value": means[size], "gray": float(check.get("gray_mean", float("nan"))), "means": means,
            "metric": str(check.get("metric", "mae_rgb")), "photos": len(check.get("photos") or [])}


def score_table(colorized: Mapping[str, np.ndarray], original: np.ndarray) -> pd.DataFrame:
    """Scores (``core.compare.PICTURE_SCORES``) of each colorization against the original's own colours, one row
    per model, and a last row for the gray picture (no colour at all: the baseline to beat)."""
    rows = {name: score_picture(image, original) for name, image in colorized.items()}
    rows[GRAY_ROW] = score_picture(gray_picture(original), original)
    return pd.DataFrame.from_dict(rows, orient="index")[list(PICTURE_SCORES)]


__all__ = ["GRAY_ROW", "SCREEN_SIDE", "photo_pictures", "score_table", "screen_copy", "size_summary"]
