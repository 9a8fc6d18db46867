"""Colorization quality metrics, computed in batches with torch.

Every prediction is judged as a picture: the image is rebuilt from the true L and the predicted a,b, turned
into sRGB and clipped to [0, 1] (:func:`core.colour.model_to_rgb`), exactly as the truth is. Metrics:

``psnr``               mean per-image PSNR of RGB in [0, 1], each capped at ``PSNR_CAP`` dB (a perfect image
                       would otherwise give infinity and make the mean meaningless)
``ssim``               mean per-image SSIM of RGB, as ``skimage.metrics.structural_similarity(channel_axis=-1,
                       data_range=1)`` computes it (7x7 uniform window, K1 0.01, K2 0.03, sample covariance,
                       mean over the window-valid area, then over the channels)
``mae_rgb``            mean absolute error of RGB on the 0..255 scale
``auc_ab``             area under the cumulative curve of the per-pixel a,b error (Euclidean, Lab units):
                       mean over thresholds t = 0, 1, ..., 150 of the share of pixels with error <= t, x 100
``acc_ab_2/5/10``      percentage of pixels with a,b error <= 2, 5, 10
``colorfulness``       Hasler & Suesstrunk (2003) colourfulness of the predictions (0..255 RGB),
``colorfulness_gt``    the same of the ground truth,
``colorfulness_ratio`` colorfulness / colorfulness_gt over the set (below 1: washed-out colour)

Set-level figures are image-weighted means of per-image figures (:func:`aggregate`). For a set of equally
sized images (CIFAR) the pixel-based ones (``auc_ab``, ``acc_ab_*``, ``mae_rgb``) equal their pixel-level
values; for uploaded pictures of different sizes every picture counts once, whatever its size.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

from core.colour import AB_SCALE, model_to_rgb

METRICS = (
    "psnr", "ssim", "mae_rgb", "auc_ab", "acc_ab_2", "acc_ab_5", "acc_ab_10",
    "colorfulness", "colorfulness_gt", "colorfulness_ratio",
)
HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True, "ssim": True, "mae_rgb": False, "auc_ab": True, "acc_ab_2": True, "acc_ab_5": True,
    "acc_ab_10": True, "colorfulness": True, "colorfulness_gt": True, "colorfulness_ratio": True,
}
# Metrics ranked by closeness to a target rather than by direction (over-saturation is no better than
# washed-out colour when tables mark the best model). ``colorfulness_gt`` describes the images, not a model.
RANK_TARGET: dict[str, float] = {"colorfulness_ratio": 1.0}
NOT_RANKED = ("colorfulness_gt",)

PSNR_CAP = 100.0  # dB; the PSNR of a perfect (or near-perfect, MSE <= 1e-10) image
AUC_MAX_THRESHOLD = 150  # thresholds 0..150 in Lab units
ACC_THRESHOLDS = (2, 5, 10)
# a,b errors are compared with thresholds up to this many Lab units over, so that float32 rounding of
# model-scale values (ab / 110) never moves an error of exactly t above t.
AB_TOLERANCE = 1e-4
# Colourfulness at or below this counts as gray in colorfulness_ratio: Lab (L, 0, 0) comes back from the
# float32 colour conversion as R = G = B only to within about 0.005 of 255.
GRAY_COLORFULNESS = 0.1
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
CHUNK_PIXELS = 1 << 16  # images x H x W per chunk (64 CIFAR images): bounded memory, stays in the CPU cache


def _box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sum over every k x k window fully inside the image (valid part only): (..., H, W) -> (..., H-k+1, W-k+1).

    Shifted-slice sums are separable and, for small windows on small images, much faster on a CPU than
    ``avg_pool2d`` or cumulative sums.
    """
    h, w = x.shape[-2:]
    rows = x[..., 0 : h - k + 1, :].clone()
    for i in range(1, k):
        rows += x[..., i : h - k + 1 + i, :]
    out = rows[..., 0 : w - k + 1].clone()
    for j in range(1, k):
        out += rows[..., j : w - k + 1 + j]
    return out


def ssim_batch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM of (N, C, H, W) images, as skimage's ``structural_similarity(channel_axis=...)``.

    skimage filters with a 7x7 uniform filter, then ignores a 3-pixel border: what remains is exactly the
    set of windows fully inside the image, so a valid-only box sum reproduces it. Each image and channel is
    centred on its mean first (SSIM's variances do not change, the means are added back), so the float32
    moment sums suffer no cancellation of large means and agree with skimage's float64 ones to about 1e-7.
    Images smaller than 7x7 give NaN (skimage refuses them).
    """
    n, c, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        return torch.full((n,), float("nan"), dtype=torch.float64)
    x, y = x.float(), y.float()
    mx = x.mean(dim=(2, 3), keepdim=True)
    my = y.mean(dim=(2, 3), keepdim=True)
    xc, yc = x - mx, y - my
    np_ = SSIM_WINDOW * SSIM_WINDOW
    sums = _box_sum(torch.cat((xc, yc, xc * xc, yc * yc, xc * yc), dim=1), SSIM_WINDOW).mul_(1.0 / np_)
    ux_c, uy_c, uxx, uyy, uxy = sums.split(c, dim=1)
    cov_norm = np_ / (np_ - 1)
    vx = cov_norm * (uxx - ux_c * ux_c)
    vy = cov_norm * (uyy - uy_c * uy_c)
    vxy = cov_norm * (uxy - ux_c * uy_c)
    ux, uy = ux_c + mx, uy_c + my
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.double().mean(dim=(2, 3)).mean(dim=1)


def colorfulness_batch(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness of (N, 3, H, W) sRGB in [0, 1], on the 0..255 scale."""
    r, g, b = rgb.float().unbind(dim=1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    var_rg, mean_rg = torch.var_mean(rg, dim=1, correction=0)
    var_yb, mean_yb = torch.var_mean(yb, dim=1, correction=0)
    value = (var_rg + var_yb).sqrt() + 0.3 * (mean_rg.square() + mean_yb.square()).sqrt()
    return value.double() * 255.0  # std and mean scale linearly, so scale once at the end


def _ratio(num: np.ndarray, den: np.ndarray, eps: float = GRAY_COLORFULNESS) -> np.ndarray:
    """num / den, with 1 where both are gray (at most ``eps``) and NaN where only den is."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    safe = np.where(den > eps, den, 1.0)
    return np.where(den > eps, num / safe, np.where(num <= eps, 1.0, np.nan))


@torch.no_grad()
def _chunk_metrics(L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor,
                   ssim: bool) -> dict[str, torch.Tensor]:
    """Per-image metrics of one chunk, as float64 tensors of length N.

    Prediction and truth go through the colour conversion together (one batch of 2N) to halve the number of
    tensor operations; per-image means are taken in float32 (1e-7 relative, far below any reported digit).
    """
    n = len(L)
    rgb = model_to_rgb(torch.cat((L, L)), torch.cat((ab_pred, ab_true)))
    pred, true = rgb[:n], rgb[n:]
    diff = pred - true
    mse = diff.square().mean(dim=(1, 2, 3)).double()
    out = {
        "psnr": (-10.0 * torch.log10(mse.clamp_min(10.0 ** (-PSNR_CAP / 10.0)))).clamp_max(PSNR_CAP),
        "ssim": ssim_batch(pred, true) if ssim else torch.full((n,), float("nan"), dtype=torch.float64),
        "mae_rgb": diff.abs_().mean(dim=(1, 2, 3)).double() * 255.0,
    }
    err = (ab_pred.float() - ab_true.float()).square_().sum(dim=1).sqrt_().mul_(AB_SCALE)  # (N, H, W), Lab units
    # share of thresholds t = 0..150 that a pixel meets = (151 - ceil(err)) / 151 for err <= 150, else 0
    n_t = AUC_MAX_THRESHOLD + 1
    steps = torch.ceil(err - AB_TOLERANCE).clamp_(0.0, float(n_t)).mean(dim=(1, 2)).double()
    out["auc_ab"] = (n_t - steps) / n_t * 100.0
    thresholds = torch.tensor(ACC_THRESHOLDS, dtype=err.dtype).view(1, -1, 1, 1) + AB_TOLERANCE
    acc = (err.unsqueeze(1) <= thresholds).float().mean(dim=(2, 3)).double() * 100.0
    for i, t in enumerate(ACC_THRESHOLDS):
        out[f"acc_ab_{t}"] = acc[:, i]
    cf = colorfulness_batch(rgb)
    out["colorfulness"], out["colorfulness_gt"] = cf[:n], cf[n:]
    return out


T = TypeVar("T")
R = TypeVar("R")

# --- Parallelism -----------------------------------------------------------------------------------
# Metrics are many small element-wise operations. With torch's OpenMP intra-op threads every operation ends
# in a barrier, and on a busy machine (a training job beside the dashboard) a descheduled thread stalls them
# all: measured 10x slower than one thread. Chunks therefore go to a small pool of worker threads that each
# run torch single-threaded (the OpenMP thread count is a per-thread setting; the caller's is left as it was).
# torch.set_num_threads also sets the default for threads that have not used torch yet; the pool restores it
# as soon as its workers have started, once per process.
_POOL: ThreadPoolExecutor | None = None
_POOL_KEY: tuple[int, int] | None = None  # (process id, workers) the pool was made for
_POOL_LOCK = threading.Lock()


@functools.cache
def _openmp_backend() -> bool:
    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


def _init_worker(barrier: threading.Barrier) -> None:
    torch.get_num_threads()  # the thread's lazy thread-count initialisation happens now, not after the next line
    torch.set_num_threads(1)
    barrier.wait()  # every worker is started (and single-threaded) before the caller's setting is restored


def _worker_pool(workers: int) -> ThreadPoolExecutor | None:
    """A pool of ``workers`` single-threaded torch workers, made once per process; None when not usable."""
    global _POOL, _POOL_KEY
    if workers < 2 or not _openmp_backend():
        return None
    key = (os.getpid(), workers)
    with _POOL_LOCK:
        if _POOL_KEY == key:
            return _POOL  # None after a failed start: do not try again
        if _POOL is not None and _POOL_KEY is not None and _POOL_KEY[0] == key[0]:
            _POOL.shutdown(wait=False)
        caller_threads = torch.get_num_threads()
        pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            workers, thread_name_prefix="metrics", initializer=_init_worker,
            initargs=(threading.Barrier(workers, timeout=60),))
        try:
            list(pool.map(lambda _: None, range(workers)))
        except Exception:  # noqa: BLE001 - a pool that failed to start means: compute in the caller's thread
            pool.shutdown(wait=False)
            pool = None
        finally:
            torch.set_num_threads(caller_threads)  # set_num_threads also sets the default for new threads
        _POOL, _POOL_KEY = pool, key
        return pool


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, spread over ``torch.get_num_threads()`` single-threaded worker threads.

    For independent CPU tensor work in pieces (metrics, colour conversion, a network's forward pass on
    sub-batches); runs in the caller's thread when there is one item or torch uses one thread.
    """
    pool = _worker_pool(torch.get_num_threads()) if len(items) > 1 else None
    return list(pool.map(fn, items)) if pool is not None else [fn(x) for x in items]


def per_image_metrics(L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor,
                      ssim: bool = True) -> dict[str, np.ndarray]:
    """Per-image metrics of model-space tensors L (N, 1, H, W), predicted and true ab (N, 2, H, W).

    Returns float64 arrays of length N for every name in ``METRICS``; ``colorfulness_ratio`` is the
    per-image ratio, while :func:`aggregate` uses the ratio of the means; a gray truth (colourfulness
    <= ``GRAY_COLORFULNESS``) gives 1 for a gray prediction and NaN otherwise. ``ssim=False`` skips SSIM
    (the slowest metric) and fills it with NaN. Works in chunks of about ``CHUNK_PIXELS`` pixels, which
    bounds memory and keeps the working set in the CPU cache, spread over ``torch.get_num_threads()``
    single-threaded workers.
    """
    if L.ndim != 4 or L.shape[1] != 1 or ab_pred.shape != ab_true.shape or ab_pred.shape[1] != 2 \
            or ab_pred.shape[0] != L.shape[0] or ab_pred.shape[2:] != L.shape[2:]:
        raise ValueError(f"expected L (N,1,H,W) and ab (N,2,H,W) of one size, got {tuple(L.shape)}, "
                         f"{tuple(ab_pred.shape)}, {tuple(ab_true.shape)}")
    n, _, h, w = L.shape
    step = max(1, CHUNK_PIXELS // max(1, h * w))
    L, ab_pred, ab_true = L.detach().cpu(), ab_pred.detach().cpu(), ab_true.detach().cpu()

    def run(start: int) -> dict[str, torch.Tensor]:
        sl = slice(start, start + step)
        return _chunk_metrics(L[sl], ab_pred[sl], ab_true[sl], ssim)

    chunks = parallel_map(run, range(0, n, step))
    parts: dict[str, list[torch.Tensor]] = {}
    for chunk in chunks:
        for k, v in chunk.items():
            parts.setdefault(k, []).append(v)
    names = [m for m in METRICS if m != "colorfulness_ratio"]
    out = {k: (torch.cat(parts[k]).numpy().astype(np.float64) if parts else np.zeros(0)) for k in names}
    out["colorfulness_ratio"] = _ratio(out["colorfulness"], out["colorfulness_gt"])
    return {k: out[k] for k in METRICS}


def aggregate(per_image: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """Set-level metrics from per-image ones (a dict of arrays or a DataFrame), over ``mask`` if given.

    Every metric is the image-weighted mean of its per-image values (NaNs, e.g. skipped SSIM, ignored),
    except ``colorfulness_ratio`` = mean colorfulness / mean colorfulness_gt. An empty set gives NaN.
    """
    out: dict[str, float] = {}
    for k in METRICS:
        if k == "colorfulness_ratio":
            continue
        v = np.asarray(per_image[k], dtype=np.float64)
        if mask is not None:
            v = v[np.asarray(mask)]
        v = v[~np.isnan(v)]
        out[k] = float(v.mean()) if len(v) else float("nan")
    cf, gt = out["colorfulness"], out["colorfulness_gt"]
    out["colorfulness_ratio"] = float("nan") if math.isnan(cf) or math.isnan(gt) else float(_ratio(cf, gt))
    return {k: out[k] for k in METRICS}


def compute_metrics(L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor,
                    ssim: bool = True) -> dict[str, float]:
    """Set-level metrics of model-space tensors: ``aggregate(per_image_metrics(...))``."""
    return aggregate(per_image_metrics(L, ab_pred, ab_true, ssim=ssim))


SELECTIONS = {  # how best.pt is chosen (``--select``): each a figure to maximise, and what it means
    "score": "the highest validation score auc_ab x min(1, colorfulness_ratio)",
    "mae": "the lowest validation mae_rgb",
    "auc": "the highest validation auc_ab",
}


def selection_score(metrics: Mapping[str, float], select: str = "score") -> float:
    """The figure best.pt is chosen by under ``select`` (higher is better): see :data:`SELECTIONS`."""
    if select == "mae":
        return -float(metrics["mae_rgb"])
    if select == "auc":
        return float(metrics["auc_ab"])
    if select == "score":
        return validation_score(metrics)
    raise ValueError(f"unknown selection {select!r}; choose one of {', '.join(SELECTIONS)}")


def validation_score(metrics: Mapping[str, float]) -> float:
    """``auc_ab * min(1, colorfulness_ratio)``: the figure training maximises to choose ``best.pt``.

    It rewards accurate colour and penalises washed-out colour (ratio below 1), never over-saturation: a
    ratio above 1 counts as 1. An undefined ratio (colourless ground truth) counts as 1.
    """
    ratio = float(metrics["colorfulness_ratio"])
    factor = 1.0 if math.isnan(ratio) else min(1.0, ratio)
    return float(metrics["auc_ab"]) * factor


def high_frequency_energy(ab: torch.Tensor, band: float = 0.5) -> torch.Tensor:
    """Share of each image's a,b energy (DC left out) at spatial frequencies above ``band`` x Nyquist, per image.

    Dot and grid artefacts of a generator put energy at the highest frequencies that real colour (smooth at
    the scale of the L channel's detail) does not have, so this share rises with them.
    """
    ab = ab.float()
    ab = ab - ab.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(ab, norm="ortho").abs().square().sum(dim=1)  # (N, H, W), both channels
    h, w = ab.shape[-2:]
    fy = torch.fft.fftfreq(h).abs().view(-1, 1) * 2  # 1.0 = Nyquist
    fx = torch.fft.fftfreq(w).abs().view(1, -1) * 2
    high = (torch.maximum(fy, fx) > band).to(power.dtype)
    total = power.sum(dim=(-2, -1))
    return (power * high).sum(dim=(-2, -1)) / total.clamp_min(1e-12)


def artefact_ratio(ab_pred: torch.Tensor, ab_true: torch.Tensor, band: float = 0.5) -> float:
    """Mean high-frequency share of the predicted a,b over the truth's (1: as smooth as the truth; well above 1:
    dot or grid artefacts), over a batch of pictures of one size."""
    pred = high_frequency_energy(ab_pred, band).mean()
    true = high_frequency_energy(ab_true, band).mean()
    return float(pred / true.clamp_min(1e-12))
