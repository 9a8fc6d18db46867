"""Ship a trained run: a weights-only checkpoint (optionally half precision) and a model card beside it.

``python -m core.export --run runs/ship-unet --name unet --source ../shared/data/cifar10-jpeg.tar.gz``
writes ``checkpoints/unet.pt`` and ``checkpoints/unet.json``; the card's metrics are measured on the file that
ships (after the half-precision round trip), on the whole test part, next to the gray and mean_ab baselines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from core.access import check_name
from core.atomic import atomic_write_text
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, weights_payload
from core.cli import ArgumentParser, run_command
from core.metrics import SELECTIONS
from core.runs import PROJECT_ROOT, RunDir, machine_description, train_command

SHIPPED_DIR = PROJECT_ROOT / "checkpoints"
MAX_FILE_MB = 20.0


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _command(config: dict, out: str) -> str:
    """The command that trains a run with this saved configuration (``python -m core.train`` parses it back to
    the same settings; a run of several processes starts under torchrun)."""
    args = dict(config)
    for on_by_default in ("flip", "channels_last"):  # spelt as nothing when on, and --no-X when off
        if on_by_default in args:
            args["no_" + on_by_default] = not args.pop(on_by_default)
    args["processes"] = args.pop("world_size", 1)  # recorded by the run, not a setting: how many processes trained
    args["out"] = out
    cmd = train_command(args, python="python")
    return " ".join(cmd)


def init_provenance(path: str | Path) -> dict:
    """Where a run's starting generator (``--init``) came from: the file, its step and phase, and the command and
    wall time of the run that trained it, so that a card covers the whole chain of training."""
    path = Path(path)
    info: dict = {"checkpoint": str(path)}
    if not path.is_file():
        return info | {"missing": True}
    ckpt = load_checkpoint(path)
    run_dir = next((p.parent for p in path.parents if p.name == "checkpoints"), path.parent)
    status = RunDir(run_dir).status()
    info |= {"method": ckpt["method"], "step": ckpt.get("step"), "phase": ckpt.get("phase"),
             "command": _command(ckpt["config"], str(run_dir))}
    if "started" in status and "finished" in status:
        info["run_wall_time_s"] = round(float(status["finished"]) - float(status["started"]), 1)
    return info


def export_run(run_dir: str | Path, name: str, source: str | None = None, part: str = "test", half: bool = True,
               out_dir: str | Path | None = None, limit: int | None = None, ssim: bool = True,
               note: str = "", checkpoint: str | Path | None = None, selection: str = "") -> dict:
    """Write ``<name>.pt`` (weights only) and ``<name>.json`` (model card) from a run's best.pt, or from another of
    its checkpoints (``checkpoint``: e.g. a kept GAN-phase generator, with ``selection`` saying why); returns
    the card."""
    from core.baselines import make_baseline
    from core.data import prepare_for
    from core.evaluate import evaluate
    from core.inference import load_colorizer

    name = check_name(name, "--name")  # the shipped files stay in their folder: no '/', '..' or hidden names
    run = RunDir(Path(run_dir))
    chosen = Path(checkpoint) if checkpoint else run.best
    if not chosen.is_file():
        raise CheckpointError(f"run {run.path} has no {chosen.name} to ship" if checkpoint is None
                              else f"checkpoint {chosen} does not exist")
    ckpt = load_checkpoint(chosen)
    out_dir = Path(out_dir) if out_dir else SHIPPED_DIR
    target = out_dir / f"{name}.pt"
    save_checkpoint(weights_payload(ckpt, half=half), target)
    size_mb = target.stat().st_size / 1e6
    config = ckpt["config"]
    status = run.status()
    card: dict = {
        "name": name,
        "method": ckpt["method"],
        "file": target.name,
        "sha256": sha256(target),
        "size_mb": round(size_mb, 2),
        "precision": "float16 weights (loaded as float32)" if half else "float32",
        "command": _command(config, str(run.path)),
        "data": config["source"],
        "split": {k: config[k] for k in ("split", "val_fraction", "seed", "gray_threshold")},
        "width": config["width"],
        "epochs": config["epochs"],
        "checkpoint": str(chosen.relative_to(run.path)) if chosen.is_relative_to(run.path) else str(chosen),
        "selection": selection or (f"best.pt: {SELECTIONS[config.get('select', 'score')]}"
                                   if checkpoint is None else "given on the command line, no rule recorded"),
        "best_step": ckpt.get("step"),
        "best_epoch": ckpt.get("epoch"),
        "phase": ckpt.get("phase"),
        "validation": ckpt.get("metrics", {}),
        "wall_time_s": round(float(status.get("finished", time.time())) - float(status.get("started", time.time())), 1),
        "machine": status.get("machine") or machine_description(),  # where it trained (older runs: here)
        "threads": config.get("threads"),
        "note": note,
    }
    if config.get("init"):
        card["init"] = init_provenance(config["init"])
    if source and ckpt["method"] == "classifier":
        card["accuracy_val"] = ckpt.get("metrics", {}).get("accuracy")
    elif source:
        prepared = prepare_for(config, source)
        colorizer = load_colorizer(target, name=name)
        results = {name: evaluate(colorizer, prepared, part=part, limit=limit, ssim=ssim)}
        for b in ("gray", "mean_ab"):
            results[b] = evaluate(make_baseline(b, prepared), prepared, part=part, limit=limit, ssim=ssim)
        card["evaluation"] = {"source": source, "part": part, "n_images": results[name].n_images,
                              "metrics": {k: r.metrics for k, r in results.items()}}
        ours, gray = results[name].metrics, results["gray"].metrics
        card["beats_gray"] = bool(ours["auc_ab"] > gray["auc_ab"] and ours["mae_rgb"] < gray["mae_rgb"])
    atomic_write_text(target.with_suffix(".json"), json.dumps(card, indent=1, default=float))
    if size_mb > MAX_FILE_MB:
        print(f"warning: {target} is {size_mb:.1f} MB, above the {MAX_FILE_MB:.0f} MB limit for shipped files",
              file=sys.stderr)
    return card


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m core.export", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="run directory whose best.pt ships")
    p.add_argument("--name", required=True, help="file name without .pt, e.g. unet (letters, digits, '.', '_', '-')")
    p.add_argument("--source", help="evaluate on this source's test part for the card")
    p.add_argument("--part", default="test", choices=("test", "val"))
    p.add_argument("--limit", type=int)
    p.add_argument("--float32", action="store_true", help="ship float32 weights instead of float16")
    p.add_argument("--out-dir", type=Path)
    p.add_argument("--note", default="", help="free text for the card, e.g. what else ran on the machine")
    p.add_argument("--checkpoint", type=Path, help="ship this checkpoint of the run instead of its best.pt")
    p.add_argument("--selection", default="", help="with --checkpoint: how it was chosen, for the card")
    args = p.parse_args(argv)

    return run_command(lambda: _run(args), bad_input=(ValueError,))


def _run(args: argparse.Namespace) -> int:
    card = export_run(args.run, args.name, args.source, args.part, half=not args.float32, out_dir=args.out_dir,
                      limit=args.limit, note=args.note, checkpoint=args.checkpoint, selection=args.selection)
    print(json.dumps({k: card[k] for k in ("file", "method", "size_mb", "best_step")}))
    if "evaluation" in card:
        for model, m in card["evaluation"]["metrics"].items():
            print(f"{model:10s} auc_ab {m['auc_ab']:.2f}  mae_rgb {m['mae_rgb']:.2f}  psnr {m['psnr']:.2f}  "
                  f"colorfulness_ratio {m['colorfulness_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
