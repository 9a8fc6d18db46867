"""Checkpoints as plain dicts of tensors and numbers: written atomically, read without executing code."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from core.atomic import atomic_write

FORMAT_TRAINING = "colorize-training-checkpoint"
FORMAT_WEIGHTS = "colorize-weights"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable or not one of this project's."""


def _first_line(error: BaseException) -> str:
    """The first sentence of an error's message, on one line (torch's messages run to paragraphs)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, pickle.UnpicklingError) and "error:" in text:  # torch's advice first, the cause after
        text = text.rsplit("error:", 1)[1].split(" Check the documentation")[0].strip()
    return text.split(". ")[0][:160]


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """``torch.save`` through :func:`core.atomic.atomic_write`: never a half-written checkpoint."""
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint on the CPU with ``weights_only=True``: tensors and plain data only, no code runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a .pt file or a run directory")
    try:
        with warnings.catch_warnings():  # torch's warnings about a file's pickle protocol are not the user's to read
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is not usable; say which kind, in one line
        wanted = re.search(r"GLOBAL (\S+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if wanted:  # weights-only loading met an object other than tensors and plain data
            raise CheckpointError(f"{path} is not a readable checkpoint: it asks to build {wanted.group(1)}, and "
                                  "only tensors and plain data are loaded (anything else could run code)") from e
        raise CheckpointError(f"{path} is not a readable checkpoint (damaged, truncated or not a torch file: "
                              f"{_first_line(e)})") from e
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT_TRAINING, FORMAT_WEIGHTS):
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'format' field it knows)")
    return payload


def _generator_weights(checkpoint: dict) -> dict:
    """The generator a checkpoint ships: a weights file's, else a training checkpoint's averaged generator when it
    kept one (``--ema-decay``: the weights its validations measured), else its trained generator."""
    if checkpoint["format"] == FORMAT_WEIGHTS:
        return checkpoint["generator"]
    return checkpoint["state"].get("average") or checkpoint["state"]["nets"]["generator"]


def weights_payload(checkpoint: dict, half: bool = False) -> dict:
    """The shippable part of a checkpoint: the generator's weights (:func:`_generator_weights`), config and
    metrics, no optimiser (a weights file passes through, halved when asked)."""
    sd = _generator_weights(checkpoint)
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    return {
        "format": FORMAT_WEIGHTS,
        "version": VERSION,
        "method": checkpoint["method"],
        "config": checkpoint["config"],
        "epoch": checkpoint.get("epoch"),
        "step": checkpoint.get("step"),
        "phase": checkpoint.get("phase"),
        "metrics": checkpoint.get("metrics", {}),
        "generator": sd,
    }


def generator_state(payload: dict) -> dict[str, torch.Tensor]:
    """The generator's float32 state dict (:func:`_generator_weights`) from either kind of checkpoint
    (CheckpointError when it has none)."""
    try:
        sd = _generator_weights(payload)
        return {str(k): v.float() if v.is_floating_point() else v for k, v in sd.items()}
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError("the checkpoint holds no generator weights (a tensor for each name); it is damaged or "
                              "not a colorizer") from None
