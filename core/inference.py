"""Trained colorizers, loaded from run directories or checkpoint files, and colorization of pictures of any size."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

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

    def colorize(self, image: np.ndarray | Image.Image, net_size: int | None = 256) -> np.ndarray:
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


@torch.no_grad()
def colorize_picture(colorizer: Colorizer, image: np.ndarray | Image.Image, net_size: int | None = 256,
                     ) -> np.ndarray:
    """Colorize a picture of any size: the network runs on L resized to a multiple of 16, the predicted a,b
    are upsampled (bilinear) and joined with the full-resolution L of the original. Returns uint8 (H, W, 3)."""
    rgb = _to_rgb_array(image)
    h, w = rgb.shape[:2]
    lab_full = rgb_to_lab(rgb)  # (H, W, 3)
    nh, nw = network_size(h, w, net_size)
    small = np.array(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BICUBIC))
    L_small, _ = uint8_to_model(small[None])
    ab = colorizer.predict(L_small)  # (1, 2, nh, nw) in model space
    ab_full = torch.nn.functional.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)
    lab = torch.cat((torch.from_numpy(lab_full[..., :1]).permute(2, 0, 1)[None], ab_full * 110.0), dim=1)
    return rgb_to_uint8(lab_to_rgb(lab))[0]


def gray_picture(image: np.ndarray | Image.Image) -> np.ndarray:
    """The picture's L channel shown as gray RGB: what a colorizer starts from."""
    return gray_images(_to_rgb_array(image)[None])[0]
