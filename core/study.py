"""The study's figures and tables, each made by one command.

    python -m core.study figure  --source SRC [--models A.pt B.pt ...] --out docs/comparison.png
    python -m core.study splits  --source SRC --runs runs/split-* [--json OUT] [--markdown OUT]
    python -m core.study inflection --run runs/ship-nogan --out docs/nogan_inflection.png [--chosen-step N]
    python -m core.study pick --run runs/ship-nogan [--phase gan]
    python -m core.study tradeoff --runs runs/ship-unet runs/ship-dcgan runs/ship-nogan --scale-run runs/ship-unet \
        --out docs/tradeoff.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.checkpoint import load_checkpoint
from core.cli import ArgumentParser, run_command
from core.colour import uint8_to_model
from core.figures import picture_grid, save_png
from core.runs import PROJECT_ROOT, RunDir

DEFAULT_MODELS = [PROJECT_ROOT / "checkpoints" / f"{m}.pt" for m in ("unet", "dcgan", "nogan")]


def fixed_test_indices(labels: np.ndarray, per_class: int = 1, offset: int = 0) -> np.ndarray:
    """The first ``per_class`` test images of every class (after ``offset`` of each): a fixed, balanced set."""
    out = []
    for c in np.unique(labels[labels >= 0]):
        out.extend(np.flatnonzero(labels == c)[offset : offset + per_class].tolist())
    return np.asarray(sorted(out), dtype=np.int64)


def comparison_figure(source: str, models: list[str | Path], per_class: int = 1, scale: int = 4) -> np.ndarray:
    """Rows of gray | each model | truth for a fixed, class-balanced set of test images."""
    from core.data import prepare
    from core.inference import load_colorizer

    prepared = prepare(source, progress=False)
    images, labels = prepared.images("test"), prepared.labels("test")
    idx = fixed_test_indices(labels, per_class)
    L, ab = uint8_to_model(images[idx])
    predictions: list[tuple[str, torch.Tensor]] = []
    for spec in models:
        colorizer = load_colorizer(spec)
        taken = ["gray", *(t for t, _ in predictions)]
        title = colorizer.method if colorizer.method not in taken else colorizer.name
        predictions.append((title, colorizer.predict(L)))
    return picture_grid(L, predictions, ab, scale=scale)


def split_study(source: str, runs: list[str | Path], parts: tuple[str, ...] = ("val", "test")) -> pd.DataFrame:
    """Metrics of each split-study run on its own validation part and the common test part, with the KS statistic."""
    from core.data import prepare_for
    from core.evaluate import evaluate
    from core.inference import load_colorizer

    rows = []
    for spec in runs:
        run = RunDir(Path(spec))
        cfg = json.loads(run.config.read_text())
        prepared = prepare_for(cfg, source)
        colorizer = load_colorizer(run.path)
        row = {"run": run.id, "split": cfg["split"], "seed": cfg["seed"], "ks_hue": prepared.summary()["ks_hue"],
               "epochs": cfg["epochs"], "limit": cfg["limit"], "width": cfg["width"]}
        for part in parts:
            m = evaluate(colorizer, prepared, part=part, ssim=False).metrics
            row |= {f"{part}_{k}": m[k] for k in ("auc_ab", "mae_rgb", "psnr", "colorfulness_ratio")}
        rows.append(row)
    return pd.DataFrame(rows)


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation across seeds, per split kind."""
    numeric = [c for c in table.columns if c not in ("run", "split", "seed", "epochs", "limit", "width")]
    return table.groupby("split")[numeric].agg(["mean", "std"])


def validation_tensors(run_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-space (L, ab) of the validation images a run validated on (same split, same draw)."""
    from core.config import TrainConfig
    from core.data import prepare_for
    from core.feed import run_subsets

    cfg = TrainConfig.load(RunDir(Path(run_dir)).config)
    prepared = prepare_for(cfg)
    _, val_idx = run_subsets(cfg, prepared)
    return uint8_to_model(prepared.images("val")[val_idx])


def validation_gray_metrics(run_dir: str | Path) -> dict[str, float]:
    """The gray baseline's metrics on the validation images a run validated on."""
    from core.metrics import compute_metrics

    L, ab = validation_tensors(run_dir)
    return compute_metrics(L, torch.zeros_like(ab), ab)


def paired_gain(model: np.ndarray, baseline: np.ndarray, higher_is_better: bool = True) -> tuple[float, float]:
    """Mean per-image gain of a model over a baseline on the same images, and its standard error."""
    d = np.asarray(model, np.float64) - np.asarray(baseline, np.float64)
    d = d if higher_is_better else -d
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def pick_checkpoint(run_dir: str | Path, z: float = 2.0, phase: str | None = None,
                    device: str = "cpu", min_ratio: float | None = None) -> dict | None:
    """A run's inflection point as a rule: of the generators it kept in ``phase`` (default: ``gan`` when the run
    has a GAN phase, else ``train``), the most colourful one that is still clearly better than the gray baseline
    on the run's validation images: its per-image gains over gray in auc_ab and in mae_rgb both exceed ``z``
    standard errors. With ``min_ratio``, the most accurate (lowest mae_rgb) of those that pass and are at least
    that colourful instead (the most colourful passing one when none is). None when no kept generator passes.
    ``device`` runs the generators there (cuda: seconds). Returns its validation metrics with ``step``, ``path``
    and the two gains (mean, standard error)."""
    from core.inference import load_colorizer
    from core.metrics import aggregate, per_image_metrics

    run = RunDir(Path(run_dir))
    if phase is None:
        phase = "gan" if (run.checkpoints / "gan").is_dir() else "train"
    kept = sorted((run.checkpoints / phase).glob("step_*.pt"))
    if not kept:
        raise ValueError(f"{run.path} keeps no generators of phase {phase!r} (checkpoints/{phase}/step_*.pt)")
    L, ab = validation_tensors(run.path)
    gray = per_image_metrics(L, torch.zeros_like(ab), ab, ssim=False)
    passing = []
    for path in kept:
        per = per_image_metrics(L, load_colorizer(path, device=device).predict(L), ab, ssim=False)
        auc, mae = paired_gain(per["auc_ab"], gray["auc_ab"]), paired_gain(per["mae_rgb"], gray["mae_rgb"], False)
        if auc[0] > z * auc[1] and mae[0] > z * mae[1]:
            passing.append(aggregate(per) | {"step": int(path.stem.split("_")[1]), "path": str(path),
                                             "auc_ab_gain": auc, "mae_rgb_gain": mae})
    colourful = [r for r in passing if min_ratio is not None and r["colorfulness_ratio"] >= min_ratio]
    if colourful:
        return min(colourful, key=lambda r: r["mae_rgb"])
    return max(passing, key=lambda r: r["colorfulness_ratio"]) if passing else None


def inflection_plot(run_dir: str | Path, out: str | Path, gray: dict[str, float] | None = None,
                    chosen_step: int | None = None) -> dict:
    """Validation colorfulness ratio and auc_ab over NoGAN's GAN phase, with the chosen checkpoint marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir(Path(run_dir))
    vals = [r for r in run.metrics() if r.get("type") == "val"]
    gan = [r for r in vals if r.get("phase") == "gan"]
    if not gan:
        raise ValueError(f"{run.path} has no validation records of a GAN phase; is it a finished NoGAN run?")
    # the generator the GAN phase starts from: the end of phase 1, or (a run started with --init) the critic phase's
    before = ([r for r in vals if r["phase"] == "generator"] or [r for r in vals if r["phase"] == "critic"])[-1:]
    records = before + gan
    status = run.status()  # best.pt's step; a run packed without best.pt still records it in its status
    score_step = int(status["best_step"]) if "best_step" in status else int(load_checkpoint(run.best)["step"])
    best_step = score_step if chosen_step is None else int(chosen_step)
    steps = [r["step"] for r in records]
    fig, ax1 = plt.subplots(figsize=(7, 3.6), dpi=120)
    ax1.plot(steps, [r["auc_ab"] for r in records], "o-", color="#1f77b4", label="auc_ab")
    ax1.set_xlabel("training step (first point: the generator before the GAN phase)")
    ax1.set_ylabel("validation auc_ab", color="#1f77b4")
    ax2 = ax1.twinx()
    ax2.plot(steps, [r["colorfulness_ratio"] for r in records], "s--", color="#d9480f", label="colorfulness ratio")
    ax2.set_ylabel("validation colorfulness ratio", color="#d9480f")
    if gray is not None:
        ax1.axhline(gray["auc_ab"], color="#1f77b4", linestyle=":", linewidth=1, label="gray baseline auc_ab")
    ax1.axvline(best_step, color="black", linestyle=":")
    # labels lean away from each other, so that two close steps keep both readable
    chosen_side, best_side = ("right", "left") if best_step <= score_step else ("left", "right")
    ax1.annotate("chosen" if best_step != score_step else "chosen (best.pt)", (best_step, ax1.get_ylim()[1]),
                 ha=chosen_side if best_step != score_step else "center", va="bottom", fontsize=8)
    if best_step != score_step:
        ax1.axvline(score_step, color="gray", linestyle=":")
        ax1.annotate("best.pt (highest score)", (score_step, ax1.get_ylim()[1]), ha=best_side, va="bottom",
                     fontsize=8)
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles=handles, loc="center right", fontsize=7)
    ax1.set_title("NoGAN: validation over the GAN phase", pad=16)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return {"steps": steps, "auc_ab": [r["auc_ab"] for r in records], "mae_rgb": [r["mae_rgb"] for r in records],
            "colorfulness_ratio": [r["colorfulness_ratio"] for r in records], "chosen_step": best_step,
            "best_pt_step": score_step, "gray": gray}


VALIDATION_KEYS = ("source", "split", "val_fraction", "seed", "gray_threshold", "val_limit")


def saturation_curve(generator: str | Path, L: torch.Tensor, ab: torch.Tensor,
                     scales: tuple[float, ...] = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)) -> pd.DataFrame:
    """A generator's validation metrics with its a,b multiplied by each scale: how much colour its own predictions
    can take before they lose to the gray baseline (a reference line for the GANs, not a model)."""
    from core.inference import load_colorizer
    from core.metrics import compute_metrics

    pred = load_colorizer(generator).predict(L)
    rows = [{"scale": s} | compute_metrics(L, pred * s, ab) for s in scales]
    return pd.DataFrame(rows)[["scale", "mae_rgb", "auc_ab", "colorfulness_ratio"]]


def tradeoff_plot(runs: list[str | Path], out: str | Path, scale_run: str | Path | None = None) -> dict:
    """mae_rgb against colorfulness ratio of every validation of the given runs (same validation images), with the
    gray baseline and, from ``scale_run``'s best.pt, the saturation curve; returns the plotted numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.metrics import compute_metrics

    dirs = [RunDir(Path(r)) for r in runs]
    configs = {d.path.name: json.loads(d.config.read_text()) for d in dirs}
    first = next(iter(configs.values()))
    for name, cfg in configs.items():
        diff = [k for k in VALIDATION_KEYS if cfg.get(k) != first.get(k)]
        if diff:
            raise ValueError(f"run {name} validates on other images than {dirs[0].path.name} (differs in {diff})")
    L, ab = validation_tensors(dirs[0].path)
    gray = compute_metrics(L, torch.zeros_like(ab), ab)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    series: dict = {}
    for d in dirs:
        vals = [r for r in d.metrics() if r.get("type") == "val" and r.get("phase") != "critic"]
        series[d.path.name] = [{k: r[k] for k in ("step", "phase", "mae_rgb", "auc_ab", "colorfulness_ratio")}
                               for r in vals]
        ax.plot([r["colorfulness_ratio"] for r in vals], [r["mae_rgb"] for r in vals], "o-", markersize=3,
                linewidth=1, label=f"{d.path.name} ({configs[d.path.name]['model']}, each validation)")
    curve = None
    if scale_run is not None:
        run = RunDir(Path(scale_run))
        generator = run.best if run.best.is_file() else run.last
        curve = saturation_curve(generator, L, ab)
        ax.plot(curve["colorfulness_ratio"], curve["mae_rgb"], "k--", linewidth=1,
                label=f"{run.path.name} {generator.name} with a,b x {curve['scale'].min():g}..{curve['scale'].max():g}")
    ax.axhline(gray["mae_rgb"], color="gray", linestyle=":", label="gray baseline")
    ax.axvline(0.8, color="#d9480f", linestyle=":", linewidth=1, label="colorfulness ratio 0.8")
    ax.set_xlabel("validation colorfulness ratio (1 = as colourful as the truth)")
    ax.set_ylabel("validation mae_rgb (lower is better)")
    ax.set_title("Colour against accuracy on the validation images")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return {"gray": {k: gray[k] for k in ("mae_rgb", "auc_ab")}, "runs": series,
            "saturation_curve": None if curve is None else curve.to_dict(orient="records")}


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m core.study", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("figure", help="gray | models | truth for fixed test images, as a PNG")
    f.add_argument("--source", required=True)
    f.add_argument("--models", nargs="+", default=[str(m) for m in DEFAULT_MODELS])
    f.add_argument("--per-class", type=int, default=1)
    f.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("splits", help="the random vs hue split study, from its runs")
    s.add_argument("--source", required=True)
    s.add_argument("--runs", nargs="+", required=True)
    s.add_argument("--json", type=Path)
    s.add_argument("--markdown", type=Path)
    i = sub.add_parser("inflection", help="NoGAN's GAN phase: validation curves with the chosen checkpoint")
    i.add_argument("--run", required=True)
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--no-baseline", action="store_true", help="leave out the gray baseline's line (no data needed)")
    i.add_argument("--chosen-step", type=int, help="mark this step as the chosen one (default: best.pt's)")
    k = sub.add_parser("pick", help="the most colourful kept checkpoint of a run still clearly better than gray")
    k.add_argument("--run", required=True)
    k.add_argument("--phase", help="the phase whose kept generators compete (default: gan if any, else train)")
    k.add_argument("--z", type=float, default=2.0, help="how many standard errors the gains over gray must exceed")
    k.add_argument("--device", default="cpu", help="device for the generators (cpu, cuda)")
    k.add_argument("--min-ratio", type=float, help="pick the lowest validation mae_rgb among the passing generators "
                   "with at least this colorfulness ratio (default: the most colourful passing one)")
    t = sub.add_parser("tradeoff", help="mae_rgb against colorfulness ratio over runs' validations, as a PNG")
    t.add_argument("--runs", nargs="+", required=True)
    t.add_argument("--scale-run", help="also draw this run's best.pt with its a,b scaled up")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    return run_command(lambda: _run(args), bad_input=(ValueError,))


def _run(args: argparse.Namespace) -> int:
    if args.command == "figure":
        save_png(comparison_figure(args.source, args.models, args.per_class), args.out)
        print(f"wrote {args.out}")
    elif args.command == "splits":
        table = split_study(args.source, args.runs)
        summary = split_summary(table)
        with pd.option_context("display.width", 200, "display.max_columns", 40):
            print(table.to_string(index=False, float_format="%.3f"))
            print(summary.to_string(float_format="%.3f"))
        if args.json:
            args.json.write_text(json.dumps({"runs": table.to_dict(orient="records"),
                                             "summary": json.loads(summary.to_json())}, indent=1))
        if args.markdown:
            args.markdown.write_text(table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate()
                                     else table.to_string(index=False, float_format="%.3f"))
    elif args.command == "inflection":
        gray = None if args.no_baseline else validation_gray_metrics(args.run)
        info = inflection_plot(args.run, args.out, gray, args.chosen_step)
        print(json.dumps(info))
    elif args.command == "tradeoff":
        info = tradeoff_plot(args.runs, args.out, args.scale_run)
        if args.json:
            args.json.write_text(json.dumps(info, indent=1, default=float))
        print(f"wrote {args.out}")
    elif args.command == "pick":
        pick = pick_checkpoint(args.run, args.z, args.phase, args.device, args.min_ratio)
        print(json.dumps(pick))
        if pick is None:
            print("no kept generator of the run is clearly better than gray on validation", file=sys.stderr)
            return 1
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
