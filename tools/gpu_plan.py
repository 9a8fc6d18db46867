"""Sizes the epochs of tools/train_gpu.sh to a time budget from short calibration runs trained side by side.

``python tools/gpu_plan.py --budget 300 --source DATA CAL_DIR...`` reads each calibration run's metrics.jsonl
(seconds per step of each phase, measured while the runs shared the machine as the real ones will) and prints
shell assignments (UNET_EPOCHS=..., ...) that fit the real runs into the budget, within fixed bounds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from core.data import prepare_for

BATCH = 128
VAL_S = 1.5  # seconds per validation of 2,000 images with its checkpoint and sample grid (generous)
GAN_EPOCHS = 4  # NoGAN: length of the GAN phase, in epochs
GAN_CHECKPOINTS = 45
CLASSIFIER_EPOCHS = 6


def seconds_per_step(run: Path) -> dict[str, float]:
    """Seconds per step of each phase: time between the second and the last loss record of that phase."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    out: dict[str, float] = {}
    for phase in {r["phase"] for r in rows if r.get("type") == "step"}:
        recs = [r for r in rows if r.get("type") == "step" and r["phase"] == phase]
        if len(recs) >= 2:  # skip the first record when there are enough: it carries start-up (first kernels)
            a, b = recs[1 if len(recs) >= 3 else 0], recs[-1]
            out[phase] = (b["time"] - a["time"]) / max(1, b["step"] - a["step"])
    return out


def clamp(x: float, lo: int, hi: int) -> int:
    """``floor(x)`` within [lo, hi] (an unbounded estimate gives hi)."""
    return hi if x >= hi else int(max(lo, math.floor(x)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, required=True, help="seconds for the real runs")
    p.add_argument("--source", required=True)
    p.add_argument("--unet", type=Path, required=True)
    p.add_argument("--dcgan", type=Path, required=True)
    p.add_argument("--nogan", type=Path, required=True)
    args = p.parse_args()
    prepared = prepare_for({"source": args.source, "split": "hue", "val_fraction": 0.1, "seed": 0})
    spe = math.ceil(len(prepared.labels("train")) / BATCH)
    u, d, g = seconds_per_step(args.unet), seconds_per_step(args.dcgan), seconds_per_step(args.nogan)
    print(f"# seconds per step side by side: unet {u}, dcgan {d}, nogan {g}; {spe} steps per epoch", file=sys.stderr)
    usable = 0.85 * args.budget
    s_u, s_d = u["train"], d["train"]
    s_g, s_gan = g["generator"], g.get("gan", 2 * g["generator"])
    s_c = g.get("critic", s_gan / 2)
    unet = clamp(usable / (spe * s_u + VAL_S), 4, 40)
    dcgan = clamp(usable / (spe * s_d + VAL_S), 4, 40)
    t_classifier = CLASSIFIER_EPOCHS * (spe * s_u * 0.5 + VAL_S)  # a small convnet on RGB: cheaper than the U-Net
    t_later = 0.25 * spe * s_c + GAN_EPOCHS * spe * s_gan + GAN_CHECKPOINTS * VAL_S
    nogan = clamp((usable - t_classifier - t_later) / (spe * s_g + VAL_S), 3, 20)
    plan = {"UNET_EPOCHS": unet, "DCGAN_EPOCHS": dcgan, "NOGAN_EPOCHS": nogan, "GAN_EPOCHS": GAN_EPOCHS,
            "CLASSIFIER_EPOCHS": CLASSIFIER_EPOCHS}
    for k, v in plan.items():
        print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
