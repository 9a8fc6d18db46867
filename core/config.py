"""The training configuration: one plain dataclass, saved with every run as ``config.json``.

Each field carries an :class:`Option` (type, help, allowed range) in its metadata, and each method adds its
own options (``core.methods``): the command line, the Train form's checks and the run's saved configuration
are all built from these declarations.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is out of its allowed range or of the wrong kind; the message names it and what is allowed."""


@dataclass(frozen=True)
class Option:
    """One setting: its name, type, default, one-line help and allowed values (min/max inclusive, ``above``
    exclusive); ``label`` is its name on the Train form. ``list_of`` makes it a list of that type."""

    name: str
    type: type
    default: Any
    help: str
    label: str = ""
    min: float | None = None
    max: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None
    list_of: bool = False
    optional: bool = False  # None is allowed (and means the help's fallback)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def check(self, value: Any) -> Any:
        """``value`` converted to the option's type, or a :class:`ConfigError` that says what is allowed."""
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"{self.flag} needs a value")
        if self.list_of:
            items = value.replace(",", " ").split() if isinstance(value, str) else value
            items = items if isinstance(items, (list, tuple)) else [items]
            return [self._one(v) for v in items]
        return self._one(value)

    def _one(self, value: Any) -> Any:
        if self.type is bool:
            if isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        try:
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if self.type is int and isinstance(value, str):
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf") else math.nan
                if not float(value).is_integer():
                    raise ValueError
            out = self.type(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{self.flag} must be {'an integer' if self.type is int else 'a number'}"
                              f" ({self._range() or self.help}), not {value!r}") from None
        if self.type in (int, float):
            if not math.isfinite(out):
                raise ConfigError(f"{self.flag} must be a finite number, not {value!r}")
            low_ok = self.min is None or out >= self.min
            above_ok = self.above is None or out > self.above
            high_ok = self.max is None or out <= self.max
            if not (low_ok and above_ok and high_ok):
                raise ConfigError(f"{self.flag} must be {self._range()}, not {value!r}")
        if self.choices is not None and out not in self.choices:
            raise ConfigError(f"{self.flag} must be one of {', '.join(self.choices)}, not {value!r}")
        return out

    def _range(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"above {self.above:g}")
        if self.min is not None:
            parts.append(f"at least {self.min:g}")
        if self.max is not None:
            parts.append(f"at most {self.max:g}")
        return " and ".join(parts)


def setting(default: Any, help: str, type: type | None = None, **limits: Any) -> Any:
    """A dataclass field with its :class:`Option` in the metadata (``type`` defaults to the default's)."""
    kind = type or (bool if isinstance(default, bool) else default.__class__ if default is not None else float)
    listed = isinstance(default, list)
    if listed:
        kind = type or default[0].__class__
    meta = {"option": dict(type=kind, default=default, help=help, list_of=listed,
                           optional=limits.pop("optional", default is None), **limits)}
    if listed:
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything needed to repeat a training run (the split's own indices are saved beside it).

    ``options`` holds the chosen method's own settings (see ``Method.options``); they are read as attributes
    (``cfg.l1_weight``) and saved flat beside the common ones, as older runs saved them.
    """

    model: str = setting("unet", "training method (python -m core.train --help lists them)")
    source: str = setting("sample", "cifar10, sample, or a folder/archive path")
    split: str = setting("hue", "how validation images are chosen: hue-stratified or random",
                         choices=("hue", "random"))
    val_fraction: float = setting(0.1, "share of the training part held out for validation", above=0.0, max=0.99)
    gray_threshold: float = setting(5.0, "drop images with no pixel above this |a| or |b|", min=0.0)
    seed: int = setting(0, "seed of the split's draws, the initial weights and the batch order", min=0)
    epochs: int = setting(5, "training epochs (NoGAN: of the generator-only phase 1)", min=0)
    limit: int | None = setting(None, "use at most N training images (a random draw with --seed, every class in "
                                "proportion)", type=int, min=1)
    val_limit: int | None = setting(None, "validate on at most N images (a random draw with --seed)", type=int, min=1)
    init: str | None = setting(None, "start the generator from this checkpoint's generator weights (e.g. NoGAN "
                               "with --epochs 0 runs only the critic and GAN phases over an existing generator)",
                               type=str)
    width: int = setting(32, "generator (or classifier) base width", min=1, max=1024)
    disc_width: int = setting(64, "discriminator / critic base width", min=1, max=1024)
    batch_size: int = setting(128, "images per optimisation step", min=1, max=65536)
    lr: float | None = setting(None, "learning rate (default: the method's)", type=float, above=0.0, max=10.0)
    beta1: float | None = setting(None, "Adam's beta1 (default: the method's)", type=float, min=0.0, max=0.999999)
    lr_decay_epochs: float = setting(0.0, "fall linearly to zero over the last N epochs (pix2pix's schedule; "
                                     "NoGAN: of phase 1)", min=0.0)
    flip: bool = setting(True, "random horizontal flips")
    device: str = setting("auto", "auto (CUDA when available), cpu or cuda", choices=("auto", "cpu", "cuda"))
    threads: int | None = setting(None, "CPU threads (default: the cores not already busy)", type=int, min=1,
                                  max=4096)
    compile: bool = setting(False, "torch.compile the networks")
    channels_last: bool = setting(True, "channels-last memory format (faster convolutions on CPU and GPU)")
    precision: str = setting("auto", "numeric precision of the training steps: auto (CUDA: bf16 autocast; CPU: the "
                             "faster of fp32 and bf16, timed on a few of the run's own steps at its start), fp32 "
                             "or bf16 (autocast)", choices=("auto", "fp32", "bf16"))
    ema_decay: float = setting(0.0, "keep an exponential moving average of the generator's weights with this "
                               "decay per step (e.g. 0.999); validation, best.pt and the shipped weights use the "
                               "average; 0 turns it off", min=0.0, max=0.99999)
    val_per_epoch: int = setting(1, "validations (each keeps its generator) per epoch of a one-phase run",
                                 min=1, max=10000)
    select: str = setting("score", "how best.pt is chosen: score (auc_ab x min(1, colorfulness ratio)), mae (lowest "
                          "validation mae_rgb) or auc (highest auc_ab)", choices=("score", "mae", "auc"))
    keep_generators: int | None = setting(None, "keep at most N validated generators per phase in "
                                          "checkpoints/<phase>/ (oldest removed first; default: all)", type=int, min=1)
    log_every: int = setting(20, "steps between metrics.jsonl loss records", min=1)
    n_samples: int = setting(8, "validation images in each sample grid", min=0, max=256)
    size: int = setting(32, "train and validate at N x N, a multiple of 16 (sources centre-crop and resize)",
                        min=16, max=4096)
    crop_scale: float = setting(1.0, "random resized crops: each training picture is cut to a share of its area "
                                "drawn from [S, 1] (aspect 3/4 to 4/3) and resized back to --size, so the network "
                                "sees objects at several scales; 1 turns them off", min=0.05, max=1.0)
    data_mode: str = setting("auto", "auto (resident when the tensors fit in half the free memory, else stream), "
                             "resident (converted once and held on the device) or stream (read from the "
                             "memory-mapped disk cache by a DataLoader)", choices=("auto", "resident", "stream"))
    workers: int | None = setting(None, "DataLoader worker processes for streamed data (default: the cores the "
                                  "training threads leave free; 0 reads in the training process)", type=int, min=0,
                                  max=64)
    world_size: int = 1  # processes that trained the run last (torchrun); recorded, not a setting
    options: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not fields: the method's own settings
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__} has no setting {name!r}")

    def to_dict(self) -> dict:
        """The configuration as saved: common settings and the method's options side by side."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        return out | dict(self.options)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a saved (or hand-written) dict: unknown keys are ignored, so older and newer runs both load;
        the method's options take the saved value or the method's default."""
        from core.methods import get_method

        names = {f.name for f in dataclasses.fields(cls)} - {"options"}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        given = dict(d.get("options") or {}) | {k: v for k, v in d.items() if k not in names}
        try:
            method = get_method(cfg.model)
        except KeyError:
            cfg.options = {k: v for k, v in given.items() if k != "options"}
            return cfg
        cfg.options = {o.name: given.get(o.name, o.default) for o in method.options}
        return cfg

    def checked(self) -> TrainConfig:
        """This configuration with every setting checked against its option (raises :class:`ConfigError`)."""
        from core.methods import get_method

        try:
            method = get_method(self.model)
        except KeyError:
            from core.methods import method_names

            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(method_names())}") from None
        for opt in common_options():
            setattr(self, opt.name, opt.check(getattr(self, opt.name)))
        self.options = {o.name: o.check(self.options.get(o.name, o.default)) for o in method.options}
        method.check_config(self)
        return self

    def save(self, path: str | Path) -> None:
        from core.atomic import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def common_options() -> list[Option]:
    """The settings every method shares, as options (the order of the dataclass)."""
    return [Option(name=f.name, **f.metadata["option"]) for f in dataclasses.fields(TrainConfig)
            if "option" in f.metadata]


def options_by_name(options: Sequence[Option]) -> dict[str, Option]:
    return {o.name: o for o in options}
