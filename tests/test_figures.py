"""core.figures: the one gray | model(s) | truth layout, and the grid and PNG writer built on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.colour import gray_images, uint8_to_model
from core.figures import as_pictures, image_grid, picture_columns, picture_grid, picture_rows, save_png


def test_picture_columns_order_titles_and_content(sample_images: np.ndarray) -> None:
    images = sample_images[:3]
    L, ab = uint8_to_model(images)
    columns = picture_columns(L, {"m1": ab, "m2": torch.zeros_like(ab)}, images)
    assert [t for t, _ in columns] == ["gray", "m1", "m2", "truth"]
    gray, m1, m2, truth = (pictures for _, pictures in columns)
    assert all(p.shape == images.shape and p.dtype == np.uint8 for p in (gray, m1, m2, truth))
    assert np.array_equal(gray, gray_images(images)) and np.array_equal(m2, gray)  # zero a,b is the gray input
    assert np.abs(m1.astype(int) - images.astype(int)).max() <= 3  # true a,b rebuild the picture
    assert truth is images or np.array_equal(truth, images)  # uint8 pictures are taken as they are
    rebuilt = picture_columns(L, [("same", ab), ("same", ab)], ab, gray=False, truth_title="real")
    assert [t for t, _ in rebuilt] == ["same", "same", "real"]  # pairs keep repeated titles; no gray column
    assert np.array_equal(rebuilt[-1][1], rebuilt[0][1])  # a tensor truth goes through the same Lab -> RGB path


def test_picture_rows_and_grid(sample_images: np.ndarray) -> None:
    images = sample_images[:2]
    L, ab = uint8_to_model(images)
    rows, titles = picture_rows(L, {"model": ab}, images, gray_title="input")
    assert titles == ["input", "model", "truth"] and len(rows) == 2 and all(len(r) == 3 for r in rows)
    assert np.array_equal(rows[1][2], images[1])
    grid = picture_grid(L, {"model": ab}, images, scale=2, gray_title="input")
    assert np.array_equal(grid, image_grid(rows, scale=2, titles=titles))
    assert picture_rows(L[:0], {"model": ab[:0]}, images[:0]) == ([], ["gray", "model", "truth"])


def test_mismatched_colours_raise(sample_images: np.ndarray) -> None:
    images = sample_images[:3]
    L, ab = uint8_to_model(images)
    with pytest.raises(ValueError, match="do not fit"):
        as_pictures(L, ab[:2])
    with pytest.raises(ValueError, match="do not fit"):
        as_pictures(L, ab[:, :1])
    with pytest.raises(ValueError, match="do not fit"):
        as_pictures(L, images[:2])
    with pytest.raises(ValueError, match="do not fit"):
        as_pictures(L, images.astype(np.float32))


def test_save_png_is_atomic(tmp_path: Path) -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[1, 2] = (255, 0, 0)
    out = save_png(image, tmp_path / "samples" / "step_1.png")
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), image)
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
