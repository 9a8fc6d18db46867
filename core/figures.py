"""Image grids: gray | model ... | truth rows, enlarged with nearest-neighbour so single pixels stay visible.

:func:`picture_columns` (and its row-wise form :func:`picture_rows`) is the one place that turns a batch's L,
its predictions and its truth into the gray | model(s) | truth pictures; the training samples, the study
figure, the Compare grid, the Home page strip and the blind test all build their pictures with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from core.atomic import atomic_write
from core.colour import model_to_rgb, rgb_to_uint8

# model-space a,b as a tensor (N, 2, H, W), joined with the batch's L; or finished uint8 RGB pictures (N, H, W, 3)
Colours: TypeAlias = torch.Tensor | np.ndarray

FONT_SIZE = 11  # pixels: titles and captions
TEXT_H = 15  # pixels of a line of text, with a margin


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (bundled with matplotlib: clear digits, real spaces), else Pillow's default font."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), FONT_SIZE)
    except (ImportError, OSError):
        return ImageFont.load_default(FONT_SIZE)


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """``text`` shortened (ending in …) until it fits ``width`` pixels."""
    font = _font()
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an (H, W, 3) uint8 image by an integer factor."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def image_grid(rows: list[list[np.ndarray]], scale: int = 4, pad: int = 2, titles: list[str] | None = None,
               background: int = 255, captions: list[list[str]] | None = None) -> np.ndarray:
    """Tile rows of equal-size uint8 images into one picture, with optional column titles on top and captions
    under each cell (``captions[i][j]`` for row i, column j; a newline starts a second line)."""
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one row with one image")
    if captions is not None and len(captions) != len(rows):
        raise ValueError(f"image_grid got {len(captions)} caption rows for {len(rows)} image rows")
    h, w = rows[0][0].shape[:2]
    cell_h, cell_w = h * scale, w * scale
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    top = TEXT_H if titles else 0
    lines = max((str(t).count("\n") + 1 for line in captions or [] for t in line), default=0)
    below = TEXT_H * lines
    row_h = cell_h + below + pad
    out = np.full((top + n_rows * row_h + pad, n_cols * (cell_w + pad) + pad, 3), background, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = top + pad + i * row_h, pad + j * (cell_w + pad)
            out[y : y + cell_h, x : x + cell_w] = enlarge(img, scale)
    if titles or captions:
        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        font, room = _font(), cell_w - 3
        for j, t in enumerate((titles or [])[:n_cols]):
            draw.text((pad + j * (cell_w + pad) + 2, 1), _fit(draw, t, room), fill=(0, 0, 0), font=font)
        for i, line in enumerate(captions or []):
            for j, t in enumerate(line[:n_cols]):
                for k, part in enumerate(str(t).split("\n")):
                    draw.text((pad + j * (cell_w + pad) + 2, top + pad + i * row_h + cell_h + 1 + k * TEXT_H),
                              _fit(draw, part, room), fill=(60, 60, 60), font=font)
        out = np.asarray(pil)
    return out


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Save a uint8 image as PNG atomically (:func:`core.atomic.atomic_write`): a reader never sees a partial file."""
    return atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def as_pictures(L: torch.Tensor, colours: Colours) -> np.ndarray:
    """uint8 (N, H, W, 3) pictures of a batch: a tensor is model-space a,b joined with ``L`` (N, 1, H, W) through
    the model's Lab -> RGB path; an array is taken as the pictures themselves. Raises ValueError on a mismatch."""
    n, size = L.shape[0], tuple(L.shape[2:])
    if isinstance(colours, torch.Tensor):
        if colours.ndim != 4 or colours.shape[1] != 2 or colours.shape[0] != n or tuple(colours.shape[2:]) != size:
            raise ValueError(f"predictions of shape {tuple(colours.shape)} do not fit {n} images of {size}")
        return rgb_to_uint8(model_to_rgb(L.detach().cpu(), colours.detach().cpu()))
    pictures = np.asarray(colours)
    if pictures.shape != (n, *size, 3) or pictures.dtype != np.uint8:
        raise ValueError(f"pictures of shape {pictures.shape} ({pictures.dtype}) do not fit {n} uint8 images of {size}")
    return pictures


def picture_columns(L: torch.Tensor, predictions: Mapping[str, Colours] | Sequence[tuple[str, Colours]],
                    truth: Colours, gray: bool = True, gray_title: str = "gray", truth_title: str = "truth",
                    ) -> list[tuple[str, np.ndarray]]:
    """The columns gray | each prediction | truth of a batch, each ``(title, uint8 (N, H, W, 3) pictures)``:
    the one layout every comparison picture uses (``gray=False`` leaves out the gray input)."""
    items = list(predictions.items()) if isinstance(predictions, Mapping) else list(predictions)
    columns = []
    if gray:
        zeros = torch.zeros(L.shape[0], 2, *L.shape[2:], dtype=torch.float32)
        columns.append((gray_title, as_pictures(L, zeros)))
    columns.extend((title, as_pictures(L, colours)) for title, colours in items)
    columns.append((truth_title, as_pictures(L, truth)))
    return columns


def picture_rows(L: torch.Tensor, predictions: Mapping[str, Colours] | Sequence[tuple[str, Colours]],
                 truth: Colours, gray: bool = True, gray_title: str = "gray", truth_title: str = "truth",
                 ) -> tuple[list[list[np.ndarray]], list[str]]:
    """:func:`picture_columns` as rows for :func:`image_grid` (one list of cells per image) and the column titles."""
    columns = picture_columns(L, predictions, truth, gray, gray_title, truth_title)
    return [[pictures[i] for _, pictures in columns] for i in range(L.shape[0])], [t for t, _ in columns]


def picture_grid(L: torch.Tensor, predictions: Mapping[str, Colours] | Sequence[tuple[str, Colours]],
                 truth: Colours, scale: int = 4, gray_title: str = "gray", truth_title: str = "truth",
                 ) -> np.ndarray:
    """One picture of :func:`picture_rows` with the column titles on top (:func:`image_grid`)."""
    rows, titles = picture_rows(L, predictions, truth, gray_title=gray_title, truth_title=truth_title)
    return image_grid(rows, scale=scale, titles=titles)
