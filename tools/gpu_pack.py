"""Packs finished runs for the trip back from a GPU machine: everything but the checkpoints, plus the one
generator that matters (the pick named in the run's pick.json, else best.pt) as half-precision weights only.

``python tools/gpu_pack.py --out PACK_DIR RUN_DIR...`` writes PACK_DIR/<run name>/...
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from core.checkpoint import load_checkpoint, save_checkpoint, weights_payload


def pack_run(run: Path, out: Path) -> list[str]:
    """Copy ``run`` into ``out/<name>`` without its checkpoints, then its chosen generator, halved."""
    dest = out / run.name
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoints"), dirs_exist_ok=True)
    pick_file = run / "pick.json"
    pick = json.loads(pick_file.read_text()) if pick_file.is_file() else None
    chosen = [Path(pick["path"])] if pick else []
    if (run / "checkpoints" / "best.pt").is_file() and not pick:
        chosen.append(run / "checkpoints" / "best.pt")
    kept = []
    for path in chosen:
        rel = path.resolve().relative_to(run.resolve())
        save_checkpoint(weights_payload(load_checkpoint(path), half=True), dest / rel)
        kept.append(str(rel))
    return kept


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args()
    for run in args.runs:
        if not (run / "config.json").is_file():
            print(f"skip {run}: not a run", file=sys.stderr)
            continue
        print(run.name, pack_run(run, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
