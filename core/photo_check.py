"""The photo check: which network size colorizes real photographs best, per model.

The shipped models are trained on 32 x 32 CIFAR-10 images; pictures people colorize are photographs of hundreds
of pixels. This check colorizes a few public-domain photographs that scikit-image bundles (never CIFAR training
data) through :func:`core.inference.colorize_picture` at several network sizes, and scores each result with
``mae_rgb`` against the photograph itself, beside the gray picture's score (the photograph's L with no colour).
The size with the lowest mean ``mae_rgb`` over the photographs becomes the model's ``default_net_size`` in its
card, and with it the default of :func:`core.inference.colorize_picture`.

``python -m core.photo_check CHECKPOINT... [--sizes 32 48 ...] [--photos astronaut coffee ...] [--write]``
prints the table of each model and, with ``--write``, records it in the model's card (``<checkpoint>.json``);
``--from-cards`` prints the checks already recorded in the cards as Markdown tables (the README's), computing nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.atomic import atomic_write_text
from core.cli import ArgumentParser, run_command
from core.compare import score_picture
from core.inference import Colorizer, colorize_picture, gray_picture, load_colorizer
from core.progress import ProgressFn, report

# skimage.data's colour photographs with no copyright restrictions: astronaut (NASA, public domain), coffee and
# chelsea (CC0 by their photographers), rocket (SpaceX, public domain). camera is gray, the rest are not photos.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
NET_SIZES = (32, 48, 64, 96, 128, 256, 512)
METRIC = "mae_rgb"  # lower is better


def photo(name: str) -> np.ndarray:
    """One of the bundled photographs as uint8 (H, W, 3)."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; use one of {', '.join(PHOTOS)}")
    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def check(colorizer: Colorizer, photos: Sequence[str] = PHOTOS, sizes: Sequence[int] = NET_SIZES,
          progress: ProgressFn | None = None) -> pd.DataFrame:
    """One row per photograph and network size: ``photo``, ``size``, the colorization's ``mae_rgb`` and the
    gray picture's (``gray_mae_rgb``), ``gain`` (gray's minus the model's: positive means better than gray) and
    ``artefact_ratio`` (the high-frequency share of the result's a,b over the photograph's,
    :func:`core.metrics.artefact_ratio`: about 1 or below is as smooth as real colour, well above 1 is dots or a
    grid)."""
    rows = []
    total, done = len(photos) * len(sizes), 0
    for name in photos:
        rgb = photo(name)
        gray = score_picture(gray_picture(rgb), rgb)[METRIC]
        for size in sizes:
            result = colorize_picture(colorizer, rgb, int(size))
            value = score_picture(result, rgb)[METRIC]
            rows.append({"photo": name, "size": int(size), METRIC: value, f"gray_{METRIC}": gray, "gain": gray - value,
                         "artefact_ratio": picture_artefacts(result, rgb)})
            done += 1
            report(progress, f"photo check {colorizer.name}", done, total)
    return pd.DataFrame(rows, columns=["photo", "size", METRIC, f"gray_{METRIC}", "gain", "artefact_ratio"])


def picture_artefacts(colorized: np.ndarray, original: np.ndarray) -> float:
    """:func:`core.metrics.artefact_ratio` of a colorized picture's a,b against the original's, at full size."""
    from core.colour import uint8_to_model
    from core.metrics import artefact_ratio

    _, ab_pred = uint8_to_model(colorized[None])
    _, ab_true = uint8_to_model(original[None])
    return artefact_ratio(ab_pred, ab_true)


def by_size(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over the photographs per network size: ``mae_rgb``, ``gray_mae_rgb``, ``gain`` and ``artefact_ratio``
    (when measured), by size."""
    columns = [METRIC, f"gray_{METRIC}", "gain"] + (["artefact_ratio"] if "artefact_ratio" in table else [])
    return table.groupby("size", sort=True)[columns].mean()


def best_size(table: pd.DataFrame) -> int:
    """The network size with the lowest mean ``mae_rgb`` over the photographs (the smaller size on a tie)."""
    means = by_size(table)[METRIC]
    return int(means[means == means.min()].index.min())


def card_fields(table: pd.DataFrame) -> dict[str, Any]:
    """What the photo check adds to a model card: ``default_net_size`` and the measured table behind it."""
    sizes = by_size(table)
    best = best_size(table)
    return {
        "default_net_size": best,
        "net_size_check": {
            "what": "colorize_picture at each network size on photographs bundled with scikit-image (never CIFAR "
                    f"training data); {METRIC} against each photograph, the gray picture's beside it; the size "
                    f"with the lowest mean {METRIC} is the default",
            "photos": sorted(set(table["photo"]), key=list(table["photo"]).index),
            "metric": METRIC,
            "mean_by_size": {str(size): round(float(row[METRIC]), 3) for size, row in sizes.iterrows()},
            "gray_mean": round(float(sizes[f"gray_{METRIC}"].iloc[0]), 3),
            **({"artefact_ratio_by_size": {str(size): round(float(row["artefact_ratio"]), 3)
                                           for size, row in sizes.iterrows()}} if "artefact_ratio" in sizes else {}),
            "per_photo": {name: {str(int(r["size"])): round(float(r[METRIC]), 3) for _, r in group.iterrows()}
                          for name, group in table.groupby("photo", sort=False)},
            "gray_per_photo": {name: round(float(group[f"gray_{METRIC}"].iloc[0]), 3)
                               for name, group in table.groupby("photo", sort=False)},
        },
    }


def write_card(card_path: str | Path, table: pd.DataFrame) -> dict:
    """Add (or replace) the photo check's fields in a model card, leaving every other field as it was."""
    path = Path(card_path)
    card = json.loads(path.read_text()) if path.is_file() else {}
    card.update(card_fields(table))
    atomic_write_text(path, json.dumps(card, indent=1))
    return card


def format_check(name: str, table: pd.DataFrame) -> str:
    """The check of one model as text: mean mae_rgb per size (gray's beside it), the best marked."""
    sizes = by_size(table)
    best = best_size(table)
    lines = [f"{name}: mean {METRIC} over {table['photo'].nunique()} photographs (gray "
             f"{sizes[f'gray_{METRIC}'].iloc[0]:.3f})"]
    for size, row in sizes.iterrows():
        artefacts = f"  artefact ratio {row['artefact_ratio']:.2f}" if "artefact_ratio" in row else ""
        lines.append(f"  size {size:>4}  {row[METRIC]:7.3f}  gain over gray {row['gain']:+.3f}{artefacts}"
                     + ("  <- default" if size == best else ""))
    return "\n".join(lines)


def card_tables(cards: Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The recorded photo checks of model cards (``<checkpoint>.json``, or the checkpoint beside it): mean
    ``mae_rgb`` by network size and the artefact ratio by size, one row per model (named by its method's label and
    file), with its ``default`` size. A card without a recorded check is an error naming the command that writes it."""
    from core.methods import method_label

    means, artefacts = {}, {}
    for spec in cards:
        path = Path(spec).with_suffix(".json")
        if not path.is_file():
            raise FileNotFoundError(f"no model card {path}; export the model first (python -m core.export)")
        card = json.loads(path.read_text())
        check = card.get("net_size_check") or {}
        if not check.get("mean_by_size"):
            raise ValueError(f"{path} records no photo check; run python -m core.photo_check {path.with_suffix('.pt')} "
                             "--write")
        row = f"{method_label(str(card.get('method', path.stem)))} (`{path.with_suffix('.pt').name}`)"
        means[row] = {int(k): float(v) for k, v in check["mean_by_size"].items()} | {
            "gray": float(check.get("gray_mean", float("nan"))), "default": card.get("default_net_size")}
        artefacts[row] = {int(k): float(v) for k, v in (check.get("artefact_ratio_by_size") or {}).items()}
    return pd.DataFrame.from_dict(means, orient="index"), pd.DataFrame.from_dict(artefacts, orient="index")


def markdown_tables(means: pd.DataFrame, artefacts: pd.DataFrame) -> str:
    """:func:`card_tables` as two Markdown tables; each model's lowest mean ``mae_rgb`` is bold."""
    def table(frame: pd.DataFrame, bold_min: bool) -> list[str]:
        sizes = sorted(c for c in frame.columns if isinstance(c, int))
        extra = [c for c in ("gray", "default") if c in frame.columns]
        lines = ["| model | " + " | ".join(map(str, sizes + extra)) + " |",
                 "| --- |" + " --- |" * (len(sizes) + len(extra))]
        for name, row in frame.iterrows():
            best = row[sizes].astype(float).min()
            cells = [("**{:.2f}**" if bold_min and row[s] == best else "{:.2f}").format(row[s])
                     if pd.notna(row[s]) else "" for s in sizes]
            if "gray" in extra:
                cells.append(f"{row['gray']:.2f}")
            if "default" in extra:
                cells.append(str(int(row["default"])) if pd.notna(row["default"]) else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return lines

    out = [f"Mean {METRIC} by network size (lower is better; gray: the picture with no colour):", ""]
    out += table(means, bold_min=True)
    if not artefacts.empty:
        out += ["", "Artefact ratio by network size (high-frequency a,b energy over the photograph's; about 1 or "
                "below is as smooth as real colour):", ""]
        out += table(artefacts, bold_min=False)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit 2 on bad input, 0 when every model was checked."""
    from core.checkpoint import CheckpointError

    p = ArgumentParser(prog="python -m core.photo_check", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint files (.pt) or run directories")
    p.add_argument("--sizes", type=int, nargs="+", default=list(NET_SIZES), help="network sizes to try")
    p.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=PHOTOS, help="photographs to use")
    p.add_argument("--write", action="store_true", help="record the result in each model's card (<checkpoint>.json)")
    p.add_argument("--from-cards", action="store_true",
                   help="print the checks recorded in the cards as Markdown tables instead of running them")
    args = p.parse_args(argv)

    def body() -> int:
        if args.from_cards:
            print(markdown_tables(*card_tables(args.checkpoints)))
            return 0
        for spec in args.checkpoints:
            colorizer = load_colorizer(spec)
            table = check(colorizer, args.photos, args.sizes)
            print(format_check(colorizer.name, table), flush=True)
            if args.write:
                card = Path(colorizer.path).with_suffix(".json")
                write_card(card, table)
                print(f"  recorded in {card}")
        return 0

    return run_command(body, (CheckpointError, ValueError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
