"""Image grids: gray | model ... | truth rows, enlarged with nearest-neighbour so single pixels stay visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.atomic import atomic_write

TEXT_H = 14  # pixels of a line of PIL's default font, with a margin
CHAR_W = 6  # width of one character of that font


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an (H, W, 3) uint8 image by an integer factor."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def image_grid(rows: list[list[np.ndarray]], scale: int = 4, pad: int = 2, titles: list[str] | None = None,
               background: int = 255, captions: list[list[str]] | None = None) -> np.ndarray:
    """Tile rows of equal-size uint8 images into one picture, with optional column titles on top and a
    caption line under each cell (``captions[i][j]`` for row i, column j)."""
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one row with one image")
    if captions is not None and len(captions) != len(rows):
        raise ValueError(f"image_grid got {len(captions)} caption rows for {len(rows)} image rows")
    h, w = rows[0][0].shape[:2]
    cell_h, cell_w = h * scale, w * scale
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    top = TEXT_H if titles else 0
    below = TEXT_H if captions else 0
    row_h = cell_h + below + pad
    out = np.full((top + n_rows * row_h + pad, n_cols * (cell_w + pad) + pad, 3), background, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = top + pad + i * row_h, pad + j * (cell_w + pad)
            out[y : y + cell_h, x : x + cell_w] = enlarge(img, scale)
    if titles or captions:
        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        fit = max(1, cell_w // CHAR_W)  # characters of the default font that fit a cell
        for j, t in enumerate((titles or [])[:n_cols]):
            draw.text((pad + j * (cell_w + pad) + 2, 1), t[:fit], fill=(0, 0, 0))
        for i, line in enumerate(captions or []):
            for j, t in enumerate(line[:n_cols]):
                draw.text((pad + j * (cell_w + pad) + 2, top + pad + i * row_h + cell_h + 1), t[:fit],
                          fill=(60, 60, 60))
        out = np.asarray(pil)
    return out


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Save a uint8 image as PNG atomically (:func:`core.atomic.atomic_write`): a reader never sees a partial file."""
    return atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))
