"""Trained colorizers, loaded from run directories or checkpoint files, and colorization of pictures of any size."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.checkpoint import CheckpointError, generator_state, load_checkpoint
from core.colour import gray_images, lab_to_rgb, rgb_to_lab, rgb_to_uint8, uint8_to_model
from core.limits import MAX_PIXELS, max_pixels, too_many_pixels
from core.methods import build_generator, method_names
from core.precision import PRECISIONS, autocast_for, inference_precision
from core.runs import PROJECT_ROOT, RunDir, default_runs_dir, find_runs

SHIPPED_DIR = PROJECT_ROOT / "checkpoints"
CARD = "card"  # colorize at the network size the model card names (measured on photographs: core.photo_check)
FALLBACK_NET_SIZE = 64  # the network size when the card names none
TILE_PIXELS = 1 << 20  # output pixels joined at a time: bounds the memory of colorizing a large picture
NetSize = int | Literal["card"] | None


@dataclass
class Colorizer:
    """A generator that predicts model-space a,b from model-space L, with where it came from."""

    name: str
    method: str
    net: torch.nn.Module
    path: str
    info: dict = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    precision: str = "auto"  # auto, fp32 or bf16 (see core.precision.inference_precision)

    def chosen_precision(self, L: torch.Tensor) -> str:
        """fp32 or bf16 for inputs shaped like ``L``: the setting, or the per-process measurement for ``auto``."""
        return inference_precision(self.net, self._input(L), self.precision)

    def _input(self, L: torch.Tensor) -> torch.Tensor:
        return L.to(self.device).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def predict(self, L: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Model-space ab (N, 2, H, W, float32) for model-space L (N, 1, H, W); H and W multiples of 16.

        Runs channels-last, under ``torch.inference_mode``, in the chosen precision (:meth:`chosen_precision`)."""
        outs = []
        for i in range(0, len(L), batch_size):
            x = self._input(L[i : i + batch_size])
            with torch.inference_mode(), autocast_for(inference_precision(self.net, x, self.precision), self.device):
                y = self.net(x)
            outs.append(y.float().cpu())
        if not outs:
            return torch.zeros(0, 2, *L.shape[2:])
        return torch.cat(outs).contiguous()  # outside inference mode: an ordinary tensor for the caller

    def colorize(self, image: np.ndarray | Image.Image, net_size: NetSize = CARD) -> np.ndarray:
        """Colorize one picture (colour or gray, any size): see :func:`colorize_picture`."""
        return colorize_picture(self, image, net_size)


def _card(path: Path) -> dict:
    card = path.with_suffix(".json")
    if card.is_file():
        try:
            return json.loads(card.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def check_checkpoint_config(config: dict, method: str, path: str | Path) -> None:
    """Refuse a checkpoint whose configuration lies outside TrainConfig's and the method's option ranges (a width
    of 100000 would build a network too large for any memory) with a CheckpointError naming the setting."""
    from core.config import ConfigError, common_options
    from core.methods import get_method

    options = {o.name: o for o in common_options()} | {o.name: o for o in get_method(method).options}
    for key, value in config.items():
        if key in options and value is not None:
            try:
                options[key].check(value)
            except ConfigError as e:
                raise CheckpointError(f"{path}: its configuration is out of range ({e}); this is not a checkpoint "
                                      "this project trains, so it is not loaded") from None


def load_colorizer(spec: str | Path, device: str | torch.device = "cpu", name: str | None = None,
                   precision: str = "auto") -> Colorizer:
    """A colorizer from a run directory (its best.pt, else last.pt) or a checkpoint file of either format;
    ``precision`` (auto, fp32, bf16) is the numeric precision of its predictions."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    path = Path(spec)
    if path.is_dir():
        run = RunDir(path)
        path = run.best if run.best.is_file() else run.last
        if not path.is_file():
            raise CheckpointError(f"run {spec} has no checkpoint yet (no best.pt or last.pt)")
        default_name = run.id
    else:
        default_name = path.stem
    payload = load_checkpoint(path)
    method = payload.get("method")
    if method not in method_names(colorizers_only=True):
        raise CheckpointError(f"{path} holds a {method!r} model, not a colorizer "
                              f"({', '.join(method_names(colorizers_only=True))})")
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    check_checkpoint_config(config, method, path)
    try:
        state = generator_state(payload)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    net = build_generator(method, config)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:160]
        raise CheckpointError(f"{path}: weights do not fit a width-{config.get('width')} {method} generator "
                              f"({detail})") from e
    dev = torch.device(device)
    net = net.to(dev, memory_format=torch.channels_last).eval()
    info = {"config": config, "metrics": payload.get("metrics", {}), "step": payload.get("step"),
            "epoch": payload.get("epoch"), "phase": payload.get("phase"), "card": _card(path)}
    return Colorizer(name or default_name, method, net, str(path), info, dev, precision)


@dataclass
class ModelEntry:
    """A model the dashboard can offer: shipped file or completed run."""

    name: str
    method: str
    path: str
    kind: str  # shipped | run
    card: dict


def available_models(checkpoint_dir: str | Path | None = None, runs_dir: str | Path | None = None,
                     ) -> list[ModelEntry]:
    """Shipped colorizer checkpoints (``checkpoints/*.pt`` with a card) and completed colorizer runs."""
    out: list[ModelEntry] = []
    shipped = Path(checkpoint_dir) if checkpoint_dir else SHIPPED_DIR
    for path in sorted(shipped.glob("*.pt")) if shipped.is_dir() else []:
        card = _card(path)
        method = card.get("method") or next((m for m in method_names(True) if m in path.stem), None)
        if method in method_names(True):
            out.append(ModelEntry(path.stem, method, str(path), "shipped", card))
    for run in find_runs(runs_dir or default_runs_dir(), require_config=True):
        status = run.status()
        try:
            method = json.loads(run.config.read_text()).get("model")
        except (OSError, json.JSONDecodeError):
            continue
        if status.get("state") == "completed" and method in method_names(True) and run.best.is_file():
            out.append(ModelEntry(f"run:{run.id}", method, str(run.path), "run", {"status": status}))
    return out


class PictureError(ValueError):
    """A file that cannot be read as a picture; the message names the file and says why."""


_OBJECT_REPR = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>")


def _unreadable(error: Exception) -> str:
    """Why Pillow could not read a picture, in plain words (its messages name Python objects, not files)."""
    if isinstance(error, UnidentifiedImageError):
        return "not a picture format this reads"
    if isinstance(error, Image.DecompressionBombError):
        return f"its header asks for more than {max_pixels() / 1e6:g} megapixels ({MAX_PIXELS.env})"
    text = " ".join(_OBJECT_REPR.sub("the file", str(error)).split())
    if "truncated" in text.lower() or isinstance(error, EOFError):
        return "the file is truncated"
    return text[:120] or "the file is damaged"


def open_picture(data: bytes, name: str = "picture") -> Image.Image:
    """Uploaded bytes as a loaded Pillow picture with its EXIF orientation applied; PictureError naming ``name``
    for an empty or unreadable file, or one whose header asks for more pixels than ``COLORIZE_MAX_PIXELS`` (checked
    before any pixel is decoded)."""
    if not data:
        raise PictureError(f"{name}: the file is empty; upload a PNG, JPEG, WebP, BMP or TIFF file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if why := too_many_pixels(*im.size):
                raise PictureError(f"{name}: {why}; reduce the picture before uploading it")
            im.load()
            picture = ImageOps.exif_transpose(im)
            if picture is im:
                picture = im.copy()
    except PictureError:
        raise
    except Exception as e:  # Pillow raises many kinds of error for damaged or unusual files
        raise PictureError(f"{name}: not a readable picture ({_unreadable(e)}); upload a PNG, JPEG, WebP, BMP or "
                           "TIFF file") from None
    if picture.width < 1 or picture.height < 1:
        raise PictureError(f"{name}: the picture has no pixels; upload another file")
    return picture


def picture_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow picture (gray, palette, RGBA, CMYK, 16-bit, float) -> uint8 (H, W, 3); alpha over white.
    A picture larger than ``COLORIZE_MAX_PIXELS`` is refused (PictureError) before its pixels are read."""
    if why := too_many_pixels(*image.size):
        raise PictureError(f"{getattr(image, 'filename', '') or 'picture'}: {why}; reduce it first")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if image.mode == "F" and top <= 1.0:
            arr = arr * 255.0
        elif top > 255.0:
            arr = arr / 65535.0 * 255.0
        gray = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _to_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Any PIL image (see :func:`picture_rgb`) or array (gray, RGB(A), float in [0, 1]) -> uint8 (H, W, 3)."""
    if not isinstance(image, np.ndarray):
        return picture_rgb(image)
    arr = image
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def network_size(height: int, width: int, net_size: int | None) -> tuple[int, int]:
    """The multiple-of-16 size the network sees: longer side ``net_size`` (None: the picture's own size)."""
    if net_size is None:
        h, w = height, width
    else:
        scale = net_size / max(height, width)
        h, w = height * scale, width * scale
    return max(16, int(round(h / 16)) * 16), max(16, int(round(w / 16)) * 16)


def default_net_size(colorizer: Colorizer | None) -> int:
    """The network size a model colorizes photographs at by default: its card's ``default_net_size`` (the size
    that scored best on the photo check), else :data:`FALLBACK_NET_SIZE`."""
    card = (getattr(colorizer, "info", None) or {}).get("card") or {}
    size = card.get("default_net_size") if isinstance(card, dict) else None
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size >= 16 else FALLBACK_NET_SIZE


def _linear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weight of i1 of linear resampling from ``n_in`` to ``n_out`` samples, as torch's
    bilinear ``interpolate(align_corners=False)`` computes them (source position clamped at 0)."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def join_colours(rgb: np.ndarray, ab: torch.Tensor, tile_pixels: int = TILE_PIXELS) -> np.ndarray:
    """A picture from the full-resolution L of ``rgb`` (uint8 (H, W, 3)) and model-space ``ab`` (1, 2, h, w) of
    any smaller size, enlarged bilinearly; done in bands of rows of about ``tile_pixels`` pixels, so memory stays
    bounded whatever the picture's size. Returns uint8 (H, W, 3)."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w, 3), np.uint8)
    i0, i1, wy = _linear_taps(h, ab.shape[2])
    band = max(1, tile_pixels // max(1, w))
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        lo, hi = int(i0[y0:y1].min()), int(i1[y0:y1].max()) + 1  # the rows of ab this band needs
        rows = ab[:, :, lo:hi].float()
        wide = torch.nn.functional.interpolate(rows, size=(hi - lo, w), mode="bilinear", align_corners=False)
        weight = torch.from_numpy(wy[y0:y1]).view(1, 1, -1, 1)
        top, bottom = wide[:, :, i0[y0:y1] - lo], wide[:, :, i1[y0:y1] - lo]
        ab_band = top * (1 - weight) + bottom * weight
        L_band = torch.from_numpy(rgb_to_lab(rgb[y0:y1])[..., :1]).permute(2, 0, 1)[None]
        lab = torch.cat((L_band, ab_band * 110.0), dim=1)
        out[y0:y1] = rgb_to_uint8(lab_to_rgb(lab))[0]
    return out


@torch.no_grad()
def colorize_picture(colorizer: Colorizer, image: np.ndarray | Image.Image, net_size: NetSize = CARD,
                     tile_pixels: int = TILE_PIXELS) -> np.ndarray:
    """Colorize a picture of any size at its full resolution: the network runs on L resized to a multiple of 16
    (longer side ``net_size``; ``"card"``: the model card's :func:`default_net_size`; None: the picture's own
    size), the predicted a,b are enlarged (bilinear) and joined with the original's full-resolution L, band by
    band (:func:`join_colours`). Returns uint8 (H, W, 3), the picture's own size."""
    rgb = _to_rgb_array(image)
    h, w = rgb.shape[:2]
    size = default_net_size(colorizer) if net_size == CARD else net_size
    nh, nw = network_size(h, w, size)
    small = np.array(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BICUBIC))
    L_small, _ = uint8_to_model(small[None])
    ab = colorizer.predict(L_small)  # (1, 2, nh, nw) in model space
    return join_colours(rgb, ab, tile_pixels)


def gray_picture(image: np.ndarray | Image.Image) -> np.ndarray:
    """The picture's L channel shown as gray RGB: what a colorizer starts from."""
    return gray_images(_to_rgb_array(image)[None])[0]
