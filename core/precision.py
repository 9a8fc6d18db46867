"""Numeric precision of training steps and inference: float32, or bfloat16 autocast, chosen by measurement.

``--precision auto`` (the default) means bf16 autocast on CUDA. On a CPU it means whichever of fp32 and bf16
ran faster on this machine: a run times a few of its own optimisation steps on a real batch in each (then
restores the weights, optimiser states and random state, so the run itself is unchanged), and inference times
a real forward pass once per network and image shape in a process. Whether the CPU has bf16 instructions
(:func:`cpu_has_fast_bf16`) is recorded beside the figures for information; the choice is the measurement's.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
CANDIDATES = ("fp32", "bf16")
FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 dot-product instructions


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_fast_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU lists AMX or AVX-512 bf16 instructions (information beside a measurement, not a rule)."""
    return bool(cpu_flags(cpuinfo) & set(FAST_BF16_FLAGS))


def cuda_bf16(device: torch.device) -> bool:
    """Whether ``device`` is a CUDA device that supports bf16."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def autocast_for(precision: str, device: torch.device | str) -> torch.autocast:
    """The autocast context of a resolved precision (``fp32``: autocast off; ``bf16``: bf16 autocast)."""
    device = torch.device(device)
    if precision not in CANDIDATES:
        raise ValueError(f"precision must be one of {', '.join(CANDIDATES)} here, not {precision!r}")
    kind = device.type if device.type in ("cpu", "cuda") else "cpu"
    if precision == "fp32":
        return torch.autocast(kind, enabled=False)
    return torch.autocast(kind, dtype=torch.bfloat16)


def _fixed(precision: str, device: torch.device) -> tuple[str, str] | None:
    """The precision and why, when no measurement is needed; None when ``auto`` must time the candidates."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision, f"--precision {precision}"
    if device.type == "cuda":
        return ("bf16", "CUDA: bf16 autocast") if cuda_bf16(device) else ("fp32", "CUDA device without bf16")
    if device.type != "cpu":
        return "fp32", f"{device.type}: float32"
    return None


def time_candidates(step: Callable[[str], None], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each call of ``step(precision)`` per candidate: ``warmup`` untimed calls each, then ``repeats``
    rounds that alternate which candidate goes first, so that both see the same machine load."""
    for precision in CANDIDATES:
        for _ in range(warmup):
            step(precision)
    times: dict[str, list[float]] = {p: [] for p in CANDIDATES}
    for r in range(repeats):
        for precision in CANDIDATES if r % 2 == 0 else CANDIDATES[::-1]:
            t = time.perf_counter()
            step(precision)
            times[precision].append(time.perf_counter() - t)
    return times


def _figures(choice: str, reason: str, times: dict[str, list[float]] | None, images: int) -> dict[str, Any]:
    out: dict[str, Any] = {"choice": choice, "reason": reason, "cpu_fast_bf16": cpu_has_fast_bf16()}
    for precision, seconds in (times or {}).items():
        out[f"{precision}_images_per_s"] = images / statistics.median(seconds) if seconds else None
    return out


def choose_precision(method: Any, batch: dict[str, torch.Tensor], device: torch.device | str,
                     precision: str = "auto", warmup: int = 2, steps: int = 3,
                     previous: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The precision a training run uses, with the figures it was chosen from.

    ``auto`` on a CPU times ``steps`` optimisation steps of ``method`` (after ``warmup`` untimed ones) on
    ``batch`` in fp32 and in bf16 and keeps the faster; weights, optimiser states, phase and the torch random
    state are restored afterwards, so the run goes on exactly as without the measurement. A candidate whose
    step fails or gives a non-finite loss is not chosen. ``previous`` (the figures a resumed run recorded at
    its start) is kept when it was measured on the same kind of device, so that every part of a run trains in
    the same precision.
    """
    device = torch.device(device)
    fixed = _fixed(precision, device)
    if fixed is not None:
        return fixed[0], _figures(fixed[0], fixed[1], None, 0) | {"device": device.type}
    if previous and previous.get("choice") in CANDIDATES and previous.get("device") == device.type:
        kept = dict(previous)
        if not str(kept.get("reason", "")).startswith("kept"):
            kept["reason"] = f"kept from the run's start ({kept.get('reason', 'measured')})"
        return kept["choice"], kept
    state = copy.deepcopy(method.state_dict())
    rng = torch.get_rng_state()
    failed: dict[str, str] = {}

    def step(candidate: str) -> None:
        if candidate in failed:
            return
        method.set_input(batch)
        try:
            with autocast_for(candidate, device):
                losses = method.optimize()
        except RuntimeError as e:  # an operation without a bf16 kernel on this machine
            failed[candidate] = str(e).splitlines()[0][:200]
            return
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            failed[candidate] = f"loss {bad[0]} was {losses[bad[0]]}"

    try:
        times = time_candidates(step, warmup, steps)
    finally:
        method.load_state_dict(state)
        torch.set_rng_state(rng)
    n = len(next(iter(batch.values())))
    usable = {p: t for p, t in times.items() if p not in failed}
    if not usable:
        raise RuntimeError(f"no precision could run a training step: {failed}")
    choice = min(usable, key=lambda p: statistics.median(usable[p]))
    reason = f"faster of fp32 and bf16 over {steps} timed steps of this run on a CPU"
    figures = _figures(choice, reason, usable, n) | {"device": device.type}
    if failed:
        figures["failed"] = failed
    return choice, figures


def describe(figures: dict[str, Any]) -> str:
    """One line for a run's log: the choice, and the figures it was made from."""
    speeds = [f"{p} {figures[f'{p}_images_per_s']:.0f}" for p in CANDIDATES
              if figures.get(f"{p}_images_per_s") is not None]
    measured = f" ({', '.join(speeds)} images/s)" if speeds else ""
    return f"precision {figures['choice']}: {figures['reason']}{measured}"


# --- inference ---------------------------------------------------------------------------------------------
_INFERENCE: dict[tuple, dict[str, Any]] = {}
_INFERENCE_LOCK = threading.Lock()


def _device_of(net: nn.Module, sample: torch.Tensor) -> torch.device:
    param = next(net.parameters(), None)
    return param.device if param is not None else sample.device


def inference_key(net: nn.Module, sample: torch.Tensor) -> tuple:
    """What an inference measurement is kept for: the network's kind and shapes, the input's image shape and the
    device. Not the thread count, so that a network predicts alike on worker threads and in the caller's."""
    shapes = tuple(tuple(p.shape) for p in net.parameters())
    return type(net).__qualname__, shapes, tuple(sample.shape[1:]), str(_device_of(net, sample))


@contextlib.contextmanager
def _eval_mode(net: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in net.modules()}
    net.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def inference_precision(net: nn.Module, sample: torch.Tensor, precision: str = "auto", warmup: int = 1,
                        repeats: int = 3) -> str:
    """The precision to run ``net`` in: the setting, or (``auto``) bf16 on CUDA and, on a CPU, the faster of
    fp32 and bf16 on a real forward pass of ``sample``, measured once per network shape, input image shape
    and device in this process (see :func:`inference_figures`)."""
    device = _device_of(net, sample)
    fixed = _fixed(precision, device)
    if fixed is not None:
        return fixed[0]
    key = inference_key(net, sample)
    with _INFERENCE_LOCK:  # one measurement at a time; callers in other threads wait for its result
        found = _INFERENCE.get(key)
        if found is None:
            found = _measure_inference(net, sample.to(device), warmup, repeats)
            _INFERENCE[key] = found
    return found["choice"]


def _measure_inference(net: nn.Module, sample: torch.Tensor, warmup: int, repeats: int) -> dict[str, Any]:
    failed: dict[str, str] = {}

    def forward(candidate: str) -> None:
        if candidate in failed:
            return
        try:
            with torch.inference_mode(), autocast_for(candidate, sample.device):
                net(sample)
        except RuntimeError as e:
            failed[candidate] = str(e).splitlines()[0][:200]

    with _eval_mode(net):
        times = time_candidates(forward, warmup, repeats)
    usable = {p: t for p, t in times.items() if p not in failed}
    if not usable:
        raise RuntimeError(f"no precision could run {type(net).__name__}: {failed}")
    choice = min(usable, key=lambda p: statistics.median(usable[p]))
    figures = _figures(choice, f"faster of fp32 and bf16 over {repeats} forward passes of {len(sample)} images",
                       usable, len(sample))
    figures["network"] = type(net).__name__
    figures["parameters"] = sum(p.numel() for p in net.parameters())
    figures["input"] = "x".join(str(d) for d in sample.shape[1:])
    figures["threads"] = torch.get_num_threads()
    return figures | ({"failed": failed} if failed else {})


def inference_figures() -> list[dict[str, Any]]:
    """Every inference measurement made in this process so far: the choice and the images/s behind it."""
    with _INFERENCE_LOCK:
        return [dict(v) for v in _INFERENCE.values()]


def forget_inference_measurements() -> None:
    """Drop the cached inference measurements (the next call measures again)."""
    with _INFERENCE_LOCK:
        _INFERENCE.clear()
