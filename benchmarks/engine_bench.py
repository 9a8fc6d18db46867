"""What the training benchmarks share: the engine's step driven as ``core.train`` drives it, in a named precision,
timed; FLOPs of one real step; matmul peaks; every registered method built the way a run builds it.

Used by ``benchmarks/bench_train.py`` (CPU) and ``benchmarks/gpu_check.py`` (one GPU).
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from core.config import TrainConfig
from core.feed import Tensors, epoch_permutation, flip_mask
from core.methods import METHODS, Method, build_method
from core.precision import autocast_for


@dataclass
class Timing:
    """Wall and CPU seconds of one measurement of ``steps`` optimisation steps of ``images`` images in all."""

    wall_s: float
    cpu_s: float
    steps: int
    images: int

    @property
    def images_per_s(self) -> float:
        """Images per wall-clock second."""
        return self.images / self.wall_s


@dataclass
class Result:
    """The measurements of one kind of training step in one precision, with the FLOPs of one step."""

    name: str
    precision: str
    flops_per_step: float
    batch_size: int
    threads: int
    timings: list[Timing] = field(default_factory=list)
    note: str = ""

    @property
    def images_per_s(self) -> float:
        """Median over measurements of images per second."""
        return statistics.median(t.images_per_s for t in self.timings)

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s at the median images per second."""
        return self.images_per_s / self.batch_size * self.flops_per_step / 1e9

    @property
    def cpu_share(self) -> float:
        """CPU time over wall time x threads, over all measurements: how much of its threads' time it got."""
        return sum(t.cpu_s for t in self.timings) / (sum(t.wall_s for t in self.timings) * self.threads)

    def to_dict(self, peak: float) -> dict:
        """JSON-ready figures and raw measurements; ``peak`` is the measured matmul GFLOP/s of its precision."""
        return {"name": self.name, "precision": self.precision, "images_per_s": self.images_per_s,
                "gflops": self.gflops, "fraction_of_peak": self.gflops / peak if peak > 0 else None,
                "cpu_share": self.cpu_share, "flops_per_step": self.flops_per_step, "note": self.note,
                "measurements": [{"wall_s": t.wall_s, "cpu_s": t.cpu_s, "steps": t.steps, "images": t.images,
                                  "images_per_s": t.images_per_s} for t in self.timings]}


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CPU = torch.device("cpu")


def timed(step: Callable[[], None], n: int, batch_size: int, threads: int, device: torch.device = CPU) -> Timing:
    """Run ``step`` ``n`` times on ``threads`` CPU threads and return its wall and CPU time."""
    torch.set_num_threads(threads)
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    synchronize(device)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu, n, n * batch_size)


class EngineStep:
    """One method's optimisation step driven as ``core.train`` drives it, in one phase and one precision."""

    def __init__(self, method: Method, cfg: TrainConfig, data: Tensors, phase: str, precision: str) -> None:
        self.method, self.cfg, self.data, self.precision = method, cfg, data, precision
        self.bs = min(cfg.batch_size, len(data))
        self.spe = max(1, len(data) // self.bs)
        names = [p.name for p in method.phases(self.spe)]
        self.phase_index = names.index(phase)
        self.phase = phase
        self.step_no, self.perm_epoch, self.perm = 0, -1, torch.empty(0, dtype=torch.long)
        self.autocast = autocast_for(precision, method.device)

    def next_batch(self) -> None:
        """Give the method its next batch: this epoch's order, the flip mask, channels_last as configured."""
        m, cfg, local = self.method, self.cfg, self.step_no
        if local // self.spe != self.perm_epoch:
            self.perm_epoch = local // self.spe
            self.perm = epoch_permutation(cfg.seed, self.phase_index, self.perm_epoch, len(self.data))
        idx = self.perm[(local % self.spe) * self.bs : (local % self.spe + 1) * self.bs].to(m.device)
        flips = flip_mask(cfg.seed, local, len(idx)).to(m.device) if cfg.flip else None
        m.set_input(self.data.batch(idx, m.needs, flips, cfg.channels_last))

    def __call__(self) -> None:
        """One step on the next batch, exactly as the training loop makes it."""
        m = self.method
        if m.phase != self.phase:
            m.set_phase(self.phase)
        self.next_batch()
        with self.autocast:
            losses = m.optimize()
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise RuntimeError(f"{m.name} ({self.phase}, {self.precision}): loss {bad[0]} became {losses[bad[0]]}")
        self.step_no += 1


def counted_flops(step: Callable[[], None]) -> float:
    """FLOPs of one call of ``step`` (a real optimisation step: forward, backward, every network), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` from the operations that ran."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, threads: int, device: torch.device = CPU, n: int = 2048,
                reps: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul in ``dtype`` on ``threads`` CPU threads or on the GPU (restores the thread
    count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        best = 0.0
        for _ in range(reps):
            synchronize(device)
            t = time.perf_counter()
            a @ b
            synchronize(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(before)


def build_for_bench(cfg: TrainConfig, device: torch.device, folder: Path) -> tuple[Method, str]:
    """The method ``cfg.model`` names, built as a run builds it: its ``before_training`` hook first (which may
    train what it needs, into ``folder``), then ``build_method``; returns it with the hook's note."""
    note = METHODS[cfg.model].before_training(cfg, folder / cfg.model, progress=False) or ""
    torch.manual_seed(cfg.seed)
    return build_method(cfg, device), note


def phase_names(method: Method, steps_per_epoch: int) -> list[str]:
    """The distinct phases of the method's schedule, in order (a one-phase method has one)."""
    return list(dict.fromkeys(p.name for p in method.phases(steps_per_epoch)))


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_text(load: tuple[float, float, float]) -> str:
    """Load averages (1, 5, 15 minutes) as text."""
    return " ".join(f"{x:.2f}" for x in load)
