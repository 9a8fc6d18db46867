"""Training speed of every method through the engine's own step, against a plain PyTorch U-Net loop.

``python benchmarks/bench_train.py [--steps N] [--rounds R] [--batch-size B] [--width W] [--threads T]
[--source SOURCE] [--methods ...] [--json OUT]``

For each method (unet, dcgan, nogan in its generator and gan phases, classifier) the script builds the method
with ``core.methods.build_method``, feeds it batches with ``core.train.Tensors.batch`` exactly as the training
loop does (epoch permutation, flip mask, channels_last as configured) and times optimisation steps after a
warm-up; validation, checkpoints and status files are not part of a step. The reference is a straightforward
PyTorch loop over the same U-Net architecture: default memory format, float32, a ``DataLoader`` over a
per-sample ``Dataset`` that converts each uint8 RGB image to Lab with ``skimage.color.rgb2lab`` when fetched,
Adam with its defaults and MSE. Engine U-Net and reference alternate for ``--rounds`` rounds, so both see the
same machine load; their ratio is the median of the per-round ratios.

Figures: images/s (wall clock), achieved GFLOP/s (3 x forward FLOPs from ``core.networks.conv_flops`` for each
network pass that is backpropagated, 1 x for a pass without gradients), the share of its threads' time the
process got (CPU time / (wall time x threads)), and a measured float32 matmul peak for scale.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2lab
from torch import nn
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/bench_train.py` puts benchmarks/ first on the path, not the root
    sys.path.insert(0, str(ROOT))

from core.checkpoint import FORMAT_TRAINING, VERSION, save_checkpoint  # noqa: E402
from core.colour import AB_SCALE, L_SCALE  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.methods import Method, build_method  # noqa: E402
from core.methods.nogan import resolve_feature_net  # noqa: E402
from core.networks import UNet, conv_flops  # noqa: E402
from core.sources import load_dataset  # noqa: E402
from core.train import Tensors, default_threads, epoch_permutation, flip_mask  # noqa: E402

METHOD_NAMES = ("unet", "dcgan", "nogan", "classifier")


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
    """The measurements of one training step kind, with the FLOPs of one step."""

    name: str
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
        """JSON-ready figures and raw measurements; ``peak`` is the measured matmul GFLOP/s."""
        return {"name": self.name, "images_per_s": self.images_per_s, "gflops": self.gflops,
                "fraction_of_peak": self.gflops / peak if peak > 0 else None, "cpu_share": self.cpu_share,
                "flops_per_step": self.flops_per_step, "note": self.note,
                "measurements": [{"wall_s": t.wall_s, "cpu_s": t.cpu_s, "steps": t.steps, "images": t.images,
                                  "images_per_s": t.images_per_s} for t in self.timings]}


def timed(step: Callable[[], None], n: int, batch_size: int, threads: int) -> Timing:
    """Run ``step`` ``n`` times on ``threads`` CPU threads and return its wall and CPU time."""
    torch.set_num_threads(threads)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu, n, n * batch_size)


class EngineStep:
    """One method's optimisation step driven as ``core.train`` drives it, for one phase of its schedule."""

    def __init__(self, method: Method, cfg: TrainConfig, data: Tensors, phase: str) -> None:
        self.method, self.cfg, self.data = method, cfg, data
        self.bs = min(cfg.batch_size, len(data))
        self.spe = max(1, len(data) // self.bs)
        names = [p.name for p in method.phases(self.spe)]
        self.phase_index = names.index(phase)
        self.phase = phase
        self.step_no, self.perm_epoch, self.perm = 0, -1, torch.empty(0, dtype=torch.long)
        self.autocast = torch.autocast("cpu", enabled=False)

    def __call__(self) -> None:
        """One step on the next batch, exactly as the training loop makes it (CPU device)."""
        m, cfg, local = self.method, self.cfg, self.step_no
        if m.phase != self.phase:
            m.set_phase(self.phase)
        if local // self.spe != self.perm_epoch:
            self.perm_epoch = local // self.spe
            self.perm = epoch_permutation(cfg.seed, self.phase_index, self.perm_epoch, len(self.data))
        idx = self.perm[(local % self.spe) * self.bs : (local % self.spe + 1) * self.bs].to(m.device)
        flips = flip_mask(cfg.seed, local, len(idx)).to(m.device) if cfg.flip else None
        m.set_input(self.data.batch(idx, m.needs, flips, cfg.channels_last))
        with self.autocast:
            losses = m.optimize()
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise RuntimeError(f"{m.name} ({self.phase}): loss {bad[0]} became {losses[bad[0]]}")
        self.step_no += 1


class RGBToLabDataset(Dataset):
    """uint8 RGB images (N, H, W, 3); each fetch flips at random and converts to scaled (L, ab) with skimage."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        if torch.rand(()) < 0.5:
            image = image[:, ::-1]
        lab = torch.from_numpy(np.ascontiguousarray(rgb2lab(image).astype(np.float32).transpose(2, 0, 1)))
        return lab[:1] / L_SCALE - 1.0, lab[1:] / AB_SCALE


class ReferenceStep:
    """A plain PyTorch U-Net training step: DataLoader with per-sample skimage Lab, Adam defaults, MSE."""

    def __init__(self, images: np.ndarray, width: int, batch_size: int, workers: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.loader = DataLoader(RGBToLabDataset(images), batch_size=batch_size, shuffle=True, drop_last=True,
                                 num_workers=workers, generator=torch.Generator().manual_seed(seed))
        self.batches: Iterator = iter(self.loader)
        self.model = UNet(width=width)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def __call__(self) -> None:
        """One step on the next batch (a new epoch's loader when the last one is used up)."""
        try:
            L, ab = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            L, ab = next(self.batches)
        loss = F.mse_loss(self.model(L), ab)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        loss.item()


def forward_flops(net: nn.Module, channels: int, size: int, batch_size: int) -> float:
    """Conv/linear FLOPs of one forward pass of ``batch_size`` images (counted on one image, scaled)."""
    return float(conv_flops(net, (1, channels, size, size))) * batch_size


def step_flops(method: Method, phase: str, size: int, batch_size: int) -> float:
    """FLOPs of one step: 3 x forward for every backpropagated pass, 1 x for a pass without gradients."""
    if method.name == "classifier":
        return 3 * forward_flops(method.generator, 3, size, batch_size)
    g = forward_flops(method.generator, 1, size, batch_size)
    d = forward_flops(method.nets["discriminator"], 3, size, batch_size) if "discriminator" in method.nets else 0.0
    if method.name == "unet":
        return 3 * g
    if method.name == "dcgan":  # G; D on real and on fake for its own step; D on fake for G's step
        return 3 * g + 9 * d
    feat = forward_flops(method.feature_loss.net, 3, size, batch_size)  # nogan: features of fake (grad), true
    if phase == "gan":
        return 3 * g + 9 * d + 4 * feat
    return 3 * g + 4 * feat


def measure_matmul_peak(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n matmul on ``threads`` threads (restores the thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        best = 0.0
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(before)


def nogan_feature_net(cfg: TrainConfig, folder: Path) -> tuple[str, str]:
    """The ``feature_net`` setting NoGAN is built with and a description of it.

    The engine's own choice when it has one; otherwise an untrained width-16 classifier checkpoint, the size
    of network the engine trains first in that case (a step costs the same with trained weights).
    """
    net, why = resolve_feature_net(cfg)
    if net is not None:
        return cfg.feature_net, why
    clf_cfg = TrainConfig(model="classifier", width=16, device="cpu")
    clf = build_method(clf_cfg, torch.device("cpu"))
    path = folder / "classifier.pt"
    save_checkpoint({"format": FORMAT_TRAINING, "version": VERSION, "method": "classifier",
                     "config": clf_cfg.to_dict(), "step": 0, "state": clf.state_dict()}, path)
    return str(path), "untrained width-16 classifier (as the engine trains first when none exists)"


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults from ``TrainConfig`` where it has one."""
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before the first measurement")
    p.add_argument("--rounds", type=int, default=4, help="alternating engine/reference U-Net measurements")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--width", type=int, default=d.width, help="U-Net (and classifier) base width")
    p.add_argument("--disc-width", type=int, default=d.disc_width)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for engine and reference (default: the engine's, the cores not already busy)")
    p.add_argument("--source", default="sample", help="data source for core.sources.load_dataset")
    p.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(METHOD_NAMES))
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference loop")
    p.add_argument("--compile", action="store_true", help="torch.compile the engine's networks (config compile)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="engine in the default memory format (config channels_last=False)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")
    args = p.parse_args(argv)
    if min(args.steps, args.rounds, args.batch_size, args.width) < 1 or args.warmup < 0:
        p.error("--steps, --rounds, --batch-size and --width must be positive, --warmup not negative")
    return args


@dataclass
class Bench:
    """What every measurement shares: the options, the thread count, the data and its engine tensors."""

    args: argparse.Namespace
    threads: int
    images: np.ndarray
    data: Tensors

    @property
    def size(self) -> int:
        """Image height and width."""
        return int(self.images.shape[1])

    def config(self, model: str, **kw: object) -> TrainConfig:
        """The training configuration of ``model`` for these options."""
        a = self.args
        return TrainConfig(model=model, width=a.width, disc_width=a.disc_width, batch_size=a.batch_size,
                           device="cpu", threads=self.threads, seed=a.seed, compile=a.compile,
                           channels_last=a.channels_last, size=self.size, **kw)

    def engine(self, model: str, phases: list[tuple[str, str]], **kw: object) -> list[tuple[Result, EngineStep]]:
        """Build ``model`` as the engine does and warm up one step function per (label, phase)."""
        cfg = self.config(model, **kw)
        torch.manual_seed(cfg.seed)
        method = build_method(cfg, torch.device("cpu"))
        flops = {phase: step_flops(method, phase, self.size, cfg.batch_size) for _, phase in phases}
        if cfg.compile:  # as core.train does
            for k, net in method.nets.items():
                method.nets[k] = torch.compile(net)
        cases = []
        for label, phase in phases:
            step = EngineStep(method, cfg, self.data, phase)
            note = ""
            if cfg.compile:
                t = time.perf_counter()
                step()
                note = f"compile + first step {time.perf_counter() - t:.1f} s"
            timed(step, self.args.warmup, cfg.batch_size, self.threads)
            cases.append((Result(label, flops[phase], cfg.batch_size, self.threads, note=note), step))
        return cases

    def unet_rounds(self, torch_threads: int) -> tuple[list[Result], list[float], list[float]]:
        """Engine U-Net and reference loop(s), alternating; per-round engine/reference ratios.

        The second reference, run only when ``--threads`` is not given and the engine's default differs from
        torch's, keeps torch's own thread count as a plain loop does.
        """
        a = self.args
        [(unet, unet_step)] = self.engine("unet", [("unet (engine)", "train")])
        flops = 3 * forward_flops(UNet(width=a.width), 1, self.size, a.batch_size)
        note = f"DataLoader, skimage rgb2lab per image, {a.workers} workers"
        refs = [(Result("reference U-Net loop", flops, a.batch_size, self.threads, note=note),
                 ReferenceStep(self.images, a.width, a.batch_size, a.workers, a.seed))]
        if a.threads is None and torch_threads != self.threads:
            refs.append((Result(f"reference, torch's {torch_threads} thr", flops, a.batch_size, torch_threads,
                                note="as above, torch's default thread count"),
                         ReferenceStep(self.images, a.width, a.batch_size, a.workers, a.seed)))
        for result, step in refs:
            timed(step, a.warmup, a.batch_size, result.threads)
        ratios: list[list[float]] = [[] for _ in refs]
        for r in range(a.rounds):  # alternate the order, so that none always follows another
            order = [(unet, unet_step), *refs]
            for result, step in order if r % 2 == 0 else order[::-1]:
                result.timings.append(timed(step, a.steps, a.batch_size, result.threads))
            for i, (ref, _) in enumerate(refs):
                ratios[i].append(unet.timings[-1].images_per_s / ref.timings[-1].images_per_s)
        return [unet, *(result for result, _ in refs)], ratios[0], ratios[1] if len(refs) > 1 else []

    def other_methods(self, folder: Path) -> list[Result]:
        """DCGAN, NoGAN (generator and gan phases) and the classifier, one measurement each."""
        cases: list[tuple[Result, EngineStep]] = []
        if "dcgan" in self.args.methods:
            cases += self.engine("dcgan", [("dcgan", "train")])
        if "nogan" in self.args.methods:
            feature_net, desc = nogan_feature_net(self.config("nogan"), folder)
            nogan = self.engine("nogan", [("nogan (generator phase)", "generator"), ("nogan (gan phase)", "gan")],
                                feature_net=feature_net)
            for result, _ in nogan:
                result.note = "; ".join(x for x in (result.note, f"feature net: {desc}") if x)
            cases += nogan
        if "classifier" in self.args.methods:
            cases += self.engine("classifier", [("classifier", "train")])
        for result, step in cases:
            result.timings.append(timed(step, self.args.steps, self.args.batch_size, self.threads))
        return [result for result, _ in cases]


def ratio_text(ratios: list[float]) -> str:
    """Median ratio and the per-round ratios, as text."""
    return f"{statistics.median(ratios):.2f}x (per round {', '.join(f'{x:.2f}' for x in ratios)})"


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    load_before = os.getloadavg()
    torch_threads = torch.get_num_threads()
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    dataset = load_dataset(args.source, size=32, progress=False)
    images = np.concatenate([part.images for part in dataset.parts.values()])
    labels = np.concatenate([part.labels for part in dataset.parts.values()])
    if len(images) < args.batch_size:
        print(f"error: {len(images)} images in {args.source!r}, fewer than --batch-size {args.batch_size}",
              file=sys.stderr)
        return 1
    t = time.perf_counter()
    data = Tensors.from_images(images, labels, torch.device("cpu"))
    lab_once_s = time.perf_counter() - t
    peak = measure_matmul_peak(cores)
    bench = Bench(args, threads, images, data)

    results: list[Result] = []
    ratios: list[float] = []
    torch_ratios: list[float] = []
    if "unet" in args.methods:
        results, ratios, torch_ratios = bench.unet_rounds(torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        results += bench.other_methods(Path(tmp))
    load_after = os.getloadavg()

    print(f"CPU: {cpu_name()}, {cores} cores; torch {torch.__version__}; "
          f"{threads} thread(s){'' if args.threads else ' (engine default: the cores not already busy)'}")
    print(f"load average (1, 5, 15 min) before: {load_text(load_before)}; after: {load_text(load_after)}")
    print(f"data: {len(images)} images ({args.source}, {bench.size}x{bench.size}); the engine converts them to Lab "
          f"once ({lab_once_s:.2f} s), the reference converts each image with skimage at every fetch")
    print(f"batch {args.batch_size}, U-Net width {args.width}, discriminator width {args.disc_width}, "
          f"channels_last {args.channels_last}, compile {args.compile}; {args.warmup} warm-up step(s), "
          f"{args.steps} timed step(s) per measurement, {args.rounds} engine/reference round(s)")
    print(f"measured matmul peak (float32 2048x2048, all {cores} threads, best of 5): {peak:.1f} GFLOP/s\n")
    header = (f"{'method':26s} {'thr':>3s} {'images/s':>9s} {'GFLOP/s':>8s} {'% peak':>7s} {'CPU share':>9s} "
              f"{'GFLOP/step':>10s}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.name:26s} {r.threads:3d} {r.images_per_s:9.1f} {r.gflops:8.1f} {100 * r.gflops / peak:6.0f}% "
              f"{100 * r.cpu_share:8.0f}% {r.flops_per_step / 1e9:10.1f}" + (f"   {r.note}" if r.note else ""))
    if ratios:
        print(f"\nU-Net engine / reference, same threads: {ratio_text(ratios)}; target >= 1.3x")
    if torch_ratios:
        print(f"U-Net engine ({threads} thr) / reference with torch's default {torch_threads} threads: "
              f"{ratio_text(torch_ratios)}")
    if args.json:
        out = {"cpu": cpu_name(), "cores": cores, "threads": threads, "torch_default_threads": torch_threads,
               "torch": torch.__version__, "load_before": list(load_before), "load_after": list(load_after),
               "settings": {k: v for k, v in vars(args).items() if k != "json"}, "images": len(images),
               "lab_conversion_once_s": lab_once_s, "matmul_peak_gflops": peak,
               "results": [r.to_dict(peak) for r in results],
               "unet_engine_over_reference": statistics.median(ratios) if ratios else None,
               "unet_round_ratios": ratios,
               "unet_engine_over_reference_torch_threads": statistics.median(torch_ratios) if torch_ratios else None,
               "unet_round_ratios_torch_threads": torch_ratios}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
