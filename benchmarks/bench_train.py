"""Training speed in one run: a plain PyTorch U-Net loop, the engine in fp32 and in bf16, every registered method
in each precision, and validation after N real steps in each precision.

``python benchmarks/bench_train.py [--steps N] [--warmup N] [--rounds R] [--batch-size B] [--width W]
[--disc-width W] [--threads T] [--source SOURCE] [--headline METHOD] [--methods ...] [--agreement-steps N]
[--agreement-source SOURCE] [--no-agreement] [--check] [--json OUT]``

1. The headline rows (``--headline``, the U-Net by default, at width 32 and batch 128): the reference loop, the
   engine in fp32 and the engine in bf16, alternating for ``--rounds`` rounds so that all see the same machine
   load; ratios are medians of per-round ratios. The engine's own choice (``core.precision.choose_precision``
   on the same method and a real batch, as a run makes it at its start) is printed beside them, and the
   target is checked on the precision it chose: at least 2x the reference on a CPU with AMX or AVX-512 bf16
   instructions, at least 1.3x elsewhere.
2. Every other method of ``core.methods.method_names()``, every phase of its schedule, in fp32 and bf16.
3. Agreement: the headline method trained through ``core.train.train`` for ``--agreement-steps`` steps in each
   precision, from the same start, on the same images, then validated on the same images.

The reference is a straightforward PyTorch loop over the same U-Net architecture: default memory format,
float32, a ``DataLoader`` over a per-sample ``Dataset`` that converts each uint8 RGB image to Lab with
``skimage.color.rgb2lab`` when fetched, Adam with its defaults and MSE. The engine's step is the one
``core.train`` runs (batches from Lab tensors converted once, channels_last, fused Adam) in the named
precision; validation, checkpoints and status files are not part of a step.

Figures: images/s (wall clock); GFLOP/s from the FLOPs of one real optimisation step counted by
``torch.utils.flop_counter.FlopCounterMode`` (every network, forward and backward), against the matmul peak
of the row's precision, both peaks measured in this run; the share of its threads' time the process got.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2lab
from torch.utils.data import DataLoader, Dataset

from benchmarks.engine_bench import (
    EngineStep,
    Result,
    build_for_bench,
    counted_flops,
    cpu_name,
    load_text,
    matmul_peak,
    phase_names,
    timed,
)
from core.colour import AB_SCALE, L_SCALE
from core.config import TrainConfig
from core.feed import Tensors
from core.methods import method_names
from core.networks import UNet
from core.precision import CANDIDATES, choose_precision, cpu_has_fast_bf16
from core.sources import load_dataset
from core.train import default_threads, train

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
FAST_BF16_TARGET = 2.0  # engine / reference on a CPU with AMX or AVX-512 bf16
TARGET = 1.3  # elsewhere
# bf16 against fp32 after the agreement steps, on the same validation images: auc_ab points, mae_rgb levels
AGREEMENT_TOLERANCE = {"auc_ab": 0.25, "mae_rgb": 0.25}


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults from ``TrainConfig`` where it has one."""
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the first measurement of each row")
    p.add_argument("--rounds", type=int, default=4, help="alternating reference/fp32/bf16 headline measurements")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--width", type=int, default=d.width, help="generator (and classifier) base width")
    p.add_argument("--disc-width", type=int, default=d.disc_width)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for engine and reference (default: the engine's, the cores not already busy)")
    p.add_argument("--source", default="sample", help="data source of the speed rows (core.sources.load_dataset)")
    p.add_argument("--headline", default="unet", choices=method_names(),
                   help="the method measured against the reference loop (the reference is a U-Net loop)")
    p.add_argument("--methods", nargs="+", choices=method_names(), default=method_names(),
                   help="registered methods to measure (default: all)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference loop")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="engine in the default memory format (config channels_last=False)")
    p.add_argument("--agreement-steps", type=int, default=100, help="training steps of each agreement run")
    p.add_argument("--agreement-source", default=str(DEFAULT_ARCHIVE) if DEFAULT_ARCHIVE.is_file() else "sample",
                   help="data of the agreement runs (default: the CIFAR-10 archive when present, else sample)")
    p.add_argument("--agreement-val", type=int, default=2000, help="validation images of the agreement runs")
    p.add_argument("--no-agreement", dest="agreement", action="store_false", help="skip the agreement runs")
    p.add_argument("--check", action="store_true", help="exit 1 when a target or the agreement is missed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")
    args = p.parse_args(argv)
    if min(args.steps, args.rounds, args.batch_size, args.width, args.agreement_steps) < 1 or args.warmup < 0:
        p.error("--steps, --rounds, --batch-size, --width and --agreement-steps must be positive, --warmup not "
                "negative")
    return args


@dataclass
class Bench:
    """What every measurement shares: the options, the thread count, the data and its engine tensors."""

    args: argparse.Namespace
    threads: int
    images: np.ndarray
    data: Tensors
    folder: Path

    @property
    def size(self) -> int:
        """Image height and width."""
        return int(self.images.shape[1])

    def config(self, model: str, **kw: object) -> TrainConfig:
        """The training configuration of ``model`` for these options."""
        a = self.args
        return TrainConfig.from_dict(dict(model=model, width=a.width, disc_width=a.disc_width,
                                          batch_size=a.batch_size, device="cpu", threads=self.threads, seed=a.seed,
                                          channels_last=a.channels_last, size=self.size) | kw)

    def engine(self, model: str) -> list[tuple[Result, EngineStep]]:
        """One warmed-up step function per (phase, precision) of ``model``, each precision on its own copy of
        the method (built alike), with the FLOPs of one real step of each phase."""
        cfg = self.config(model)
        cases: list[tuple[Result, EngineStep]] = []
        methods = {p: build_for_bench(cfg, torch.device("cpu"), self.folder) for p in CANDIDATES}
        note = methods["fp32"][1]
        phases = phase_names(methods["fp32"][0], max(1, len(self.data) // cfg.batch_size))
        for phase in phases:
            label = model if len(phases) == 1 else f"{model} ({phase})"
            flops = counted_flops(EngineStep(methods["fp32"][0], cfg, self.data, phase, "fp32"))
            for precision in CANDIDATES:
                step = EngineStep(methods[precision][0], cfg, self.data, phase, precision)
                timed(step, self.args.warmup, cfg.batch_size, self.threads)
                cases.append((Result(label, precision, flops, cfg.batch_size, self.threads, note=note), step))
        return cases

    def headline(self, torch_threads: int) -> tuple[list[Result], dict[str, list[float]], dict]:
        """Reference loop(s) and the engine in fp32 and bf16, alternating; per-round engine/reference ratios
        (keys fp32, bf16 and, when a second reference runs, ``torch_threads``) and the engine's own choice.

        The second reference, run only when ``--threads`` is not given and the engine's default differs from
        torch's, keeps torch's own thread count as a plain loop does.
        """
        a = self.args
        engine = self.engine(a.headline)
        ref_flops = counted_flops(ReferenceStep(self.images, a.width, a.batch_size, a.workers, a.seed))
        note = f"DataLoader, skimage rgb2lab per image, {a.workers} workers"
        refs = [(Result("reference U-Net loop", "fp32", ref_flops, a.batch_size, self.threads, note=note),
                 ReferenceStep(self.images, a.width, a.batch_size, a.workers, a.seed))]
        if a.threads is None and torch_threads != self.threads:
            refs.append((Result(f"reference, torch's {torch_threads} thr", "fp32", ref_flops, a.batch_size,
                                torch_threads, note="as above, torch's default thread count"),
                         ReferenceStep(self.images, a.width, a.batch_size, a.workers, a.seed)))
        for result, step in refs:
            timed(step, a.warmup, a.batch_size, result.threads)
        first = engine[0][1]
        torch.set_num_threads(self.threads)
        first.next_batch()
        choice, figures = choose_precision(first.method, first.method.batch, "cpu")
        ratios: dict[str, list[float]] = {p: [] for p in CANDIDATES}
        if len(refs) > 1:
            ratios["torch_threads"] = []
        rows = [*engine[: len(CANDIDATES)], *refs]  # the first phase of the headline method
        for r in range(a.rounds):  # alternate the order, so that none always follows another
            for result, step in rows if r % 2 == 0 else rows[::-1]:
                result.timings.append(timed(step, a.steps, a.batch_size, result.threads))
            ref = refs[0][0].timings[-1].images_per_s
            for result, _ in engine[: len(CANDIDATES)]:
                ratios[result.precision].append(result.timings[-1].images_per_s / ref)
            if len(refs) > 1:
                chosen = next(res for res, _ in engine[: len(CANDIDATES)] if res.precision == choice)
                ratios["torch_threads"].append(chosen.timings[-1].images_per_s / refs[1][0].timings[-1].images_per_s)
        for result, step in engine[len(CANDIDATES):]:  # later phases of the headline method, if any
            result.timings.append(timed(step, a.steps, a.batch_size, self.threads))
        results = [res for res, _ in engine[: len(CANDIDATES)]] + [res for res, _ in refs]
        results += [res for res, _ in engine[len(CANDIDATES):]]
        return results, ratios, {"choice": choice, **figures}

    def others(self) -> list[Result]:
        """Every other requested method, every phase, fp32 and bf16 alternating: two measurements each."""
        cases = [case for name in self.args.methods if name != self.args.headline for case in self.engine(name)]
        for r in range(2):
            for result, step in cases if r % 2 == 0 else cases[::-1]:
                result.timings.append(timed(step, self.args.steps, self.args.batch_size, self.threads))
        return [result for result, _ in cases]

    def agreement(self) -> dict[str, dict]:
        """Validation after ``--agreement-steps`` steps of the headline method in each precision: same seed,
        same start, same batches, same validation images."""
        a = self.args
        out: dict[str, dict] = {}
        for precision in CANDIDATES:
            cfg = TrainConfig.from_dict(dict(model=a.headline, source=a.agreement_source, width=a.width,
                                             disc_width=a.disc_width, batch_size=a.batch_size, epochs=1,
                                             limit=a.agreement_steps * a.batch_size, val_limit=a.agreement_val,
                                             threads=self.threads, seed=a.seed, precision=precision, n_samples=0,
                                             device="cpu", channels_last=a.channels_last))
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the run's own log lines
                final = train(cfg, self.folder / f"agreement-{precision}", progress=False)
            status = json.loads((self.folder / f"agreement-{precision}" / "status.json").read_text())
            out[precision] = {"wall_s": time.perf_counter() - t, "steps": final["step"],
                              "val": status.get("last_val", {})}
        return out


def ratio_text(ratios: list[float]) -> str:
    """Median ratio and the per-round ratios, as text."""
    return f"{statistics.median(ratios):.2f}x (per round {', '.join(f'{x:.2f}' for x in ratios)})"


def print_table(results: list[Result], peaks: dict[str, float]) -> None:
    """One row per measurement: name, precision, threads, images/s, GFLOP/s and its share of that precision's
    peak, CPU share, GFLOP per step."""
    header = (f"{'rows':30s} {'prec':>4s} {'thr':>3s} {'img/s':>8s} {'GFLOP/s':>8s} {'% peak':>7s} "
              f"{'CPU share':>9s} {'GFLOP/step':>10s}")
    print(header)
    print("-" * len(header))
    for r in results:
        peak = peaks[r.precision]
        print(f"{r.name:30s} {r.precision:>4s} {r.threads:3d} {r.images_per_s:8.1f} {r.gflops:8.1f} "
              f"{100 * r.gflops / peak:6.0f}% {100 * r.cpu_share:8.0f}% {r.flops_per_step / 1e9:10.1f}"
              + (f"   {r.note}" if r.note else ""))


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables and targets, optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    load_before = os.getloadavg()
    torch_threads = torch.get_num_threads()
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    fast_bf16 = cpu_has_fast_bf16()
    target = FAST_BF16_TARGET if fast_bf16 else TARGET

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
    peaks = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(2):  # alternating, best of both
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peaks[precision] = max(peaks[precision], matmul_peak(dtype, threads))

    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, threads, images, data, Path(tmp))
        results, ratios, choice = bench.headline(torch_threads)
        results += bench.others()
        agreement = bench.agreement() if args.agreement else {}
    load_after = os.getloadavg()

    print(f"CPU: {cpu_name()}, {cores} cores, bf16 instructions (amx_bf16/avx512_bf16): "
          f"{'yes' if fast_bf16 else 'no'}; torch {torch.__version__}; {threads} thread(s)"
          f"{'' if args.threads else ' (engine default: the cores not already busy)'}")
    print(f"load average (1, 5, 15 min) before: {load_text(load_before)}; after: {load_text(load_after)}")
    print(f"data: {len(images)} images ({args.source}, {bench.size}x{bench.size}); the engine converts them to Lab "
          f"once ({lab_once_s:.2f} s), the reference converts each image with skimage at every fetch")
    print(f"batch {args.batch_size}, width {args.width}, discriminator width {args.disc_width}, channels_last "
          f"{args.channels_last}; {args.warmup} warm-up step(s), {args.steps} timed step(s) per measurement, "
          f"{args.rounds} alternating headline round(s); methods from the registry: {', '.join(args.methods)}")
    print(f"measured matmul peaks (2048x2048, {threads} thread(s) as the rows, best of 10): "
          f"fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s\n")
    print_table(results, peaks)

    met = True
    print(f"\nengine's own choice at the start of a {args.headline} run: {choice['choice']} (fp32 "
          f"{choice['fp32_images_per_s']:.1f}, bf16 {choice['bf16_images_per_s']:.1f} images/s over its timed steps)")
    for precision in CANDIDATES:
        print(f"{args.headline} engine {precision} / reference, same threads: {ratio_text(ratios[precision])}")
    best = statistics.median(ratios[choice["choice"]])
    verdict = "met" if best >= target else "NOT met"
    met &= best >= target
    print(f"target: engine ({choice['choice']}, the engine's choice) >= {target:.1f}x the reference "
          f"({'CPU with bf16 instructions' if fast_bf16 else 'CPU without bf16 instructions'}): {best:.2f}x, {verdict}")
    if ratios.get("torch_threads"):
        print(f"{args.headline} engine ({choice['choice']}, {threads} thr) / reference with torch's default "
              f"{torch_threads} threads: {ratio_text(ratios['torch_threads'])}")
    agree_ok = True
    if agreement:
        print(f"\nagreement: {args.headline} trained {args.agreement_steps} steps in each precision on "
              f"{args.agreement_source} (batch {args.batch_size}, width {args.width}, seed {args.seed}), validated "
              f"on the same {args.agreement_val} images")
        for precision, row in agreement.items():
            v = row["val"]
            print(f"  {precision}: auc_ab {v.get('auc_ab', float('nan')):.3f}, mae_rgb "
                  f"{v.get('mae_rgb', float('nan')):.3f}, psnr {v.get('psnr', float('nan')):.3f}, val_loss "
                  f"{v.get('val_loss', float('nan')):.5f} ({row['steps']} steps, {row['wall_s']:.1f} s with "
                  "data and validation)")
        for key, tol in AGREEMENT_TOLERANCE.items():
            diff = agreement["bf16"]["val"].get(key, float("nan")) - agreement["fp32"]["val"].get(key, float("nan"))
            ok = abs(diff) <= tol
            agree_ok &= ok
            print(f"  bf16 - fp32 {key}: {diff:+.3f} (tolerance {tol}): {'within' if ok else 'NOT within'}")
    if args.json:
        out = {"cpu": cpu_name(), "cores": cores, "cpu_fast_bf16": fast_bf16, "threads": threads,
               "torch_default_threads": torch_threads, "torch": torch.__version__, "load_before": list(load_before),
               "load_after": list(load_after), "settings": {k: v for k, v in vars(args).items() if k != "json"},
               "images": len(images), "lab_conversion_once_s": lab_once_s, "matmul_peak_gflops": peaks,
               "results": [r.to_dict(peaks[r.precision]) for r in results], "engine_choice": choice,
               "engine_over_reference": {k: statistics.median(v) for k, v in ratios.items() if v},
               "round_ratios": ratios, "target": target, "target_met": met, "agreement": agreement,
               "agreement_tolerance": AGREEMENT_TOLERANCE, "agreement_met": agree_ok}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 1 if args.check and not (met and agree_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
