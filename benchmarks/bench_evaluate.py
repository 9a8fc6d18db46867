"""Time inference and evaluation on the test images: the shipped models in fp32 and in the chosen precision, and
the metrics against the plain per-image way.

``python benchmarks/bench_evaluate.py [--source ARCHIVE] [--models FILE...] [--rounds R] [--checkpoint FILE]
[--limit N] [--plain-limit N] [--batch-size B] [--threads T] [--no-metrics] [--json OUT]``

Measured, on the same images:

1. inference: the test images (the CIFAR-10 archive's 10,000 when present, else the bundled sample) converted
   to Lab once, then through every model of ``--models`` (the shipped U-Net, DCGAN and NoGAN), as
   ``core.evaluate`` runs them (worker threads on pieces, channels-last, ``torch.inference_mode``), in fp32 and
   in the precision ``auto`` chooses (its one-off measurement included), alternating; with the largest and
   mean difference of the predictions and of auc_ab / mae_rgb between the two. Target: conversion plus the
   three models under 15 s in the chosen precision;
2. ``core.evaluate.evaluate`` of every model end to end (one shared Lab conversion, forward pass, metrics);
3. the metrics alone, vectorised (``core.metrics.per_image_metrics``), with and without SSIM;
4. the plain way, one image at a time: skimage ``lab2rgb`` and ``structural_similarity``, numpy for the rest
   (on ``--plain-limit`` images, scaled to the full count when fewer), and its largest disagreement with 3.

Sections 3 and 4 score ``--checkpoint`` (default: an untrained width-32 U-Net, which costs the same to run).
The data loading (decoding or reading the cache) is timed apart and is not part of any figure.
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

from core.colour import AB_SCALE, L_SCALE, uint8_to_model
from core.evaluate import evaluate, model_space, predictions
from core.metrics import AB_TOLERANCE, METRICS, PSNR_CAP, aggregate, per_image_metrics
from core.precision import cpu_has_fast_bf16, forget_inference_measurements, inference_figures

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SHIPPED = [ROOT / "checkpoints" / f"{name}.pt" for name in ("unet", "dcgan", "nogan")]
INFERENCE_TARGET_S = 15.0


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


def inference(models: list[str], prepared: object, n: int, rounds: int) -> dict:
    """Section 1: Lab once, then every model in fp32 and in the chosen precision, alternating; figures."""
    from core.inference import load_colorizer

    t0 = time.perf_counter()
    converted = model_space(prepared, "test", None if n == len(prepared.images("test")) else n)
    assert converted is not None
    L, ab = converted
    convert_s = time.perf_counter() - t0
    forget_inference_measurements()  # the chosen pass pays for its own measurement, as a fresh process does
    runs = {"fp32": {m: load_colorizer(m, precision="fp32") for m in models},
            "auto": {m: load_colorizer(m, precision="auto") for m in models}}
    seconds: dict[str, dict[str, list[float]]] = {k: {m: [] for m in models} for k in runs}
    cpu: dict[str, float] = {k: 0.0 for k in runs}
    wall: dict[str, float] = {k: 0.0 for k in runs}
    preds: dict[str, dict[str, torch.Tensor]] = {k: {} for k in runs}
    chosen: dict[str, set[str]] = {m: set() for m in models}
    for r in range(rounds):
        for kind in ("fp32", "auto") if r % 2 == 0 else ("auto", "fp32"):
            c = time.process_time()
            for m in models:
                t = time.perf_counter()
                preds[kind][m] = predictions(runs[kind][m], L, chosen[m] if kind == "auto" else None)
                seconds[kind][m].append(time.perf_counter() - t)
                wall[kind] += seconds[kind][m][-1]
            cpu[kind] += time.process_time() - c
    rows = []
    for m in models:
        a, b = preds["fp32"][m], preds["auto"][m]
        diff = (b - a).abs() * AB_SCALE
        ma, mb = aggregate(per_image_metrics(L, a, ab, ssim=False)), aggregate(per_image_metrics(L, b, ab, ssim=False))
        rows.append({"model": Path(m).stem, "fp32_s": float(np.median(seconds["fp32"][m])),
                     "chosen_s": float(np.median(seconds["auto"][m])), "chosen_first_s": seconds["auto"][m][0],
                     "chosen": "+".join(sorted(chosen[m])),
                     "mean_abs_diff_ab": float(diff.mean()), "max_abs_diff_ab": float(diff.max()),
                     "auc_ab_fp32": ma["auc_ab"], "auc_ab_chosen": mb["auc_ab"],
                     "mae_rgb_fp32": ma["mae_rgb"], "mae_rgb_chosen": mb["mae_rgb"]})
    workers = torch.get_num_threads()
    share = {k: cpu[k] / (wall[k] * workers) for k in runs}
    return {"n_images": len(L), "convert_s": convert_s, "rows": rows, "measurements": inference_figures(),
            "workers": workers, "cpu_share": share, "cpu_s_per_round": {k: cpu[k] / rounds for k in runs},
            "total_fp32_s": convert_s + sum(r["fp32_s"] for r in rows),
            "total_chosen_s": convert_s + sum(r["chosen_s"] for r in rows),
            "total_chosen_first_s": convert_s + sum(r["chosen_first_s"] for r in rows)}


def print_inference(fig: dict, rounds: int) -> None:
    """Section 1 as a table, then the totals against the target."""
    print(f"\ninference: {fig['n_images']} test images, Lab conversion once {fig['convert_s']:.2f} s, shared by "
          f"every model; median of {rounds} alternating round(s)")
    print(f"{'model':8s} {'fp32 s':>7s} {'chosen':>6s} {'s':>6s} {'speed-up':>8s} {'mean |dab|':>10s} "
          f"{'max |dab|':>9s} {'auc_ab fp32':>11s} {'chosen':>7s} {'mae_rgb fp32':>12s} {'chosen':>7s}")
    for r in fig["rows"]:
        print(f"{r['model']:8s} {r['fp32_s']:7.2f} {r['chosen']:>6s} {r['chosen_s']:6.2f} "
              f"{r['fp32_s'] / r['chosen_s']:7.2f}x {r['mean_abs_diff_ab']:10.3f} {r['max_abs_diff_ab']:9.3f} "
              f"{r['auc_ab_fp32']:11.3f} {r['auc_ab_chosen']:7.3f} {r['mae_rgb_fp32']:12.3f} "
              f"{r['mae_rgb_chosen']:7.3f}")
    for f in fig["measurements"]:
        print(f"  measured once: {f['network']} ({f['parameters']:,} parameters) on {f['input']} inputs, "
              f"{f['threads']} thread(s): fp32 {f.get('fp32_images_per_s') or 0:.0f}, bf16 "
              f"{f.get('bf16_images_per_s') or 0:.0f} images/s -> {f['choice']}")
    ok = fig["total_chosen_s"] < INFERENCE_TARGET_S
    print(f"total (conversion + {len(fig['rows'])} models): fp32 {fig['total_fp32_s']:.2f} s, chosen "
          f"{fig['total_chosen_s']:.2f} s (first pass, with the measurement: {fig['total_chosen_first_s']:.2f} s); "
          f"target < {INFERENCE_TARGET_S:.0f} s: {'met' if ok else 'NOT met'}")
    share = fig["cpu_share"]
    print(f"CPU share of the process over its {fig['workers']} worker thread(s): fp32 {100 * share['fp32']:.0f}%, "
          f"chosen {100 * share['auto']:.0f}% (below 100%: other processes had the cores); process CPU time of a "
          f"pass of the {len(fig['rows'])} models: fp32 {fig['cpu_s_per_round']['fp32']:.1f} s, chosen "
          f"{fig['cpu_s_per_round']['auto']:.1f} s, that is {fig['cpu_s_per_round']['auto'] / fig['workers']:.1f} s "
          f"of wall time on {fig['workers']} cores of its own")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(DEFAULT_SOURCE) if DEFAULT_SOURCE.is_file() else "sample",
                   help="test images (default: the CIFAR-10 archive when present, else the bundled sample)")
    p.add_argument("--models", nargs="+", default=[str(m) for m in SHIPPED],
                   help="checkpoints of the inference section (default: the shipped U-Net, DCGAN, NoGAN)")
    p.add_argument("--rounds", type=int, default=2, help="alternating fp32/chosen rounds of the inference section")
    p.add_argument("--no-metrics", dest="metrics", action="store_false",
                   help="only the inference section and the end-to-end evaluations")
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
    print(f"{n} test images of {args.source}; torch threads {torch.get_num_threads()}; CPU bf16 instructions "
          f"(amx_bf16/avx512_bf16): {'yes' if cpu_has_fast_bf16() else 'no'}; data loaded in {t_data:.1f} s (not "
          f"counted below); load average {load:.2f} on {os.cpu_count()} CPUs")

    # 1. inference: Lab once, every model in fp32 and in the chosen precision
    fig["inference"] = inference(args.models, prepared, n, max(1, args.rounds))
    print_inference(fig["inference"], max(1, args.rounds))

    # 2. every model end to end, sharing one conversion
    from core.inference import load_colorizer

    ends = {}
    t0 = time.perf_counter()
    for m in args.models:
        r = evaluate(load_colorizer(m), prepared, "test", limit=n, batch_size=args.batch_size)
        ends[Path(m).stem] = r.timing | {"precision": r.info.get("precision")}
    total = time.perf_counter() - t0
    fig["evaluate_models"] = ends | {"total_s": total}
    print(f"\nevaluate() end to end, {len(args.models)} models, one shared Lab conversion: {total:.2f} s ("
          + ", ".join(f"{k} {v['total_s']:.2f} s: forward {v['forward_s']:.2f} s in {v['precision']}, metrics "
                      f"{v['metrics_s']:.2f} s" for k, v in ends.items()) + ")")
    fig["load_average_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if not args.metrics:
        print(f"load average after: {fig['load_average_after']:.2f}")
        if args.json:
            args.json.write_text(json.dumps(fig, indent=1))
        return 0
    print(f"\nmetrics sections: model {model.name}")

    # 3. the library's evaluation of --checkpoint, end to end
    c0 = time.process_time()
    result = evaluate(model, prepared, "test", limit=n, batch_size=args.batch_size, keep_predictions=True)
    t = result.timing | {"cpu_s": time.process_time() - c0}
    fig["evaluate"] = t
    print(f"evaluate()              {t['total_s']:7.2f} s  (Lab conversion {t['convert_s']:.2f} s, "
          f"forward {t['forward_s']:.2f} s, metrics {t['metrics_s']:.2f} s; {t['images_per_s']:.0f} images/s; "
          f"process CPU time {t['cpu_s']:.1f} s)")

    # vectorised metrics alone, on the same predictions
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

    # 4. the plain per-image way
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
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
