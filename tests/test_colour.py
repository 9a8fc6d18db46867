"""Colour conversion against skimage, the model-space scaling, and per-image statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import color

from core import colour


@pytest.fixture(scope="module")
def random_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)


def test_rgb_to_lab_matches_skimage_on_random_and_real_images(random_images, sample_images):
    for images in (random_images, sample_images):
        ref = color.rgb2lab(images)
        got = colour.rgb_to_lab(images)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max(axis=(0, 1, 2)).max() < 0.05


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, (8, 16, 16)), rng.uniform(-110, 110, (8, 16, 16)),
                    rng.uniform(-110, 110, (8, 16, 16))], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about negative Z values it clips
        ref = np.stack([color.lab2rgb(x) for x in lab])
    got = colour.lab_to_rgb(lab.astype(np.float32))
    assert np.abs(got - ref).max() < 1e-3  # RGB in [0, 1]: far inside the 0.05 Lab tolerance


def test_torch_and_numpy_paths_agree_and_round_trip(sample_images):
    t = torch.from_numpy(sample_images).permute(0, 3, 1, 2).float() / 255
    lab_t = colour.rgb_to_lab(t)
    lab_n = colour.rgb_to_lab(sample_images)
    assert torch.allclose(lab_t.permute(0, 2, 3, 1), torch.from_numpy(lab_n), atol=1e-3)
    back = colour.lab_to_rgb(lab_t)
    assert (back - t).abs().max() < 1e-4
    # uint8 tensors take the lookup-table path and give the same answer
    lab_u8 = colour.rgb_to_lab_torch(torch.from_numpy(sample_images).permute(0, 3, 1, 2))
    assert (lab_u8 - lab_t).abs().max() < 1e-3


def test_model_space_scaling_is_L_over_50_minus_1_and_ab_over_110():
    lab = torch.tensor([[[[0.0]], [[110.0]], [[-55.0]]], [[[100.0]], [[0.0]], [[22.0]]]])
    L, ab = colour.lab_to_model(lab)
    assert L.flatten().tolist() == [-1.0, 1.0]
    assert torch.allclose(ab.flatten(), torch.tensor([1.0, -0.5, 0.0, 0.2]))
    assert torch.allclose(colour.model_to_lab(L, ab), lab)
    L2, ab2 = colour.uint8_to_model(np.full((1, 16, 16, 3), 255, np.uint8))
    assert torch.allclose(L2, torch.ones_like(L2), atol=1e-4) and ab2.abs().max() < 1e-3


def test_grayscale_rule_and_threshold():
    gray = np.repeat(np.random.default_rng(2).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8), 3, axis=3)
    tinted = gray.copy()
    tinted[1, 0, 0] = [200, 100, 100]  # one strongly red pixel makes the image coloured
    near = gray.copy()
    near[2, ..., 0] = np.clip(near[2, ..., 0].astype(int) + 2, 0, 255)  # a faint cast: |a| of a few units
    flags = colour.is_grayscale(np.concatenate([gray[:1], tinted[1:2], near[2:3]]))
    assert flags.tolist()[:2] == [True, False]
    max_ab = np.abs(color.rgb2lab(near[2])[..., 1:]).max()
    assert colour.is_grayscale(near[2:3], threshold=max_ab + 0.01)[0]
    assert not colour.is_grayscale(near[2:3], threshold=max_ab - 0.01)[0]


def test_hue_statistics_match_skimage_hsv_and_circular_mean_handles_red(sample_images):
    stats = colour.image_stats(sample_images[:16])
    hsv = np.stack([color.rgb2hsv(x) for x in sample_images[:16]])
    assert np.allclose(stats["hue_arithmetic"], hsv[..., 0].mean(axis=(1, 2)), atol=1e-5)
    assert np.allclose(stats["saturation"], hsv[..., 1].mean(axis=(1, 2)), atol=1e-5)
    # half the pixels hue ~0.98, half ~0.02: arithmetic mean says cyan (0.5), the circular mean says red
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[0, :2] = [255, 0, 31]  # hue ~ 0.98
    img[0, 2:] = [255, 31, 0]  # hue ~ 0.02
    s = colour.image_stats(img)
    assert abs(s["hue_arithmetic"][0] - 0.5) < 0.01
    assert min(s["hue_circular"][0], 1 - s["hue_circular"][0]) < 0.01
    assert colour.mean_hue(img, "arithmetic")[0] == pytest.approx(s["hue_arithmetic"][0])
    with pytest.raises(ValueError, match="circular"):
        colour.mean_hue(img, "median")


def test_chroma_statistics_match_skimage(sample_images):
    stats = colour.image_stats(sample_images[:8])
    lab = color.rgb2lab(sample_images[:8])
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    assert np.allclose(stats["chroma_mean"], chroma.mean(axis=(1, 2)), atol=0.01)
    assert np.allclose(stats["chroma_max"], chroma.max(axis=(1, 2)), atol=0.05)
    assert np.allclose(stats["chroma_std"], chroma.std(axis=(1, 2)), atol=0.01)


def test_conversions_keep_their_constants_on_the_tensors_device():
    """The colour matrices follow the input to its device (a CUDA run converts on the GPU); the meta device
    stands in for CUDA on a machine without one: mixing it with a CPU constant raises."""
    L, ab = torch.empty(2, 1, 4, 4, device="meta"), torch.empty(2, 2, 4, 4, device="meta")
    assert colour.model_to_rgb(L, ab).device.type == "meta"
    assert colour.rgb_to_lab_torch(torch.empty(2, 3, 4, 4, device="meta")).device.type == "meta"
