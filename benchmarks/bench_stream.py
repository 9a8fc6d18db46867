"""Streamed training: memory of 50,000 pictures at 128x128 read from the memory-mapped cache, and speed at 32x32
against resident training measured in the same run.

    python benchmarks/bench_stream.py [--source ARCHIVE] [--big-size 128] [--big-steps 100] [--small-steps 60]
                                      [--rounds 5] [--json OUT]

1. Memory. The CIFAR-10 archive's 50,000 training pictures, upscaled to 128x128 (bicubic) by the source loader, are
   decoded once into the cache by one child process (2.46 GB of uint8; a resident run would hold 12.3 GB of Lab
   tensors), then another child process trains on them with ``--data-mode stream`` for ``--big-steps`` steps,
   validating once on 500 pictures, once reading in the training process (``--workers 0``) and once with
   ``--workers`` DataLoader worker processes. Its peak RSS (``getrusage``; target: under 2 GB) and the peak of the
   resident and proportional set sizes of its whole process tree (workers included, sampled from /proc) are
   reported.
2. Speed. At 32x32 on the same archive, child processes train ``--small-steps`` steps resident and streamed,
   alternating for ``--rounds`` rounds; images per second come from the steps' timestamps after the first five.
   Target: streamed within 15% of resident (median of the rounds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GB = 1e9
WARM_STEPS = 5


# --- child processes ----------------------------------------------------------------------------------------
def child_prepare(config: dict) -> dict:
    """Decode and cache the source at the configured size; the split's sizes."""
    from core.data import prepare_for
    from core.feed import resident_bytes, run_subsets

    t0 = time.perf_counter()
    prepared = prepare_for(config, mmap=True, progress=False)
    seconds = time.perf_counter() - t0
    from core.config import TrainConfig

    train_idx, val_idx = run_subsets(TrainConfig.from_dict(config), prepared)
    images = prepared.dataset.parts["train"].images
    return {"seconds": seconds, "pictures": int(len(images)), "shape": list(images.shape),
            "cache_bytes": int(images.nbytes), "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
            "resident_bytes": resident_bytes(len(train_idx) + len(val_idx), int(config["size"]))}


def child_train(config: dict, out: str, max_steps: int) -> dict:
    """Train ``max_steps`` steps into ``out``; the peak RSS of this process and the speed of its steps."""
    from core.config import TrainConfig
    from core.runs import RunDir
    from core.train import train

    t0 = time.perf_counter()
    status = train(TrainConfig.from_dict(config), out, progress=False, max_steps=max_steps)
    wall = time.perf_counter() - t0
    steps = [r for r in RunDir(Path(out)).metrics() if r["type"] == "step"]
    timed = steps[WARM_STEPS:]
    speed = None
    if len(timed) >= 2:
        speed = (len(timed) - 1) * int(config["batch_size"]) / (timed[-1]["time"] - timed[0]["time"])
    return {"state": status["state"], "data_mode": status.get("data_mode"), "steps": status.get("step"),
            "workers": int(status.get("data_workers") or 0),
            "wall_s": wall, "images_per_s": speed,
            "maxrss_self_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "maxrss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "validations": sum(1 for r in RunDir(Path(out)).metrics() if r["type"] == "val")}


# --- measuring a process tree --------------------------------------------------------------------------------
def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [c for c, p in parents.items() if p == pid]
    return out


def _kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak summed RSS and PSS of a process and its descendants, sampled every ``every_s`` seconds."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _tree(self.pid)
            rss = sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self.done.wait(self.every_s)


def run_child(kind: str, payload: dict, sample: bool = False) -> dict:
    """Run this script as a child (``--child KIND``) and return its JSON answer (and tree peaks when sampled)."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, json.dumps(payload)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid) if sample else None
    if sampler:
        sampler.start()
    stdout, stderr = proc.communicate()
    if sampler:
        sampler.done.set()
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"child {kind} failed ({proc.returncode}): {stderr.strip().splitlines()[-1:]}")
    answer = json.loads(stdout.strip().splitlines()[-1])
    if sampler:
        answer |= {"tree_peak_rss_bytes": sampler.peak_rss, "tree_peak_pss_bytes": sampler.peak_pss,
                   "tree_processes": sampler.peak_processes}
    return answer


# --- the benchmark ------------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    p.add_argument("--big-size", type=int, default=128)
    p.add_argument("--big-steps", type=int, default=100)
    p.add_argument("--small-steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, help="DataLoader workers of the streamed speed rounds (default: the "
                   "engine's own choice); the memory part runs with 0 and with this many, at least 1")
    p.add_argument("--json", type=Path)
    p.add_argument("--child", nargs=2, metavar=("KIND", "PAYLOAD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, payload = args.child[0], json.loads(args.child[1])
        answer = child_prepare(payload) if kind == "prepare" else \
            child_train(payload["config"], payload["out"], payload["max_steps"])
        print(json.dumps(answer))
        return 0
    if args.source not in ("sample", "cifar10") and not Path(args.source).exists():
        print(f"error: source {args.source} not found; give --source ARCHIVE", file=sys.stderr)
        return 2

    common = {"model": "unet", "source": args.source, "split": "hue", "val_fraction": 0.02, "seed": 0,
              "threads": args.threads, "workers": args.workers, "log_every": 1, "n_samples": 4, "epochs": 1}
    if args.workers is None:
        common.pop("workers")
    report: dict = {"machine": f"{os.cpu_count()} CPU cores", "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        # 1. memory at 128x128, streamed
        big = common | {"size": args.big_size, "width": 8, "batch_size": 64, "val_limit": 500, "data_mode": "stream"}
        prep = run_child("prepare", big)
        print(f"prepared {prep['pictures']} pictures at {args.big_size}x{args.big_size} in {prep['seconds']:.1f} s: "
              f"{prep['cache_bytes'] / GB:.2f} GB cached uint8; {prep['n_train']} train / {prep['n_val']} val; "
              f"resident tensors would take {prep['resident_bytes'] / GB:.2f} GB", flush=True)
        steps_per_epoch = prep["n_train"] // big["batch_size"]
        big["val_per_epoch"] = max(1, math.ceil(steps_per_epoch / max(1, args.big_steps - 10)))  # one validation
        report["memory"] = {"prepare": prep, "target_bytes": 2 * GB}
        for workers in sorted({0, max(1, args.workers or 1)}):
            mem = run_child("train", {"config": big | {"workers": workers}, "out": f"{tmp}/big-{workers}",
                                      "max_steps": args.big_steps}, sample=True)
            print(f"streamed {mem['steps']} steps x 64 at {args.big_size}x{args.big_size} with {workers} DataLoader "
                  f"worker(s), {mem['validations']} validation(s) of 500, {mem['images_per_s']:.1f} img/s: peak RSS "
                  f"of the training process {mem['maxrss_self_bytes'] / GB:.3f} GB (target: under 2 GB), of a "
                  f"worker {mem['maxrss_children_bytes'] / GB:.3f} GB; peak of the process tree "
                  f"({mem['tree_processes']} processes) RSS {mem['tree_peak_rss_bytes'] / GB:.3f} GB, PSS "
                  f"{mem['tree_peak_pss_bytes'] / GB:.3f} GB", flush=True)
            report["memory"][f"workers_{workers}"] = mem | {"met": mem["maxrss_self_bytes"] < 2 * GB}

        # 2. speed at 32x32, resident against streamed, alternating
        small = common | {"size": 32, "width": 32, "batch_size": 128, "val_limit": 500}
        run_child("prepare", small)
        speeds: dict[str, list[float]] = {"resident": [], "stream": []}
        for r in range(args.rounds):
            for mode in ("resident", "stream"):
                res = run_child("train", {"config": small | {"data_mode": mode}, "out": f"{tmp}/small-{mode}-{r}",
                                          "max_steps": args.small_steps})
                speeds[mode].append(res["images_per_s"])
                extra = f" ({res['workers']} DataLoader workers)" if mode == "stream" else ""
                print(f"round {r + 1} {mode:8s} {res['images_per_s']:.1f} img/s{extra}", flush=True)
                if mode == "stream":
                    report["stream_workers"] = res["workers"]
        resident, streamed = statistics.median(speeds["resident"]), statistics.median(speeds["stream"])
        ratio = streamed / resident
        print(f"32x32: resident {resident:.1f} img/s, streamed {streamed:.1f} img/s (median of {args.rounds}): "
              f"streamed at {ratio * 100:.1f}% of resident (target: at least 85%)", flush=True)
        report["speed"] = {"images_per_s": speeds, "median_resident": resident, "median_stream": streamed,
                           "ratio": ratio, "met": ratio >= 0.85}
    if args.json:
        from core.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
