"""Build the bundled sample ``core/assets/cifar10-sample.tar.gz`` from the CIFAR-10 JPEG archive.

``python tools/make_sample.py [--source ARCHIVE] [--per-class N] [--out PATH]``

Takes the first N files (by name) of every class in ``train/`` and ``test/`` and stores them
byte for byte in the same ``train/<class>/``, ``test/<class>/`` layout. The output is reproducible:
sorted names, fixed dates and owners, no gzip timestamp.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from pathlib import Path
from typing import BinaryIO

from core.atomic import atomic_write

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_OUT = ROOT / "core" / "assets" / "cifar10-sample.tar.gz"


def select_members(source: Path, per_class: int) -> dict[str, bytes]:
    """The first ``per_class`` files of each ``<part>/<class>/`` folder of a tar archive, by name."""
    by_folder: dict[str, dict[str, bytes]] = {}
    with tarfile.open(source, "r:*") as tf:
        for m in tf:
            parts = m.name.removeprefix("./").split("/")
            if not m.isreg() or len(parts) != 3 or parts[0] not in ("train", "test"):
                continue
            folder = by_folder.setdefault(f"{parts[0]}/{parts[1]}", {})
            folder[m.name.removeprefix("./")] = tf.extractfile(m).read()
    chosen: dict[str, bytes] = {}
    for folder in sorted(by_folder):
        names = sorted(by_folder[folder])[:per_class]
        chosen.update((n, by_folder[folder][n]) for n in names)
    return chosen


def write_archive(files: dict[str, bytes], out: Path) -> None:
    """Write files to a reproducible .tar.gz (sorted names, mtime 0, root owner), atomically."""

    def write(raw: BinaryIO) -> None:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size = len(files[name])
                info.mtime = 0
                info.mode = 0o644
                info.uname = info.gname = "root"
                tf.addfile(info, io.BytesIO(files[name]))

    atomic_write(out, write)


def main(argv: list[str] | None = None) -> int:
    """Build the sample and print its size and counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="CIFAR-10 JPEG archive")
    ap.add_argument("--per-class", type=int, default=100, help="files per class and part")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if not args.source.is_file():
        print(f"error: {args.source} not found; pass --source with the CIFAR-10 JPEG archive", file=sys.stderr)
        return 1
    files = select_members(args.source, args.per_class)
    write_archive(files, args.out)
    counts = {p: sum(n.startswith(p + "/") for n in files) for p in ("train", "test")}
    print(f"{args.out}: {args.out.stat().st_size} bytes, train {counts['train']}, test {counts['test']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
