"""Training and evaluation speed on one GPU, printed line by line: what ``benchmarks/gpu_check.sh`` runs.

``python benchmarks/gpu_check.py [--source ARCHIVE] [--width 64] [--batch-size 256] [--steps N] [--warmup N]
[--epoch-images 45000] [--device auto] [--tiny]``

Prints the device; for every registered method (``core.methods.method_names()``) and every phase of its
schedule, images/s of the engine's own step at the given width and batch in the precision a run chooses
(``--precision auto``: bf16 autocast on CUDA) and the time of one epoch of ``--epoch-images`` images; the
evaluation time of the test part for every shipped colorizer in ``checkpoints/``; peak GPU memory; and the
targets: on an H100 or H200, a U-Net epoch under 5 s and a DCGAN epoch under 10 s. ``--tiny`` runs the same
code small (width 8, batch 32, 2 steps, 64 test images, the bundled ``sample`` unless ``--source`` is given),
which is how it is tested on a CPU. Nothing is read from the network: the data is a local archive (the first of
``--source``, ``../shared/data/cifar10-jpeg.tar.gz``, ``shared/data/...`` or ``data/...`` in the repository).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.engine_bench import (
    EngineStep,
    build_for_bench,
    counted_flops,
    matmul_peak,
    phase_names,
    timed,
)
from core.config import TrainConfig
from core.feed import Tensors
from core.methods import method_names
from core.precision import choose_precision
from core.train import default_threads, select_device

ROOT = Path(__file__).resolve().parents[1]

ARCHIVES = [ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz", ROOT / "shared" / "data" / "cifar10-jpeg.tar.gz",
            ROOT / "data" / "cifar10-jpeg.tar.gz"]
SHIPPED = [ROOT / "checkpoints" / f"{name}.pt" for name in ("unet", "dcgan", "nogan")]
EPOCH_TARGETS_S = {"unet": 5.0, "dcgan": 10.0}  # on an H100 or H200
TARGET_DEVICES = ("H100", "H200")


def find_source(given: str | None, tiny: bool) -> str | None:
    """The data to use: ``--source``, else the first archive that exists, else (``--tiny``) the bundled sample."""
    if given:
        return given
    found = next((a for a in ARCHIVES if a.is_file()), None)
    return str(found) if found else ("sample" if tiny else None)


def device_line(device: torch.device) -> str:
    """The device in words: GPU name, memory and count, or the CPU."""
    if device.type != "cuda":
        return f"device: {device.type} (no CUDA device; torch {torch.__version__})"
    props = torch.cuda.get_device_properties(device)
    return (f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} GPU(s); "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--tiny`` fills in small defaults for the ones not given."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", help="local data archive or folder (default: the first archive found)")
    p.add_argument("--width", type=int)
    p.add_argument("--disc-width", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, help="timed steps per method and phase")
    p.add_argument("--warmup", type=int, help="untimed steps first")
    p.add_argument("--eval-limit", type=int, help="test images to evaluate (default: all)")
    p.add_argument("--epoch-images", type=int, default=45_000, help="images of the epoch whose time is printed")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: the engine's, the cores not already busy)")
    p.add_argument("--tiny", action="store_true", help="width 8, batch 32, 2 steps, 64 test images, sample data")
    args = p.parse_args(argv)
    small = {"width": 8, "disc_width": 8, "batch_size": 32, "steps": 2, "warmup": 1, "eval_limit": 64}
    full = {"width": 64, "disc_width": 64, "batch_size": 256, "steps": 20, "warmup": 5, "eval_limit": None}
    for key, value in (small if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit 2 (one line) when the data cannot be found or read, 1 for a failure while running."""
    from core.cli import run_command

    args = parse_args(argv)
    return run_command(lambda: check(args))


def check(args: argparse.Namespace) -> int:
    """The check itself: every section in turn, each printed as soon as it is measured."""
    from core.sources import DataSourceError

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads or default_threads())
    source = find_source(args.source, args.tiny)
    if source is None:
        raise DataSourceError("no data archive; give --source or put cifar10-jpeg.tar.gz at one of "
                              + ", ".join(str(a) for a in ARCHIVES))
    device = select_device(args.device)
    print(device_line(device), flush=True)
    from core.data import prepare

    t = time.perf_counter()
    prepared = prepare(source, "hue", 0.1, 0, progress=False)
    train_images = prepared.images("train")
    data = Tensors.from_images(train_images, prepared.labels("train"), device)
    print(f"data: {source}, {len(train_images)} training images on {device} ({time.perf_counter() - t:.1f} s)",
          flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        peak = matmul_peak(torch.bfloat16, torch.get_num_threads(), device, n=8192 if not args.tiny else 512)
    else:
        peak = matmul_peak(torch.bfloat16, torch.get_num_threads(), device, n=512 if args.tiny else 2048)
    print(f"bf16 matmul peak: {peak / 1000:.1f} TFLOP/s", flush=True)

    epochs: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in method_names():
            cfg = TrainConfig.from_dict({"model": name, "width": args.width, "disc_width": args.disc_width,
                                         "batch_size": args.batch_size, "device": device.type, "seed": 0,
                                         "size": int(train_images.shape[1])})
            method, _ = build_for_bench(cfg, device, Path(tmp))
            bs = min(cfg.batch_size, len(data))
            phases = phase_names(method, max(1, len(data) // bs))
            first = EngineStep(method, cfg, data, phases[0], "fp32")
            first.next_batch()
            choice, _ = choose_precision(method, method.batch, device, cfg.precision)
            for phase in phases:
                step = EngineStep(method, cfg, data, phase, choice)
                flops = counted_flops(step)
                timed(step, args.warmup, bs, torch.get_num_threads(), device)
                timing = timed(step, args.steps, bs, torch.get_num_threads(), device)
                speed = timing.images_per_s
                epoch_s = args.epoch_images / speed
                label = name if len(phases) == 1 else f"{name} ({phase})"
                epochs.setdefault(name, epoch_s)
                print(f"train {label}: {speed:.0f} img/s, epoch of {args.epoch_images} images {epoch_s:.2f} s "
                      f"(width {args.width}, batch {bs}, {choice}, {flops / bs / 1e9:.2f} GFLOP/image, "
                      f"{speed / bs * flops / 1e12:.2f} TFLOP/s)", flush=True)
            del method, step, first

    from core.evaluate import evaluate
    from core.inference import load_colorizer

    total = 0.0
    for path in SHIPPED:
        if not path.is_file():
            print(f"evaluate: {path.name} not found, skipped")
            continue
        colorizer = load_colorizer(path, device=device)
        t = time.perf_counter()
        result = evaluate(colorizer, prepared, "test", limit=args.eval_limit)
        seconds = time.perf_counter() - t
        total += seconds
        print(f"evaluate: {path.stem}, {result.n_images} test images: {seconds:.2f} s (forward "
              f"{result.timing['forward_s']:.2f} s in {result.info.get('precision')}, metrics "
              f"{result.timing['metrics_s']:.2f} s), auc_ab {result.metrics['auc_ab']:.2f}", flush=True)
    print(f"evaluate: all shipped models {total:.2f} s")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    else:
        print("peak GPU memory: n/a (no GPU)")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    applies = any(d in name for d in TARGET_DEVICES)
    for method, limit in EPOCH_TARGETS_S.items():
        if method not in epochs:
            continue
        if applies:
            verdict = "met" if epochs[method] < limit else "NOT met"
            print(f"target: {method} epoch < {limit:.0f} s on H100/H200: {epochs[method]:.2f} s, {verdict}")
        else:
            print(f"target: {method} epoch < {limit:.0f} s applies to H100/H200, not to {name}: "
                  f"{epochs[method]:.2f} s here")
    print(f"gpu_check.py wall time: {time.perf_counter() - t_start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
