"""The one interface every training method implements, and the registry that builds methods by name.

A method owns its networks, optimisers and losses. The engine (``core.train``) gives it batches and asks it
to optimise one step; the method answers with named float losses. Adding a method touches one file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.config import TrainConfig


@dataclass
class Phase:
    """A stretch of training with one objective: ``steps`` optimisation steps, validated every ``eval_every``."""

    name: str
    steps: int
    eval_every: int
    keep_best: bool = True  # whether validations in this phase may replace best.pt


class Method:
    """Base class: subclasses set ``name``, build networks in ``__init__`` and implement ``optimize``."""

    name: str = ""
    needs: tuple[str, ...] = ("L", "ab")  # batch entries the method reads: L, ab, rgb, label
    default_lr: float = 2e-4
    default_beta1: float = 0.5
    is_colorizer: bool = True

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.phase = "train"
        self.batch: dict[str, torch.Tensor] = {}

    # --- schedule -------------------------------------------------------------------------------
    def phases(self, steps_per_epoch: int) -> list[Phase]:
        """The training schedule; one phase of ``epochs`` epochs unless a method needs more."""
        every = max(1, steps_per_epoch // max(1, self.cfg.val_per_epoch))
        return [Phase("train", self.cfg.epochs * steps_per_epoch, every)]

    def set_phase(self, name: str) -> None:
        self.phase = name

    # --- one step -------------------------------------------------------------------------------
    def set_input(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def optimize(self) -> dict[str, float]:
        """One optimisation step on the current batch; returns named losses as floats."""
        raise NotImplementedError

    # --- inference and reporting -----------------------------------------------------------------
    @property
    def generator(self) -> nn.Module:
        """The network that turns L into ab (for colorizers) or images into logits (for the classifier)."""
        return self.nets["generator"]

    @torch.no_grad()
    def predict(self, L: torch.Tensor) -> torch.Tensor:
        """Model-space ab for model-space L, in evaluation mode."""
        g = self.generator
        was_training = g.training
        g.eval()
        out = g(L.to(self.device))
        g.train(was_training)
        return out.float()

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def state_dict(self) -> dict:
        """Weights and optimiser states, as plain dicts of tensors."""
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "phase": self.phase,
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)
        for k, v in state["optimizers"].items():
            self.optimizers[k].load_state_dict(v)
        self.set_phase(state.get("phase", "train"))

    def adam(self, params, lr: float | None = None) -> torch.optim.Adam:
        """Adam with the configured (or the method's default) learning rate and beta1."""
        lr = lr if lr is not None else (self.cfg.lr if self.cfg.lr is not None else self.default_lr)
        beta1 = self.cfg.beta1 if self.cfg.beta1 is not None else self.default_beta1
        fused = self.device.type in ("cpu", "cuda")  # one fused kernel per parameter: the fastest Adam on both
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), foreach=not fused, fused=fused or None)

    def prepare_net(self, net: nn.Module) -> nn.Module:
        net = net.to(self.device)
        if self.cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method buildable by its ``name``."""
    METHODS[cls.name] = cls
    return cls


def build_method(cfg: TrainConfig, device: torch.device) -> Method:
    """Build the method that ``cfg.model`` names."""
    if cfg.model not in METHODS:
        raise ValueError(f"unknown model {cfg.model!r}; choose one of {sorted(METHODS)}")
    return METHODS[cfg.model](cfg, device)


LossFn = Callable[..., torch.Tensor]
