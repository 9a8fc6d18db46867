"""The one interface every training method implements, and the registry that builds methods by name.

A method owns its networks, optimisers and losses, and declares what the rest of the project asks about it:
its name, label and one-line help, whether it colorizes, how to build its generator, its own options and any
work it needs before training. The engine (``core.train``) gives it batches and asks it to optimise one step;
the method answers with named float losses. Adding a method is one new file in ``core/methods/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from core.config import ConfigError, Option, TrainConfig

SIZE_MULTIPLE = 16  # picture sides the U-Net (four stride-2 levels) and the patch discriminator accept


@dataclass
class Phase:
    """A stretch of training with one objective: ``steps`` optimisation steps, validated every ``eval_every``."""

    name: str
    steps: int
    eval_every: int
    keep_best: bool = True  # whether validations in this phase may replace best.pt


class Method:
    """Base class: subclasses set ``name``, ``label`` and ``help``, build networks in ``__init__`` and implement
    ``optimize``; colorizers also say how their generator is built (``build_generator``)."""

    name: str = ""
    label: str = ""  # how the dashboard and reports name the method
    help: str = ""  # one line: what it trains
    needs: tuple[str, ...] = ("L", "ab")  # batch entries the method reads: L, ab, rgb, label
    default_lr: float = 2e-4
    default_beta1: float = 0.5
    is_colorizer: bool = True
    key_metric: str = "auc_ab"  # the validation figure that summarises a run (higher is better)
    options: tuple[Option, ...] = ()  # the method's own settings, beside the common ones of TrainConfig
    epochs_label: str = "Epochs"
    min_epochs: int = 1

    @classmethod
    def build_generator(cls, cfg: TrainConfig) -> nn.Module:
        """The network that turns L into ab, untrained (inference loads weights into it)."""
        raise NotImplementedError(f"{cls.name} builds no colorization generator")

    @classmethod
    def check_config(cls, cfg: TrainConfig) -> None:
        """Refuse settings that do not fit together (raises ``ConfigError``); options were checked one by one."""
        if cfg.epochs < cls.min_epochs:
            raise ConfigError(f"--epochs must be at least {cls.min_epochs} for {cls.name}, not {cfg.epochs}")
        if cfg.size % SIZE_MULTIPLE:
            raise ConfigError(f"--size must be a multiple of {SIZE_MULTIPLE} (the networks halve it four times), "
                              f"not {cfg.size}")

    @classmethod
    def before_training(cls, cfg: TrainConfig, run_path: Path, progress: bool) -> str | None:
        """Work a method needs done before its networks are built (may update ``cfg``); returns a note or None."""
        return None

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

    # --- the averaged generator ----------------------------------------------------------------------
    average: AveragedModel | None = None

    def start_average(self) -> None:
        """With ``--ema-decay`` above 0, keep an exponential moving average of the generator's weights and buffers
        (torch's AveragedModel; it starts from the generator's weights at the first step), which validation,
        predictions and checkpoints' shippable weights then use."""
        if self.cfg.ema_decay > 0 and self.average is None:
            net = self.nets["generator"]
            self.average = AveragedModel(getattr(net, "_orig_mod", net), use_buffers=True,
                                         multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema_decay))

    @torch.no_grad()
    def update_average(self) -> None:
        """Fold the generator's current weights into the average (after every optimisation step)."""
        if self.average is not None:
            net = self.nets["generator"]
            self.average.update_parameters(getattr(net, "_orig_mod", net))

    # --- inference and reporting -----------------------------------------------------------------
    @property
    def generator(self) -> nn.Module:
        """The network that turns L into ab (for colorizers) or images into logits (for the classifier): the
        averaged weights when ``--ema-decay`` keeps an average, else the trained network itself."""
        return self.average.module if self.average is not None else self.nets["generator"]

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

    def net(self, name: str) -> nn.Module:
        """The network ``name`` as a training step calls it when its parameters learn from that call: wrapped in
        DistributedDataParallel under torchrun (gradients averaged across processes), else the plain one in
        ``nets``. Forward passes that train nothing of this network (no_grad, a frozen critic) use ``nets``."""
        wrapped = self.__dict__.get("wrapped", {}).get(name)
        return wrapped if wrapped is not None else self.nets[name]

    def wrap_networks(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Have :meth:`net` return ``wrap(net)`` for every network in ``nets`` (all of them train). Their
        parameters are made trainable first: a GAN step may have left its critic frozen, and a wrapper such as
        DistributedDataParallel only averages the parameters that require gradients when it is built."""
        for net in self.nets.values():
            net.requires_grad_(True)
        self.wrapped = {k: wrap(v) for k, v in self.nets.items() if any(True for _ in v.parameters())}

    def state_dict(self) -> dict:
        """Weights and optimiser states, as plain dicts of tensors (``average``: the averaged generator's weights
        and buffers, and ``average_count``: how many steps it holds, when one is kept)."""
        state = {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "phase": self.phase,
        }
        if self.average is not None:
            state["average"] = self.average.module.state_dict()
            state["average_count"] = int(self.average.n_averaged.item())
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)
        for k, v in state["optimizers"].items():
            self.optimizers[k].load_state_dict(v)
        if self.average is not None and "average" in state:
            self.average.module.load_state_dict(state["average"])
            self.average.n_averaged.fill_(int(state.get("average_count", 1)))
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
    """Class decorator: make a method buildable and listed by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name to be registered")
    names = [o.name for o in cls.options]
    if len(set(names)) != len(names):
        raise ValueError(f"{cls.__name__} declares an option twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name`` (KeyError when there is none)."""
    return METHODS[name]


def method_names(colorizers_only: bool = False) -> list[str]:
    """Registered method names in registration order (``colorizers_only``: those that predict a,b)."""
    return [n for n, m in METHODS.items() if m.is_colorizer or not colorizers_only]


def method_label(name: str) -> str:
    """A method's label, or the name itself for a method no longer registered."""
    cls = METHODS.get(name)
    return cls.label or name if cls else name


def all_options() -> dict[str, tuple[Option, list[str]]]:
    """Every method option by name, with the methods that declare it (methods share an option by name)."""
    out: dict[str, tuple[Option, list[str]]] = {}
    for name, cls in METHODS.items():
        for opt in cls.options:
            out.setdefault(opt.name, (opt, []))[1].append(name)
    return out


def build_method(cfg: TrainConfig, device: torch.device) -> Method:
    """Build the method that ``cfg.model`` names."""
    if cfg.model not in METHODS:
        raise ValueError(f"unknown model {cfg.model!r}; choose one of {', '.join(METHODS)}")
    return METHODS[cfg.model](cfg, device)


def build_generator(method: str, config: dict) -> nn.Module:
    """An untrained generator of a registered colorizer for a saved configuration (inference)."""
    cls = METHODS.get(method)
    if cls is None or not cls.is_colorizer:
        raise ValueError(f"{method!r} is not a registered colorization method ({', '.join(method_names(True))})")
    return cls.build_generator(TrainConfig.from_dict(config | {"model": method}))


LossFn = Callable[..., torch.Tensor]
