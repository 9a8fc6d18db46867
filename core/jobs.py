"""Training jobs as the dashboard starts them: the checked arguments of a new run, and of resuming one.

Everything here reads and writes the run directories of ``core.runs``; the queries over runs (the runs table,
curves, deletion) live there too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core.access import AccessError, check_name, check_source
from core.config import ConfigError, Option
from core.methods import get_method, method_names
from core.runs import JobError, RunDir, default_runs_dir, run_config

MAX_PROCESSES = 64


# --- a new run ---------------------------------------------------------------------------------------
def default_run_name(method: str, now: datetime | None = None) -> str:
    """``<method>-<YYYYmmdd-HHMMSS>``."""
    return f"{method}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def method_default_lr(method: str) -> float:
    """The learning rate a method uses when none is given."""
    return float(get_method(method).default_lr)


def parse_lr(text: str | float | None) -> float | None:
    """A learning rate from a form field: blank means the method's default (None)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        lr = float(text)
    except ValueError:
        raise JobError(f"learning rate {text!r} is not a number; write e.g. 2e-4, or leave it blank") from None
    if not math.isfinite(lr) or lr <= 0:
        raise JobError(f"learning rate must be a positive number, not {text!r}")
    return lr


@dataclass
class TrainForm:
    """The values of the Train page's form (0 for a limit means no limit; blank name means a default one);
    ``options`` holds the chosen method's own settings by name (``Method.options``), as the form shows them."""

    method: str = "unet"
    source: str = "sample"
    split: str = "hue"
    epochs: int = 5
    width: int = 32
    batch_size: int = 128
    lr: str = ""
    lr_decay_epochs: float = 0.0
    limit: int = 0
    val_limit: int = 0
    seed: int = 0
    device: str = "auto"
    name: str = ""
    processes: int = 1  # data-parallel training processes on this machine (torchrun above 1)
    options: dict[str, object] = field(default_factory=dict)


def method_form_options(method: str) -> list[Option]:
    """The options the Train form shows for ``method``: its own, as the registry declares them."""
    return list(get_method(method).options)


def build_train_args(form: TrainForm, runs_dir: str | Path | None = None, now: datetime | None = None,
                     ) -> dict[str, object]:
    """The ``core.train`` options for a form, with ``out`` a new directory in ``runs_dir``; checks every value."""
    if form.method not in method_names():
        raise JobError(f"unknown method {form.method!r}; choose one of {', '.join(method_names())}")
    if form.split not in ("hue", "random"):
        raise JobError(f"unknown split {form.split!r}; choose hue or random")
    if form.device not in ("auto", "cpu", "cuda"):
        raise JobError(f"unknown device {form.device!r}; choose auto, cpu or cuda")
    source = form.source.strip()
    if not source:
        raise JobError("the data source is empty; write sample, cifar10, or a folder/archive path")
    try:
        check_source(source)
    except AccessError as e:
        raise JobError(str(e)) from None
    for label, value, low in (("epochs", form.epochs, 1), ("width", form.width, 1), ("batch size", form.batch_size, 1),
                              ("image limit", form.limit, 0), ("validation limit", form.val_limit, 0),
                              ("seed", form.seed, 0)):
        if int(value) < low:
            raise JobError(f"{label} must be at least {low}, not {value}")
    if not 1 <= int(form.processes) <= MAX_PROCESSES:
        raise JobError(f"processes must be from 1 to {MAX_PROCESSES}, not {form.processes}")
    if int(form.batch_size) % int(form.processes):
        raise JobError(f"batch size {form.batch_size} is split over {form.processes} processes and must be a "
                       f"multiple of {form.processes}")
    lr = parse_lr(form.lr)
    if float(form.lr_decay_epochs) < 0:
        raise JobError(f"learning-rate decay epochs must not be negative, not {form.lr_decay_epochs}")
    own = {o.name: o for o in method_form_options(form.method)}
    unknown = sorted(set(form.options) - set(own))
    if unknown:
        raise JobError(f"{unknown[0]!r} is not an option of {form.method}")
    method_args: dict[str, object] = {}
    for name, value in form.options.items():
        try:
            method_args[name] = own[name].check(value)
        except ConfigError as e:
            raise JobError(f"{own[name].title}: {e}") from None
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    name = form.name.strip()
    if not name:  # a default name never collides: a second run in the same second gets a suffix
        base = name = default_run_name(form.method, now)
        for i in range(2, 1000):
            if not (root / name).exists():
                break
            name = f"{base}-{i}"
    try:
        check_name(name, "run name")
    except AccessError as e:
        raise JobError(str(e)) from None
    out = root / name
    if out.exists():
        raise JobError(f"a run named {name!r} already exists in {root}; choose another name")
    args: dict[str, object] = {
        "model": form.method, "source": source, "split": form.split, "epochs": int(form.epochs),
        "width": int(form.width), "batch_size": int(form.batch_size), "lr": lr,
        "lr_decay_epochs": float(form.lr_decay_epochs),
        "limit": int(form.limit) or None, "val_limit": int(form.val_limit) or None, "seed": int(form.seed),
        "device": form.device,
    }
    if int(form.processes) > 1:
        args["processes"] = int(form.processes)
    return args | method_args | {"out": str(out), "quiet": True}


def resume_args(run: RunDir) -> dict[str, object]:
    """The options that continue a cancelled or failed run from its last checkpoint."""
    state = run.live_status().get("state")
    if state not in ("cancelled", "failed"):
        raise JobError(f"only a cancelled or failed run can be resumed; {run.id} is {state or 'unknown'}")
    if not run.exists():
        raise JobError(f"{run.id} stopped before it saved its configuration; start a new run instead")
    processes = int(run_config(run).get("world_size") or 1)  # as many processes as trained it last
    return {"out": str(run.path), "resume": True, "quiet": True} | ({"processes": processes} if processes > 1 else {})
