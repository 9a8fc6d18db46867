"""Time the evaluation of a width-32 U-Net on the test images, against the plain per-image way.

``python benchmarks/bench_evaluate.py [--source ARCHIVE] [--checkpoint FILE] [--limit N] [--plain-limit N]
[--batch-size B] [--threads T] [--json OUT]``

Measured, on the same images and predictions:

1. ``core.evaluate.evaluate`` end to end (Lab conversion, forward pass, metrics), with its own breakdown;
2. the metrics alone, vectorised (``core.metrics.per_image_metrics``), with and without SSIM;
3. the plain way, one image at a time: skimage ``lab2rgb`` and ``structural_similarity``, numpy for the rest
   (on ``--plain-limit`` images, scaled to the full count when fewer), and its largest disagreement with 2.

Without ``--checkpoint`` the network has untrained (initial) weights, which costs the same to run.
The data loading (decoding or reading the cache) is timed apart and is not part of the evaluation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.colour import AB_SCALE, L_SCALE, uint8_to_model  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.metrics import AB_TOLERANCE, METRICS, PSNR_CAP, aggregate, per_image_metrics  # noqa: E402

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def plain_metrics(L: np.ndarray, ab_pred: np.ndarray, ab_true: np.ndarray) -> dict[str, float]:
    """Every metric of one image the straightforward way: skimage colour conversion and SSIM, numpy for the rest.

    Arrays are model space, channel-first: L (1, H, W), ab (2, H, W).
    """
    from skimage.color import lab2rgb
    from skimage.metrics import structural_similarity

    lab_l = (L[0].astype(np.float64) + 1.0) * L_SCALE
    pred = lab2rgb(np.dstack([lab_l, ab_pred[0] * AB_SCALE, ab_pred[1] * AB_SCALE]))
    true = lab2rgb(np.dstack([lab_l, ab_true[0] * AB_SCALE, ab_true[1] * AB_SCALE]))
    mse = np.mean((pred - true) ** 2)
    err = np.sqrt(((ab_pred.astype(np.float64) - ab_true) ** 2).sum(axis=0)) * AB_SCALE

    def colorfulness(rgb: np.ndarray) -> float:
        r, g, b = rgb[..., 0] * 255, rgb[..., 1] * 255, rgb[..., 2] * 255
        rg, yb = r - g, 0.5 * (r + g) - b
        return math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)

    return {
        "psnr": min(PSNR_CAP, 10 * math.log10(1.0 / mse)) if mse > 0 else PSNR_CAP,
        "ssim": structural_similarity(pred, true, channel_axis=-1, data_range=1.0),
        "mae_rgb": float(np.abs(pred - true).mean() * 255),
        "auc_ab": float(np.mean([(err <= t + AB_TOLERANCE).mean() for t in range(151)]) * 100),
        "acc_ab_2": float((err <= 2 + AB_TOLERANCE).mean() * 100),
        "acc_ab_5": float((err <= 5 + AB_TOLERANCE).mean() * 100),
        "acc_ab_10": float((err <= 10 + AB_TOLERANCE).mean() * 100),
        "colorfulness": colorfulness(pred),
        "colorfulness_gt": colorfulness(true),
    }


def _model(checkpoint: str | None) -> object:
    from core.inference import Colorizer, load_colorizer
    from core.networks import UNet

    if checkpoint:
        return load_colorizer(checkpoint)
    torch.manual_seed(0)
    return Colorizer("unet-w32-untrained", "unet", UNet(width=32).eval(), "", {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(DEFAULT_SOURCE))
    p.add_argument("--checkpoint", help="a checkpoint file or run directory (default: untrained width-32 U-Net)")
    p.add_argument("--limit", type=int, help="first N test images (default: all)")
    p.add_argument("--plain-limit", type=int, help="images for the plain per-image way (default: all)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from core.data import prepare

    t0 = time.perf_counter()
    prepared = prepare(args.source, "random", 0.1, 0, progress=False)
    t_data = time.perf_counter() - t0
    model = _model(args.checkpoint)
    n = len(prepared.images("test")) if args.limit is None else min(args.limit, len(prepared.images("test")))
    fig: dict[str, object] = {"source": args.source, "n_images": n, "model": model.name,
                              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                              "data_load_s": t_data}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    fig["load_average_1min"] = load
    print(f"{n} test images of {args.source}; model {model.name}; torch threads {torch.get_num_threads()}; "
          f"data loaded in {t_data:.1f} s (not counted below); load average {load:.1f} on {os.cpu_count()} CPUs")

    # 1. the library's evaluation, end to end
    c0 = time.process_time()
    result = evaluate(model, prepared, "test", limit=n, batch_size=args.batch_size, keep_predictions=True)
    t = result.timing | {"cpu_s": time.process_time() - c0}
    fig["evaluate"] = t
    print(f"evaluate()              {t['total_s']:7.2f} s  (Lab conversion {t['convert_s']:.2f} s, "
          f"forward {t['forward_s']:.2f} s, metrics {t['metrics_s']:.2f} s; {t['images_per_s']:.0f} images/s; "
          f"process CPU time {t['cpu_s']:.1f} s)")

    # 2. vectorised metrics alone, on the same predictions
    L, ab = uint8_to_model(prepared.images("test")[:n])
    pred = result.predictions
    assert pred is not None
    timings, cpu = {}, {}
    for ssim in (False, True):  # SSIM last: ``per`` keeps every metric
        t1, c1 = time.perf_counter(), time.process_time()
        per = per_image_metrics(L, pred, ab, ssim=ssim)
        timings[ssim], cpu[ssim] = time.perf_counter() - t1, time.process_time() - c1
    fig |= {"metrics_s": timings[True], "metrics_no_ssim_s": timings[False], "metrics_cpu_s": cpu[True]}
    print(f"metrics, vectorised     {timings[True]:7.2f} s  ({timings[False]:.2f} s without SSIM; "
          f"process CPU time {cpu[True]:.1f} s)")

    # 3. the plain per-image way
    m = n if args.plain_limit is None else min(args.plain_limit, n)
    Ln, pn, an = L[:m].numpy(), pred[:m].numpy(), ab[:m].numpy()
    t1, c1 = time.perf_counter(), time.process_time()
    rows = [plain_metrics(Ln[i], pn[i], an[i]) for i in range(m)]
    t_plain, c_plain = time.perf_counter() - t1, time.process_time() - c1
    t_plain_full = t_plain * n / m
    plain = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    diff = {k: float(np.max(np.abs(plain[k] - per[k][:m]))) for k in plain}
    fig |= {"plain_images": m, "plain_s": t_plain, "plain_cpu_s": c_plain, "plain_s_scaled": t_plain_full,
            "max_abs_diff": diff}
    scaled = "" if m == n else f" on {m} images; {t_plain_full:.1f} s scaled to {n}"
    print(f"metrics, per image      {t_plain:7.2f} s{scaled}  (skimage lab2rgb + SSIM, numpy; "
          f"process CPU time {c_plain:.1f} s)")
    print(f"speed-up of metrics     {t_plain_full / timings[True]:7.1f} x")
    print("largest per-image difference, vectorised vs plain: "
          + ", ".join(f"{k} {v:.2g}" for k, v in diff.items()))
    overall = aggregate(per)
    fig["metrics"] = overall
    print("metrics: " + ", ".join(f"{k} {overall[k]:.4g}" for k in METRICS))
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
