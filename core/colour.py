"""Colour science: sRGB <-> CIELAB (D65), the model's Lab scaling and per-image colour statistics.

Conversions follow ``skimage.color.rgb2lab`` / ``lab2rgb`` (sRGB companding, D65 2-degree white) but run
on whole batches at once, in float32, with torch. Torch tensors are channel-first (N, 3, H, W);
numpy arrays are channel-last (N, H, W, 3) like skimage's.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import torch

# --- The model space: one place defines how Lab is scaled for the networks. -------------------------
L_SCALE = 50.0  # L in [0, 100] -> L / 50 - 1 in [-1, 1]
AB_SCALE = 110.0  # a, b -> a / 110, b / 110 (pix2pix and Nazeri et al.)

# sRGB primaries with a D65 white, as in skimage.
_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPS = 0.008856  # (6/29)^3, rounded as skimage rounds it
_KAPPA = 7.787


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix along the channel dimension (dim 1) of an (N, 3, H, W) tensor."""
    return torch.einsum("ij,njhw->nihw", matrix.to(x), x)


def _srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Undo sRGB companding; uint8 input goes through a 256-entry table, which is much faster than pow."""
    if rgb.dtype == torch.uint8:
        if rgb.device.type == "cpu":  # numpy's table lookup on uint8 indices is several times faster than torch's
            return torch.from_numpy(_LINEAR_FROM_UINT8_NP[rgb.numpy()])
        return _LINEAR_FROM_UINT8.to(rgb.device)[rgb.long()]
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


_levels = torch.arange(256, dtype=torch.float64) / 255.0
_LINEAR_FROM_UINT8 = torch.where(_levels > 0.04045, ((_levels + 0.055) / 1.055) ** 2.4, _levels / 12.92).float()
_LINEAR_FROM_UINT8_NP = _LINEAR_FROM_UINT8.numpy()


def rgb_to_lab_torch(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3, H, W), float in [0, 1] or uint8 -> CIELAB (L in [0, 100]) as float."""
    linear = _srgb_to_linear(rgb)
    xyz = _mix(linear, _XYZ_FROM_RGB) / _WHITE_D65.to(linear).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPS, xyz.clamp_min(_EPS) ** (1.0 / 3.0), _KAPPA * xyz + 16.0 / 116.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def lab_to_rgb_torch(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB (N, 3, H, W) -> sRGB clipped to [0, 1], as skimage's ``lab2rgb`` does."""
    fy = (lab[:, 0] + 16.0) / 116.0
    fx = lab[:, 1] / 500.0 + fy
    fz = (fy - lab[:, 2] / 200.0).clamp_min(0.0)
    f = torch.stack((fx, fy, fz), dim=1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / _KAPPA)
    xyz = xyz * _WHITE_D65.to(lab).view(1, 3, 1, 1)
    linear = _mix(xyz, _RGB_FROM_XYZ)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def _as_nchw(images: np.ndarray, keep_uint8: bool = False) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) numpy -> float32 (N, 3, H, W) tensor; uint8 is scaled to [0, 1] unless kept."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3) or (H, W, 3), got {arr.shape}")
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # torch warns on read-only memory (e.g. memory-mapped caches)
        arr = arr.copy()
    t = torch.from_numpy(arr).permute(0, 3, 1, 2)
    if arr.dtype == np.uint8:
        return t if keep_uint8 else t.float() / 255.0
    return t.float()


def _as_nhwc(t: torch.Tensor, single: bool) -> np.ndarray:
    out = t.permute(0, 2, 3, 1).contiguous().numpy()
    return out[0] if single else out


@overload
def rgb_to_lab(images: torch.Tensor) -> torch.Tensor: ...
@overload
def rgb_to_lab(images: np.ndarray) -> np.ndarray: ...
def rgb_to_lab(images):
    """sRGB -> CIELAB for a batch: torch (N, 3, H, W) in [0, 1], or numpy (N, H, W, 3) uint8 or float in [0, 1]."""
    if isinstance(images, torch.Tensor):
        return rgb_to_lab_torch(images)
    return _as_nhwc(rgb_to_lab_torch(_as_nchw(images)), np.asarray(images).ndim == 3)


@overload
def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor: ...
@overload
def lab_to_rgb(lab: np.ndarray) -> np.ndarray: ...
def lab_to_rgb(lab):
    """CIELAB -> sRGB in [0, 1] for a batch: torch (N, 3, H, W) or numpy (N, H, W, 3)."""
    if isinstance(lab, torch.Tensor):
        return lab_to_rgb_torch(lab)
    arr = np.asarray(lab, dtype=np.float32)
    return _as_nhwc(lab_to_rgb_torch(_as_nchw(arr)), arr.ndim == 3)


# --- Model space --------------------------------------------------------------------------------------
def lab_to_model(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab (N, 3, H, W) -> (L in [-1, 1] as (N, 1, H, W), ab / 110 as (N, 2, H, W))."""
    return lab[:, :1] / L_SCALE - 1.0, lab[:, 1:] / AB_SCALE


def model_to_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`lab_to_model`: scaled L and ab back to one Lab tensor (N, 3, H, W)."""
    return torch.cat(((L + 1.0) * L_SCALE, ab * AB_SCALE), dim=1)


def model_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Scaled L and ab -> sRGB (N, 3, H, W) in [0, 1]: how every prediction is turned into a picture."""
    return lab_to_rgb_torch(model_to_lab(L.float(), ab.float()))


def uint8_to_model(images: np.ndarray, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, H, W, 3) images -> model-space (L, ab) float32 tensors, converted in chunks to bound memory."""
    Ls, abs_ = [], []
    for start in range(0, len(images), chunk):
        L, ab = lab_to_model(rgb_to_lab_torch(_as_nchw(images[start : start + chunk], keep_uint8=True)))
        Ls.append(L)
        abs_.append(ab)
    if not Ls:
        h, w = images.shape[1:3]
        return torch.zeros(0, 1, h, w), torch.zeros(0, 2, h, w)
    return torch.cat(Ls), torch.cat(abs_)


def rgb_to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """sRGB (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3) for display and saving."""
    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def gray_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) images reduced to their L channel, shown as gray RGB (what a colorizer sees)."""
    L, ab = uint8_to_model(np.asarray(images))
    return rgb_to_uint8(model_to_rgb(L, torch.zeros_like(ab)))


# --- Per-image statistics --------------------------------------------------------------------------------
def hsv_hue_saturation(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HSV hue in [0, 1) and saturation in [0, 1] of (N, 3, H, W) sRGB, as ``skimage.color.rgb2hsv`` defines them."""
    maxc, argmax = rgb.max(dim=1)
    minc = rgb.min(dim=1).values
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    safe = delta.clamp_min(1e-12)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    hue = torch.where(argmax == 0, (g - b) / safe, torch.where(argmax == 1, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.remainder(hue / 6.0, 1.0)
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    return hue, sat


@torch.no_grad()
def image_stats(images: np.ndarray, gray_threshold: float = 5.0, chunk: int = 1024) -> dict[str, np.ndarray]:
    """Per-image colour statistics of uint8 (N, H, W, 3) images, computed in batches.

    Returns float32/bool arrays of length N: ``hue_circular`` (saturation-weighted circular mean of HSV hue,
    in [0, 1); reds near 0 and 1 average to red), ``hue_arithmetic`` (plain mean of HSV hue, as the original
    study used), ``saturation``, ``chroma_mean``, ``chroma_std``, ``chroma_max`` (Lab chroma) and
    ``is_grayscale`` (no pixel with |a| or |b| above ``gray_threshold``; Zhang et al.'s rule).
    """
    keys = ("hue_circular", "hue_arithmetic", "saturation", "chroma_mean", "chroma_std", "chroma_max", "max_abs_ab")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for start in range(0, len(images), chunk):
        raw = _as_nchw(images[start : start + chunk], keep_uint8=True)
        rgb = raw.float() / 255.0
        hue, sat = hsv_hue_saturation(rgb)
        angle = hue * (2 * torch.pi)
        s_sum = sat.sum(dim=(1, 2))
        mean_angle = torch.atan2((sat * torch.sin(angle)).sum(dim=(1, 2)), (sat * torch.cos(angle)).sum(dim=(1, 2)))
        circ = torch.remainder(mean_angle / (2 * torch.pi), 1.0)
        out["hue_circular"].append(torch.where(s_sum > 0, circ, torch.zeros_like(circ)))
        out["hue_arithmetic"].append(hue.mean(dim=(1, 2)))
        out["saturation"].append(sat.mean(dim=(1, 2)))
        ab = rgb_to_lab_torch(raw)[:, 1:]
        chroma = ab.square().sum(dim=1).sqrt()
        out["chroma_mean"].append(chroma.mean(dim=(1, 2)))
        out["chroma_std"].append(chroma.std(dim=(1, 2), correction=0))
        out["chroma_max"].append(chroma.amax(dim=(1, 2)))
        out["max_abs_ab"].append(ab.abs().amax(dim=(1, 2, 3)))
    if not out["hue_circular"]:
        stats = {k: np.zeros(0, np.float32) for k in keys}
    else:
        stats = {k: torch.cat(v).numpy().astype(np.float32) for k, v in out.items()}
    stats["is_grayscale"] = stats["max_abs_ab"] <= gray_threshold
    return stats


def is_grayscale(images: np.ndarray, threshold: float = 5.0) -> np.ndarray:
    """Boolean per image: True when no pixel has |a| > threshold or |b| > threshold."""
    return image_stats(images, gray_threshold=threshold)["is_grayscale"]


HUE_METHODS = ("circular", "arithmetic")


def mean_hue(images: np.ndarray, method: str = "circular") -> np.ndarray:
    """Mean hue per image in [0, 1): ``circular`` (saturation-weighted, the default) or ``arithmetic`` (the study's)."""
    if method not in HUE_METHODS:
        raise ValueError(f"unknown hue method {method!r}; use one of {HUE_METHODS}")
    return image_stats(images)[f"hue_{method}"]
