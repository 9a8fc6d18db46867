"""Data preparation speed: decode, Lab conversion, colour statistics and split of the full CIFAR-10 archive, cold
and cached, against per-image skimage statistics (the plain way) measured in the same run.

    python benchmarks/bench_data.py [--source ARCHIVE] [--baseline-images N] [--json OUT]

Targets on a 2-core machine: cold preparation (decode included) under 15 s, cached reload under 1 s,
statistics at least 5x faster than the per-image skimage baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.colour import image_stats, uint8_to_model
from core.data import prepare
from core.sources import load_dataset
from core.splits import make_split

ROOT = Path(__file__).resolve().parents[1]


def skimage_stats(images: np.ndarray, gray_threshold: float = 5.0) -> dict[str, np.ndarray]:
    """The same per-image statistics computed the plain way: skimage.color per image, numpy reductions."""
    from skimage import color

    hue_c, hue_a, chroma_mean, gray = [], [], [], []
    for img in images:
        hsv = color.rgb2hsv(img)
        lab = color.rgb2lab(img)
        h, s = hsv[..., 0], hsv[..., 1]
        ang = 2 * np.pi * h
        hue_c.append((np.arctan2((s * np.sin(ang)).sum(), (s * np.cos(ang)).sum()) / (2 * np.pi)) % 1.0)
        hue_a.append(h.mean())
        chroma_mean.append(np.hypot(lab[..., 1], lab[..., 2]).mean())
        gray.append(np.abs(lab[..., 1:]).max() <= gray_threshold)
    return {"hue_circular": np.array(hue_c), "hue_arithmetic": np.array(hue_a),
            "chroma_mean": np.array(chroma_mean), "is_grayscale": np.array(gray)}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    p.add_argument("--baseline-images", type=int, default=10_000,
                   help="images for the per-image skimage baseline (its rate is scaled to the whole set)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if not Path(args.source).exists():
        print(f"error: {args.source} not found; pass --source with the CIFAR-10 archive", file=sys.stderr)
        return 2
    figures: dict[str, float] = {}
    # cold preparation as the tools run it, first in this process (nothing decoded, no optional module loaded):
    # decode + statistics + split, starting from an empty cache; then the cached reload
    with tempfile.TemporaryDirectory() as cold:
        _, figures["cold_prepare_s"] = timed(prepare, args.source, "hue", cache_dir=cold, progress=False)
        _, figures["cached_reload_s"] = timed(prepare, args.source, "hue", cache_dir=cold, progress=False)
    with tempfile.TemporaryDirectory() as cache:
        ds, figures["decode_s"] = timed(load_dataset, args.source, cache_dir=cache, progress=False)
        images = np.concatenate([part.images for part in ds.parts.values()])
        n = len(images)
        _, figures["lab_conversion_s"] = timed(uint8_to_model, images)
        stats, figures["statistics_s"] = timed(lambda: {k: image_stats(v.images) for k, v in ds.parts.items()})
        train_stats = stats["train"]
        for kind in ("random", "hue"):
            _, figures[f"split_{kind}_s"] = timed(make_split, train_stats["hue_circular"],
                                                  train_stats["is_grayscale"], len(ds.parts["test"].images), kind)
    m = min(args.baseline_images, n)
    ref, t_ref = timed(skimage_stats, images[:m])
    figures["skimage_statistics_s"] = t_ref * n / m
    ours = image_stats(images[:m])
    agree = {k: float(np.abs(ours[k] - ref[k]).max()) for k in ("hue_arithmetic", "chroma_mean")}
    circ = np.abs(ours["hue_circular"] - ref["hue_circular"])
    agree["hue_circular"] = float(np.minimum(circ, 1 - circ).max())
    agree["is_grayscale_mismatches"] = int((ours["is_grayscale"] != ref["is_grayscale"]).sum())
    speedup = figures["skimage_statistics_s"] / figures["statistics_s"]
    print(f"{n} images from {args.source}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    print(f"{'step':34s} {'seconds':>9s}")
    for k, v in figures.items():
        print(f"{k:34s} {v:9.2f}")
    print(f"statistics speed-up vs per-image skimage: {speedup:.1f}x (target >= 5x; baseline measured on {m} images)")
    print(f"cold preparation {figures['cold_prepare_s']:.2f} s (target < 15 s), "
          f"cached reload {figures['cached_reload_s']:.2f} s (target < 1 s)")
    print(f"agreement with skimage (max abs diff): {agree}")
    if args.json:
        args.json.write_text(json.dumps({"n_images": n, "figures": figures, "speedup": speedup,
                                         "agreement": agree, "load_average": os.getloadavg()[0]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
