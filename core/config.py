"""The training configuration: one plain dataclass, saved with every run as ``config.json``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    """Everything needed to repeat a training run (the split's own indices are saved beside it)."""

    model: str = "unet"  # unet | dcgan | nogan | classifier
    source: str = "sample"  # cifar10 | sample | folder or archive path
    split: str = "hue"  # random | hue
    val_fraction: float = 0.1
    gray_threshold: float = 5.0
    seed: int = 0
    epochs: int = 5  # for NoGAN: the epochs of phase 1 (generator alone)
    limit: int | None = None  # use at most this many training images (a random draw with the seed)
    val_limit: int | None = None  # validate on at most this many validation images (drawn likewise)
    init: str | None = None  # start the generator from this checkpoint's generator (fine-tuning; NoGAN's later phases)
    width: int = 32  # generator (or classifier) base width
    disc_width: int = 64  # discriminator / critic base width
    batch_size: int = 128
    lr: float | None = None  # None: the method's default
    beta1: float | None = None  # None: the method's default
    lr_decay_epochs: float = 0.0  # linear decay to zero over the last N epochs of the first phase (pix2pix); 0: none
    l1_weight: float = 100.0  # DCGAN: lambda of the L1 term
    real_label: float = 1.0  # 0.9 gives one-sided label smoothing
    feature_weight: float = 1.0  # NoGAN: weight of the feature loss inside the GAN phase
    feature_net: str = "auto"  # NoGAN: auto | vgg | path to a classifier checkpoint
    feature_layers: list[int] = field(default_factory=lambda: [0, 1, 2])
    feature_layer_weights: list[float] = field(default_factory=lambda: [20.0, 70.0, 10.0])
    critic_epochs: float = 1.0  # NoGAN phase 2 length, in epochs
    gan_fraction: float = 0.1  # NoGAN phase 3 length, in epochs
    gan_checkpoints: int = 10  # NoGAN: validations (and checkpoints) during phase 3
    gan_l1_weight: float = 0.0  # NoGAN: extra weight of the L1 term on a,b in the GAN phase (pix2pix's lambda); 0: none
    gan_lr: float = 2e-4  # NoGAN: learning rate of both networks in phase 3 (lower = a slower, finer inflection)
    flip: bool = True  # random horizontal flips
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # CPU threads; None: the cores not already busy (core.train.default_threads)
    compile: bool = False  # torch.compile the networks
    channels_last: bool = True
    val_per_epoch: int = 1  # validations (and kept generators) per epoch of a one-phase run (unet, dcgan, classifier)
    log_every: int = 20  # steps between metrics.jsonl loss records
    n_samples: int = 8  # validation images in each sample grid
    size: int = 32

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict, ignoring unknown keys so that older and newer runs both load."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | Path) -> None:
        from core.atomic import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
