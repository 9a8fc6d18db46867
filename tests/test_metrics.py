"""Colorization metrics against direct computations (numpy, skimage) on made and real images."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from skimage import color
from skimage.metrics import structural_similarity

from core import metrics as M
from core.colour import AB_SCALE, model_to_rgb, uint8_to_model


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).double().numpy()


@pytest.fixture(scope="module")
def smooth_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smooth random L and ab fields (model space) and a noisy prediction of ab."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(24, 3, 6, 6, generator=g)
    fields = torch.nn.functional.interpolate(coarse, size=(20, 24), mode="bilinear", align_corners=False)
    L = fields[:, :1] * 1.6 - 0.8
    ab = (fields[:, 1:] - 0.5) * 0.6
    pred = ab + 0.05 * torch.randn(ab.shape, generator=g)
    return L, pred, ab


@pytest.fixture(scope="module")
def real_case(sample_images) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real CIFAR images with a desaturated, noisy prediction of their ab."""
    L, ab = uint8_to_model(sample_images[:64])
    g = torch.Generator().manual_seed(1)
    pred = 0.5 * ab + 0.03 * torch.randn(ab.shape, generator=g)
    return L, pred, ab


def test_api_names():
    assert M.METRICS == ("psnr", "ssim", "mae_rgb", "auc_ab", "acc_ab_2", "acc_ab_5", "acc_ab_10",
                         "colorfulness", "colorfulness_gt", "colorfulness_ratio")
    assert set(M.HIGHER_IS_BETTER) == set(M.METRICS) and M.HIGHER_IS_BETTER["mae_rgb"] is False


def test_perfect_prediction(real_case):
    L, _, ab = real_case
    per = M.per_image_metrics(L, ab.clone(), ab)
    assert all(len(per[k]) == len(L) for k in M.METRICS)
    assert np.all(per["psnr"] == M.PSNR_CAP)
    assert np.allclose(per["ssim"], 1.0) and np.all(per["mae_rgb"] == 0)
    m = M.aggregate(per)
    assert m["psnr"] == M.PSNR_CAP and m["auc_ab"] == 100.0
    assert m["acc_ab_2"] == m["acc_ab_5"] == m["acc_ab_10"] == 100.0
    assert m["colorfulness_ratio"] == pytest.approx(1.0) and m["colorfulness"] == pytest.approx(m["colorfulness_gt"])
    assert M.validation_score(m) == pytest.approx(100.0)


@pytest.mark.parametrize(("shift", "error"), [((3.0, 0.0), 3.0), ((3.0, 4.0), 5.0), ((-6.0, 8.0), 10.0)])
def test_constant_ab_shift_gives_hand_computed_auc_and_accuracies(smooth_case, shift, error):
    L, _, ab = smooth_case
    pred = ab + torch.tensor(shift).view(1, 2, 1, 1) / AB_SCALE
    m = M.compute_metrics(L, pred, ab, ssim=False)
    auc = 100.0 * np.mean([float(t >= error) for t in range(151)])  # error <= t for t = 0..150
    assert m["auc_ab"] == pytest.approx(auc, abs=1e-9)
    for t in (2, 5, 10):
        assert m[f"acc_ab_{t}"] == (100.0 if error <= t else 0.0)


def test_auc_and_accuracy_match_brute_force(smooth_case):
    L, pred, ab = smooth_case
    pred = ab + torch.randn(ab.shape, generator=torch.Generator().manual_seed(2)) * 0.2  # errors up to ~100 Lab
    per = M.per_image_metrics(L, pred, ab, ssim=False)
    err = np.sqrt((((pred - ab).double().numpy() * AB_SCALE) ** 2).sum(axis=1))  # (N, H, W)
    thresholds = np.arange(151)
    frac = (err[..., None] <= thresholds + M.AB_TOLERANCE).mean(axis=(1, 2))  # (N, 151)
    # float32 against float64 errors may put a pixel on the other side of a step: allow a few of them
    assert np.allclose(per["auc_ab"], frac.mean(axis=1) * 100, atol=0.01)
    for t in (2, 5, 10):
        assert np.allclose(per[f"acc_ab_{t}"], (err <= t + M.AB_TOLERANCE).mean(axis=(1, 2)) * 100, atol=0.5)


def test_psnr_mae_and_colorfulness_match_numpy(real_case):
    L, pred, ab = real_case
    per = M.per_image_metrics(L, pred, ab, ssim=False)
    p, t = _nhwc(model_to_rgb(L, pred)), _nhwc(model_to_rgb(L, ab))
    mse = ((p - t) ** 2).mean(axis=(1, 2, 3))
    assert np.allclose(per["psnr"], 10 * np.log10(1.0 / mse), atol=1e-4)
    assert np.allclose(per["mae_rgb"], np.abs(p * 255 - t * 255).mean(axis=(1, 2, 3)), atol=1e-4)

    def colorfulness(img: np.ndarray) -> float:
        r, g, b = (img[..., i] * 255.0 for i in range(3))
        rg, yb = r - g, 0.5 * (r + g) - b
        return math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)

    assert np.allclose(per["colorfulness"], [colorfulness(x) for x in p], rtol=1e-5, atol=1e-4)
    assert np.allclose(per["colorfulness_gt"], [colorfulness(x) for x in t], rtol=1e-5, atol=1e-4)
    colour = per["colorfulness_gt"] > M.GRAY_COLORFULNESS  # the sample has a few grayscale images
    assert np.allclose(per["colorfulness_ratio"][colour], (per["colorfulness"] / per["colorfulness_gt"])[colour])
    assert np.isnan(per["colorfulness_ratio"][~colour]).all()
    m = M.aggregate(per)
    assert m["colorfulness_ratio"] == pytest.approx(per["colorfulness"].mean() / per["colorfulness_gt"].mean())
    assert m["colorfulness_ratio"] < 1  # a desaturated prediction is washed out


def test_ssim_matches_skimage_on_real_and_smooth_images(real_case, smooth_case):
    for L, pred, ab in (real_case, smooth_case):
        per = M.per_image_metrics(L, pred, ab)
        p, t = _nhwc(model_to_rgb(L, pred)), _nhwc(model_to_rgb(L, ab))
        ref = [structural_similarity(a, b, channel_axis=-1, data_range=1) for a, b in zip(p, t)]
        assert np.abs(per["ssim"] - ref).max() < 1e-4
        assert per["ssim"].min() < 0.999  # the case is not trivial


def test_pipeline_matches_plain_skimage(real_case):
    """The whole per-image route of skimage: lab2rgb of (true L, predicted ab), then SSIM and PSNR."""
    L, pred, ab = real_case
    per = M.per_image_metrics(L[:16], pred[:16], ab[:16])
    for i in range(16):
        lab_p = np.concatenate([(L[i].numpy() + 1) * 50, pred[i].numpy() * AB_SCALE]).transpose(1, 2, 0)
        lab_t = np.concatenate([(L[i].numpy() + 1) * 50, ab[i].numpy() * AB_SCALE]).transpose(1, 2, 0)
        p, t = color.lab2rgb(lab_p.astype(np.float64)), color.lab2rgb(lab_t.astype(np.float64))
        assert per["ssim"][i] == pytest.approx(structural_similarity(p, t, channel_axis=-1, data_range=1), abs=1e-4)
        assert per["psnr"][i] == pytest.approx(10 * np.log10(1 / ((p - t) ** 2).mean()), abs=1e-2)


def test_gray_prediction_has_zero_colorfulness(real_case):
    L, _, ab = real_case
    gray = torch.zeros_like(ab)
    per = M.per_image_metrics(L, gray, ab, ssim=False)
    # Lab (L, 0, 0) comes back as R = G = B up to float32 rounding of the D65 matrices (< 0.01 of 255)
    assert np.allclose(per["colorfulness"], 0.0, atol=0.02)
    m = M.aggregate(per)
    assert m["colorfulness_ratio"] == pytest.approx(0.0, abs=1e-3)
    assert M.validation_score(m) == pytest.approx(0.0, abs=0.1)
    both_gray = M.compute_metrics(L, gray, gray.clone(), ssim=False)
    assert both_gray["colorfulness"] == pytest.approx(0.0, abs=0.02)
    assert both_gray["colorfulness_ratio"] == 1.0
    assert np.all(M.per_image_metrics(L, gray + 0.1, gray, ssim=False)["colorfulness_ratio"] != 1.0)


def test_validation_score_penalises_washed_out_colour_only():
    base = {"auc_ab": 90.0, "colorfulness_ratio": 1.0}
    assert M.validation_score(base) == 90.0
    assert M.validation_score(base | {"colorfulness_ratio": 0.5}) == 45.0
    assert M.validation_score(base | {"colorfulness_ratio": 1.7}) == 90.0
    assert M.validation_score(base | {"colorfulness_ratio": float("nan")}) == 90.0


def test_aggregate_mask_nan_and_empty(smooth_case):
    L, pred, ab = smooth_case
    per = M.per_image_metrics(L, pred, ab, ssim=False)
    assert np.isnan(per["ssim"]).all() and math.isnan(M.aggregate(per)["ssim"])
    mask = np.arange(len(L)) % 3 == 0
    sub = M.aggregate(per, mask)
    direct = M.compute_metrics(L[mask], pred[mask], ab[mask], ssim=False)
    for k in M.METRICS:
        if k != "ssim":
            assert sub[k] == pytest.approx(direct[k], rel=1e-9)
    empty = M.aggregate(per, np.zeros(len(L), bool))
    assert all(math.isnan(v) for v in empty.values())


def test_chunking_and_worker_threads_do_not_change_results(real_case, monkeypatch):
    L, pred, ab = real_case
    whole = M.per_image_metrics(L, pred, ab)  # one chunk, computed in the caller's thread
    threads = torch.get_num_threads()
    monkeypatch.setattr(M, "CHUNK_PIXELS", 7 * 32 * 32)
    chunked = M.per_image_metrics(L, pred, ab)  # 10 chunks, spread over the worker threads
    for k in M.METRICS:
        assert np.allclose(whole[k], chunked[k], rtol=1e-6, atol=1e-9, equal_nan=True)
    assert torch.get_num_threads() == threads  # the caller's torch setting is left as it was
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [threads]  # and so is the default of new threads


def test_small_images_and_bad_shapes():
    L = torch.zeros(2, 1, 5, 5)
    ab = torch.zeros(2, 2, 5, 5)
    per = M.per_image_metrics(L, ab, ab)  # smaller than SSIM's 7x7 window
    assert np.isnan(per["ssim"]).all() and np.all(per["psnr"] == M.PSNR_CAP)
    with pytest.raises(ValueError):
        M.per_image_metrics(L, ab[:1], ab)
    with pytest.raises(ValueError):
        M.per_image_metrics(torch.zeros(2, 3, 5, 5), ab, ab)


def test_high_frequency_energy_sees_a_checkerboard_and_not_a_smooth_field():
    from core.metrics import artefact_ratio, high_frequency_energy

    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = torch.stack([torch.sin(x / 10), torch.cos(y / 12)])[None]  # low frequencies only
    checker = smooth + 0.2 * ((x + y) % 2 * 2 - 1)[None, None]  # a one-pixel grid on top
    hf_smooth, hf_checker = high_frequency_energy(smooth).item(), high_frequency_energy(checker).item()
    assert hf_smooth < 0.01 < 0.05 < hf_checker
    assert artefact_ratio(checker, smooth) > 10 and artefact_ratio(smooth, smooth) == pytest.approx(1.0)
    # against numpy's FFT: the same share computed by hand for one image
    a = checker[0].numpy() - checker[0].numpy().mean(axis=(-2, -1), keepdims=True)
    p = (np.abs(np.fft.fft2(a, norm="ortho")) ** 2).sum(0)
    f = np.abs(np.fft.fftfreq(64)) * 2
    mask = np.maximum(f[:, None], f[None, :]) > 0.5
    assert high_frequency_energy(checker).item() == pytest.approx(p[mask].sum() / p.sum(), rel=1e-4)
