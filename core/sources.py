"""Image datasets from CIFAR-10, the bundled sample, an image folder or an archive of one.

Every source becomes a :class:`Dataset` of uint8 images (N x S x S x 3) with integer labels, in
parts ``train`` and/or ``test``. Decoded data is cached on disk as plain ``.npy`` files, one folder
per source under ``<cache root>/datasets/``, keyed by the source's path, size and modification state
(:func:`cache_key`), so a second load is a file read.

Source strings (see :func:`resolve_source`):

* ``"cifar10"``: the official python batches, read by ``torchvision.datasets.CIFAR10`` from
  ``$COLORIZE_CIFAR10_ROOT`` or ``<cache root>/cifar10`` (files in ``cifar-10-batches-py/``).
* ``"sample"``: the bundled 1,000 + 1,000 image CIFAR-10 sample (``core/assets``).
* ``"default"``: ``$COLORIZE_DATA`` when set, else ``"sample"``.
* a path to a folder, ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``: ``train/<class>/*`` and
  ``test/<class>/*`` when present, else one ``train`` part of ``<class>/*`` folders or loose images.

Decoding rules for folders and archives: files are decoded by content (PIL), never by extension;
files that PIL cannot decode count in ``Dataset.n_skipped``. Hidden files and ``__MACOSX`` are
ignored, as is a chain of single wrapper folders at the top (``data/train/...`` reads as
``train/...``). Images that are not ``size`` x ``size`` are centre-cropped to a square and resized
(LANCZOS when shrinking, BICUBIC when growing). Grayscale, palette, CMYK and other modes are
converted to RGB; 16-bit images are scaled to 8 bits; transparency is composited on white. In a
train/test layout only files under ``train/`` and ``test/`` are read. Images not inside a class
folder get label -1. EXIF orientation is applied. Large sources are decoded in worker processes
(``$COLORIZE_DECODE_WORKERS``, default: the usable CPUs up to 4; 1 decodes in this process).

Returned arrays are ordinary writable numpy arrays, also when they come from the cache.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import mmap
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from core import limits
from core.progress import ProgressFn

__all__ = [
    "DataSourceError", "Part", "Dataset", "load_dataset", "cache_key", "default_cache_dir",
    "sample_path", "resolve_source", "images_file", "release_pages",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused
PART_NAMES = ("train", "test")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta")
CHUNK = 1024  # images per decode task
POOL_MIN_CHUNKS = 4  # decode in worker processes only for sources larger than this many chunks
GZIP_IN_MEMORY_MAX = 256 << 20  # gzip archives up to this size are inflated in memory (fast member access)
GZIP_INFLATED_MAX = 512 << 20  # ... unless they inflate to more than this; those are read as a stream


class DataSourceError(Exception):
    """Bad or unavailable source; message is one clear line saying what was wrong and what to do."""


@dataclass
class Part:
    """One part of a dataset: images (uint8, N x S x S x 3, C-contiguous) and int64 labels (-1: no class)."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class Dataset:
    """Decoded images of one source, by part (``train`` and/or ``test``), with the class names."""

    name: str
    source: str
    class_names: list[str]
    parts: dict[str, Part] = field(default_factory=dict)
    n_skipped: int = 0

    def part(self, name: str) -> Part:
        """The part called ``name``; raises DataSourceError naming the parts this source has."""
        if name not in self.parts:
            raise DataSourceError(f"source {self.source!r} has no part {name!r}; available: {', '.join(self.parts)}")
        return self.parts[name]


# ---------------------------------------------------------------------------------------------
# Source strings and cache locations


def default_cache_dir() -> Path:
    """Cache root: ``$COLORIZE_CACHE_DIR``, else ``<project root>/.cache``."""
    env = os.environ.get("COLORIZE_CACHE_DIR")
    return Path(env).expanduser() if env else PROJECT_ROOT / ".cache"


def sample_path() -> Path:
    """Path of the bundled CIFAR-10 sample archive (1,000 train + 1,000 test JPEGs)."""
    return Path(__file__).resolve().parent / "assets" / "cifar10-sample.tar.gz"


def resolve_source(source: str) -> str:
    """Normalise a source string to ``"cifar10"``, ``"sample"`` or an absolute path.

    ``"default"`` (or an empty string) means ``$COLORIZE_DATA`` when set, else ``"sample"``. A folder
    literally named ``sample`` or ``cifar10`` is reached with a path such as ``./sample``.
    """
    text = str(source).strip()
    if text.lower() in ("", "default"):
        text = os.environ.get("COLORIZE_DATA", "").strip() or "sample"
    if text.lower() in ("cifar10", "cifar-10"):
        return "cifar10"
    if text.lower() == "sample":
        return "sample"
    return str(Path(text).expanduser().resolve())


def _cifar10_root(cache_dir: str | Path | None) -> Path:
    env = os.environ.get("COLORIZE_CIFAR10_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(cache_dir) if cache_dir else default_cache_dir()).expanduser().resolve() / "cifar10"


def _stat_line(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path.name}:-"
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _source_name(resolved: str) -> str:
    return resolved if resolved in ("cifar10", "sample") else _archive_stem(Path(resolved))


def _state(resolved: str, cache_dir: str | Path | None,
           listing: list[tuple[str, int, int]] | None = None) -> tuple[str, str]:
    """(where the source lives, text that changes whenever its content may have changed)."""
    if resolved == "cifar10":
        folder = _cifar10_root(cache_dir) / "cifar-10-batches-py"
        return f"cifar10|{folder}", ",".join(_stat_line(folder / f) for f in CIFAR10_FILES)
    path = sample_path() if resolved == "sample" else Path(resolved)
    if path.is_dir():
        rows = listing if listing is not None else _list_folder(path)
        return f"folder|{path}", "\n".join(f"{r}:{s}:{m}" for r, s, m in rows)
    return f"file|{path}", _stat_line(path)


def cache_key(source: str, size: int, *, cache_dir: str | Path | None = None) -> str:
    """Content key of a source at an image size: name, size and hashes of its location and its files' sizes + mtimes.

    Used as the cache file name; it changes when the file (or any file of a folder) changes.
    ``cache_dir`` matters only for ``"cifar10"`` without ``$COLORIZE_CIFAR10_ROOT`` (it locates the files).
    """
    resolved = resolve_source(source)
    return _cache_key(resolved, size, _state(resolved, cache_dir))


def _cache_key(resolved: str, size: int, state: tuple[str, str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", _source_name(resolved))[:48] or "data"
    where = hashlib.sha1(state[0].encode()).hexdigest()[:8]
    what = hashlib.sha1(f"v{CACHE_VERSION}|{size}|{state[0]}|{state[1]}".encode()).hexdigest()[:16]
    return f"{slug}-{size}-{where}-{what}"


# ---------------------------------------------------------------------------------------------
# Cache files


def _cache_path(cache_dir: str | Path | None, key: str) -> Path:
    """Folder holding one cached dataset: ``meta.json`` and ``<part>_images.npy`` / ``<part>_labels.npy``."""
    return (Path(cache_dir) if cache_dir else default_cache_dir()).expanduser() / "datasets" / key


def release_pages(array: np.ndarray) -> None:
    """Drop the pages a memory-mapped array has read from this process's resident set (they stay in the page
    cache), so streaming through a file larger than memory does not grow the process."""
    mm = getattr(array, "_mmap", None)
    if mm is None and isinstance(getattr(array, "base", None), mmap.mmap):
        mm = array.base
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def images_file(array: np.ndarray) -> Path | None:
    """The cached ``.npy`` file a memory-mapped image array of :func:`load_dataset` reads (None: in memory)."""
    name = getattr(array, "filename", None)
    return Path(name) if isinstance(array, np.memmap) and name else None


def _read_cache(path: Path, name: str, source: str, mmap: bool = False) -> Dataset | None:
    """The cached dataset, or None when there is no usable cache (absent, foreign or damaged); ``mmap``: the
    images as read-only memory maps of the cache files."""
    if not (path / "meta.json").is_file():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text())
        parts = {}
        for p in meta["parts"]:
            images = np.load(path / f"{p}_images.npy", allow_pickle=False, mmap_mode="r" if mmap else None)
            labels = np.load(path / f"{p}_labels.npy", allow_pickle=False)
            if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
                return None
            parts[p] = Part(images, labels.astype(np.int64, copy=False))
        return Dataset(name=name, source=source, class_names=list(meta["class_names"]), parts=parts,
                       n_skipped=int(meta["n_skipped"]))
    except Exception:  # a damaged cache is rebuilt
        return None


def _write_cache(path: Path, ds: Dataset) -> None:
    """Write the cache atomically: fill a temporary folder, then rename it into place.

    Caches of other states of the same source (same name, size and location) are removed.
    """
    meta = {"parts": list(ds.parts), "class_names": ds.class_names, "n_skipped": ds.n_skipped}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        for p, part in ds.parts.items():
            np.save(tmp / f"{p}_images.npy", part.images)
            np.save(tmp / f"{p}_labels.npy", part.labels)
        (tmp / "meta.json").write_text(json.dumps(meta))  # written last: its presence marks a complete cache
        if path.exists():  # a damaged cache of this key, or one another process just finished
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.replace(tmp, path)
            tmp = None
        except OSError:
            if not (path / "meta.json").is_file():
                raise
        stale_prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(f"{stale_prefix}*"):
            if old.is_dir() and old != path:
                shutil.rmtree(old, ignore_errors=True)
            elif old.suffix == ".npz":  # single-file caches of an earlier layout
                old.unlink(missing_ok=True)
    except OSError as e:  # a read-only or full disk costs speed, not the load
        warnings.warn(f"could not write dataset cache {path}: {e}", stacklevel=3)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Decoding one image


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: 16/32-bit scaled to 8 bits, transparency composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = np.clip(a.astype(np.float32) / 257.0, 0, 255)  # 16-bit range to 8-bit
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2), "RGB")
    if (mode == "P" and "transparency" in im.info) or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _fit(im: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize to size x size (LANCZOS shrinking, BICUBIC growing)."""
    w, h = im.size
    if (w, h) == (size, size):
        return im
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if (w, h) != (side, side):  # crop first: a resize box would let the filter reach pixels outside it
        im = im.crop((left, top, left + side, top + side))
    resample = Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC
    return im.resize((size, size), resample, reducing_gap=3.0)


def _decode_image(data: bytes | str, size: int) -> np.ndarray | None:
    """Decode one encoded image (bytes, or a file path) to uint8 (size, size, 3); None if it is not one."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            if limits.too_many_pixels(*im.size):  # from the header, before any pixel is decoded
                return None
            if im.size != (size, size) and im.format == "JPEG":
                im.draft("RGB", (size, size))  # DCT-domain downscale, still >= size on both sides
            if "exif" in im.info:
                im = ImageOps.exif_transpose(im)
            im = _fit(_to_rgb(im), size)
            if im.mode != "RGB" or im.size != (size, size):
                return None
            return np.frombuffer(im.tobytes(), np.uint8).reshape(size, size, 3)  # cheaper than np.asarray
    except Exception:  # anything PIL cannot decode (not an image, truncated, corrupt, too large) is skipped
        return None


_JPEG_OP: list = []  # [op or None] once resolved
_RGB_MODE = 3  # torchvision.io.ImageReadMode.RGB


def _jpeg_op():
    """torchvision's CPU JPEG decoder as a torch op, loaded from its extension library alone (milliseconds,
    where importing torchvision takes seconds); None when torch is not loaded here or the library is missing."""
    if not _JPEG_OP:
        op = None
        if "torch" in sys.modules:
            try:
                import importlib.util

                import torch

                spec = importlib.util.find_spec("torchvision")
                if spec is not None and spec.submodule_search_locations:
                    lib = Path(spec.submodule_search_locations[0]) / "image_stable.so"
                    if lib.is_file():
                        torch.ops.load_library(str(lib))
                        op = torch.ops.image.decode_jpeg
            except Exception:  # any trouble loading it: PIL decodes everything
                op = None
        _JPEG_OP.append(op)
    return _JPEG_OP[0]


def _fast_jpeg(data: bytes | str, size: int) -> np.ndarray | None:
    """JPEG bytes already of the target size, decoded by torchvision's libjpeg (about twice PIL's speed on
    32x32 images, the same pixels); None when this path does not apply and PIL should decode."""
    if not isinstance(data, bytes) or data[:2] != b"\xff\xd8" or b"Exif" in data[:64]:
        return None
    op = _jpeg_op()
    if op is None:
        return None
    try:
        import torch

        t = op(torch.frombuffer(bytearray(data), dtype=torch.uint8), _RGB_MODE, False)
    except Exception:  # unusual JPEGs (CMYK, progressive quirks, corrupt): PIL decides
        return None
    if tuple(t.shape) != (3, size, size):
        return None
    return t.permute(1, 2, 0).numpy()


def _decode_chunk(items: list[bytes | str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a list of images; returns (images, ok) where ok marks the ones that decoded."""
    out = np.zeros((len(items), size, size, 3), np.uint8)
    ok = np.zeros(len(items), bool)
    with warnings.catch_warnings():  # PIL's warnings (EXIF, palette, large images) on user files are noise here
        warnings.simplefilter("ignore")
        for i, data in enumerate(items):
            img = _fast_jpeg(data, size)
            if img is None:
                img = _decode_image(data, size)
            if img is not None:
                out[i] = img
                ok[i] = True
    return out, ok


def _n_workers() -> int:
    """Decode processes: ``$COLORIZE_DECODE_WORKERS`` (1 = this process only), else the usable CPUs, at most 4."""
    env = os.environ.get("COLORIZE_DECODE_WORKERS", "").strip()
    if env.isdigit():
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


def _make_pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform != "darwin" else "spawn"
    return ProcessPoolExecutor(workers, mp_context=mp.get_context(method))


def _decode_stream(items: Iterable[tuple[str, bytes | str]], size: int, progress: bool | ProgressFn, desc: str,
                   total: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Decode (name, data) pairs in their given order, in worker processes when there are many.

    Reading continues while workers decode. If the worker pool cannot run, decoding falls back to
    this process. ``progress`` is True (a tqdm bar), False, or a callback ``(stage, done, total)``
    (:mod:`core.progress`), called from this thread: ``reading`` while files are read, ``decoding`` as
    chunks finish. Returns (names, images, ok).
    """
    names: list[str] = []
    results: list[tuple[np.ndarray, np.ndarray] | Future] = []
    inputs: list[list[bytes | str]] = []  # kept until decoded so a failed pool can be replaced
    pool: ProcessPoolExecutor | None = None
    use_pool = _n_workers() > 1
    bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=progress is not True, leave=False,
               mininterval=0.5)
    report = progress if callable(progress) else None

    def submit(chunk: list[bytes | str]) -> None:
        nonlocal pool, use_pool
        inputs.append(chunk)
        if use_pool and pool is None and len(inputs) > POOL_MIN_CHUNKS:
            _jpeg_op()  # resolve the fast JPEG decoder before the workers fork, so they inherit it
            try:
                pool = _make_pool(_n_workers())
            except Exception:  # no worker processes here (sandbox, limits): decode in this process
                use_pool = False
        if use_pool and pool is not None:
            try:
                fut = pool.submit(_decode_chunk, chunk, size)
                n = len(chunk)
                fut.add_done_callback(lambda _f: bar.update(n))
                results.append(fut)
                return
            except Exception:
                use_pool = False
        results.append(_decode_chunk(chunk, size))
        bar.update(len(chunk))
        if report is not None:
            report("decoding", sum(len(c) for c in inputs), total or 0)

    try:
        chunk: list[bytes | str] = []
        for name, data in items:
            names.append(name)
            chunk.append(data)
            if len(chunk) == CHUNK:
                submit(chunk)
                chunk = []
                if report is not None and pool is not None:
                    report("reading", len(names), total or 0)
        if chunk:
            submit(chunk)
        done: list[tuple[np.ndarray, np.ndarray]] = []
        n_done = 0
        for i, r in enumerate(results):
            if isinstance(r, Future):
                try:
                    r = r.result()
                except Exception:  # a broken worker pool: decode here instead
                    r = _decode_chunk(inputs[i], size)
                n_done += len(r[1])
                if report is not None:
                    report("decoding", n_done, len(names))
            done.append(r)
            inputs[i] = []
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if not done:
        return names, np.zeros((0, size, size, 3), np.uint8), np.zeros(0, bool)
    return names, np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])


# ---------------------------------------------------------------------------------------------
# Reading folders and archives


def _clean_name(name: str) -> str | None:
    """Archive or folder member name as a relative posix path; None for hidden / macOS metadata files."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p[0] == "." or p == "__MACOSX" for p in parts):
        return None
    return "/".join(parts)


def _list_folder(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of the visible regular files under root, sorted by path.

    Pipes, sockets and devices are left out (opening a pipe waits for a writer), and so are links whose target
    is not a regular file inside ``root``; linked folders are not entered.
    """
    rows = []
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        for fn in filenames:
            if fn.startswith("."):
                continue
            full = os.path.join(dirpath, fn)
            try:
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    target = os.path.realpath(full)
                    if os.path.commonpath([real_root, target]) != real_root:
                        continue  # a link that leaves the source folder
                    st = os.stat(target)
            except (OSError, ValueError):
                continue
            if stat.S_ISREG(st.st_mode):
                rows.append((Path(full).relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    rows.sort()
    return rows


def _member_name(name: str, archive: Path) -> str | None:
    """An archive member's name as a relative posix path (None: hidden or macOS metadata); DataSourceError for a
    name that points outside the archive (absolute, a drive, or a '..' part)."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:/", raw) or ".." in raw.split("/"):
        raise DataSourceError(f"archive {archive} has a member named {name!r} that points outside the archive; "
                              "nothing was read: repack it with relative member names")
    return _clean_name(raw)


def _tar_info_class() -> tuple[type[tarfile.TarInfo], list[bool]]:
    """A TarInfo class that notes when a header block is all zeros (the end-of-archive marker), and its note.

    tarfile ends its iteration quietly at the end of the data too, so a tar cut at a member boundary would
    otherwise read as a smaller, complete archive."""
    ended: list[bool] = []

    class _Info(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
            if len(buf) == tarfile.BLOCKSIZE and buf.count(0) == tarfile.BLOCKSIZE:
                ended.append(True)
            return super().frombuf(buf, encoding, errors)

    return _Info, ended


class _CappedStream:
    """A read-only stream over a decompressed archive that refuses to read past the archive cap."""

    def __init__(self, stream: io.BufferedIOBase, path: Path) -> None:
        self.stream, self.path, self.total = stream, path, 0
        self.cap = limits.max_archive_bytes()

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(self.cap + 1 - self.total if n is None or n < 0 else n)
        self.total += len(data)
        if self.total > self.cap:
            raise DataSourceError(f"cannot read tar archive {self.path}: "
                                  + limits.too_large("it", self.total, limits.MAX_ARCHIVE))
        return data

    def drain(self) -> None:
        """Read to the end, so a compressed stream cut short (or too large) is noticed."""
        while self.read(1 << 20):
            pass


_DECOMPRESSORS = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


def _tar_members(tf: tarfile.TarFile, path: Path) -> Iterator[tuple[tarfile.TarInfo, str]]:
    """The regular-file members of a tar to read, with their cleaned names; refuses names that leave the archive
    and members past the member cap."""
    member_cap = limits.max_member_bytes()
    for m in tf:
        name = _member_name(m.name, path)
        if name is None or not m.isreg():
            continue
        if m.size > member_cap:
            raise DataSourceError(f"cannot read tar archive {path}: "
                                  + limits.too_large(f"member {m.name}", m.size, limits.MAX_MEMBER))
        yield m, name


def _truncated(path: Path, kind: str = "tar") -> DataSourceError:
    return DataSourceError(f"cannot read {kind} archive {path}: it ends before its end-of-archive marker (truncated "
                           "or damaged); nothing was loaded: check the file or copy it again")


def _iter_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    """Every regular member of a tar (plain, gzip, bzip2 or xz) as (name, bytes), one at a time, within the
    member and archive caps; a tar that ends without its end-of-archive marker is an error."""
    with open(path, "rb") as f:
        magic = f.read(6)
    total_cap = limits.max_archive_bytes()
    if magic[:2] == b"\x1f\x8b" and path.stat().st_size <= GZIP_IN_MEMORY_MAX:
        # Inflating once and slicing members out of the buffer is about twice as fast as tarfile's streams.
        with gzip.open(path, "rb") as g:
            raw = g.read(min(total_cap, GZIP_INFLATED_MAX) + 1)
        if len(raw) > total_cap:
            raise DataSourceError(f"cannot read tar archive {path}: "
                                  + limits.too_large("it", len(raw), limits.MAX_ARCHIVE))
        if len(raw) <= GZIP_INFLATED_MAX:
            info, ended = _tar_info_class()
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", tarinfo=info) as tf:
                for m, name in _tar_members(tf, path):
                    if m.issparse():
                        yield name, tf.extractfile(m).read()
                    elif m.offset_data + m.size > len(raw):
                        raise _truncated(path)
                    else:
                        yield name, raw[m.offset_data:m.offset_data + m.size]
            if not ended:
                raise _truncated(path)
            return
        del raw  # larger once inflated than is worth holding: read it as a stream below
    opener = next((fn for prefix, fn in _DECOMPRESSORS if magic.startswith(prefix)), None)
    with (opener(path, "rb") if opener else open(path, "rb")) as stream:
        capped = _CappedStream(stream, path)
        info, ended = _tar_info_class()
        with tarfile.open(fileobj=capped, mode="r|", tarinfo=info) as tf:
            for m, name in _tar_members(tf, path):
                yield name, tf.extractfile(m).read()
        if not ended:
            raise _truncated(path)
        capped.drain()


def _iter_zip(zf: zipfile.ZipFile, infos: list[tuple[str, zipfile.ZipInfo]], path: Path | None = None,
              ) -> Iterator[tuple[str, bytes]]:
    """Every listed member of a zip as (name, bytes), within the member and archive caps; a damaged or
    encrypted member is an error naming it."""
    where = path or zf.filename
    member_cap, total_cap = limits.max_member_bytes(), limits.max_archive_bytes()
    total = 0
    for name, info in infos:
        try:
            with zf.open(info) as f:
                data = f.read(member_cap + 1)
        except Exception as e:  # noqa: BLE001 - bad CRC, encryption, unknown compression: the archive is unusable
            why = "it is encrypted" if "encrypted" in str(e) else f"{type(e).__name__}: {e}"
            raise DataSourceError(f"cannot read zip archive {where}: member {info.filename} cannot be read ({why}); "
                                  "nothing was loaded: check the file or use a folder") from e
        if len(data) > member_cap:
            raise DataSourceError(f"cannot read zip archive {where}: "
                                  + limits.too_large(f"member {info.filename}", len(data), limits.MAX_MEMBER))
        total += len(data)
        if total > total_cap:
            raise DataSourceError(f"cannot read zip archive {where}: "
                                  + limits.too_large("it", total, limits.MAX_ARCHIVE))
        yield name, data


def _zip_members(zf: zipfile.ZipFile, path: Path) -> list[tuple[str, zipfile.ZipInfo]]:
    """The file members of a zip to read, checked from its directory first: names that leave the archive and
    declared sizes past the caps are refused before anything is decompressed."""
    member_cap, total_cap = limits.max_member_bytes(), limits.max_archive_bytes()
    infos, total = [], 0
    for info in zf.infolist():
        name = _member_name(info.filename, path)
        if info.is_dir() or name is None:
            continue
        if info.file_size > member_cap:
            raise DataSourceError(f"cannot read zip archive {path}: "
                                  + limits.too_large(f"member {info.filename}", info.file_size, limits.MAX_MEMBER))
        total += info.file_size
        if total > total_cap:
            raise DataSourceError(f"cannot read zip archive {path}: "
                                  + limits.too_large("it", total, limits.MAX_ARCHIVE))
        infos.append((name, info))
    return infos


def _read_items(path: Path, size: int, progress: bool | ProgressFn, listing: list[tuple[str, int, int]] | None
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Decode every visible file of a folder or archive: (names, images, ok)."""
    limits.check_all()  # a malformed cap is one clear error, not every image skipped
    desc = f"decoding {path.name}"
    if path.is_dir():
        rows = listing if listing is not None else _list_folder(path)
        return _decode_stream(((r, str(path / r)) for r, _, _ in rows), size, progress, desc, total=len(rows))
    if not path.is_file():
        raise DataSourceError(f"{path} is not a regular file or a folder (a pipe, device or socket is never read); "
                              "give an image folder or an archive of one")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                infos = _zip_members(zf, path)
                return _decode_stream(_iter_zip(zf, infos, path), size, progress, desc, total=len(infos))
        except (zipfile.BadZipFile, OSError) as e:
            raise DataSourceError(f"cannot read zip archive {path}: {e}; check the file or use a folder") from e
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":  # a zip's first member, but no directory at its end
            raise DataSourceError(f"cannot read zip archive {path}: it has no directory at its end (truncated or "
                                  "damaged); nothing was loaded: check the file or copy it again")
    if tarfile.is_tarfile(path):
        try:
            return _decode_stream(_iter_tar(path), size, progress, desc)
        except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
            raise DataSourceError(f"cannot read tar archive {path}: {e}; check the file or use a folder") from e
    raise DataSourceError(f"{path} is not a folder or a supported archive (.tar, .tar.gz, .tgz, .zip); "
                          "give an image folder or an archive of one")


def _strip_wrappers(names: list[str]) -> list[str]:
    """Drop top folders while every name sits in one and the same folder (``data/train/x`` -> ``train/x``)."""
    split = [n.split("/") for n in names]
    while split and all(len(s) > 1 for s in split) and len({s[0] for s in split}) == 1 \
            and split[0][0] not in PART_NAMES:
        split = [s[1:] for s in split]
    return ["/".join(s) for s in split]


def _organise(names: list[str], images: np.ndarray, ok: np.ndarray) -> tuple[list[str], dict[str, Part]]:
    """Arrange decoded images into parts and labels from their paths, each part sorted by path."""
    idx = np.flatnonzero(ok)
    paths = _strip_wrappers([names[i] for i in idx])
    tops = {p.split("/", 1)[0] for p in paths if "/" in p}
    groups: dict[str, list[tuple[str, str, int]]] = {}  # part -> (path within part, class or "", source index)
    if tops & set(PART_NAMES):
        for p, i in zip(paths, idx):
            head, _, rest = p.partition("/")
            if head in PART_NAMES and rest:
                groups.setdefault(head, []).append((rest, rest.split("/", 1)[0] if "/" in rest else "", int(i)))
    else:
        groups["train"] = [(p, p.split("/", 1)[0] if "/" in p else "", int(i)) for p, i in zip(paths, idx)]
    class_names = sorted({c for rows in groups.values() for _, c, _ in rows if c})
    lookup = {c: k for k, c in enumerate(class_names)}
    parts = {}
    for part in PART_NAMES:
        rows = sorted(groups.get(part, []))
        if rows:
            order = np.array([i for _, _, i in rows], np.int64)
            labels = np.array([lookup.get(c, -1) for _, c, _ in rows], np.int64)
            parts[part] = Part(np.ascontiguousarray(images[order]), labels)
    return class_names, parts


def _load_path(path: Path, name: str, source: str, size: int, progress: bool | ProgressFn,
               listing: list[tuple[str, int, int]] | None) -> Dataset:
    """Decode a folder or archive and arrange it into parts."""
    names, images, ok = _read_items(path, size, progress, listing)
    n_skipped = int(len(ok) - ok.sum())
    if not ok.any():
        what = f"{len(names)} file(s), none a decodable image" if names else "no files"
        raise DataSourceError(f"no images in {path} ({what}); give a folder or archive of image files")
    class_names, parts = _organise(names, images, ok)
    return Dataset(name=name, source=source, class_names=class_names, parts=parts, n_skipped=n_skipped)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches


def _load_cifar10(source: str, size: int, cache_dir: str | Path | None, download: bool) -> Dataset:
    """The official CIFAR-10 python batches through torchvision, resized when size is not 32."""
    from torchvision.datasets import CIFAR10

    root = _cifar10_root(cache_dir)
    folder = root / CIFAR10.base_folder
    parts: dict[str, Part] = {}
    classes: list[str] = []
    for part in PART_NAMES:
        try:
            ds = CIFAR10(str(root), train=part == "train", download=download)
        except Exception as e:
            why = "download failed" if download else "files missing or corrupted"
            detail = " ".join(str(e).split())
            raise DataSourceError(
                f"CIFAR-10 {why} in {folder}: put the official python batches (data_batch_1..5, test_batch, "
                f"batches.meta) in that folder or set COLORIZE_CIFAR10_ROOT to their parent, or load a folder or "
                f"archive path instead (e.g. a CIFAR-10 JPEG archive such as cifar10-jpeg.tar.gz) [{detail}]"
            ) from e
        images = np.ascontiguousarray(ds.data, dtype=np.uint8)
        if size != images.shape[1]:
            images = np.stack([np.asarray(_fit(Image.fromarray(x), size)) for x in images])
        parts[part] = Part(images, np.asarray(ds.targets, dtype=np.int64))
        classes = list(ds.classes)
    return Dataset(name="cifar10", source=source, class_names=classes, parts=parts)


# ---------------------------------------------------------------------------------------------
# Public entry point


def load_dataset(source: str, size: int = 32, cache_dir: str | Path | None = None, download: bool = False,
                 progress: bool | ProgressFn = True, mmap: bool = False) -> Dataset:
    """Load a dataset from a source string (see :func:`resolve_source`), from the disk cache when it is current.

    ``cache_dir`` is the cache root (default :func:`default_cache_dir`); decoded data goes to its
    ``datasets/`` folder. ``progress``: True shows a tqdm bar, a callback ``(stage, done, total)`` gets the
    decode's counts (:mod:`core.progress`). Returned arrays are ordinary writable numpy arrays, unless ``mmap``
    asks for read-only memory maps of the cache's ``.npy`` files (pages are read when touched: for data sets
    too large to hold; a source decoded now is held once while its cache is written, then mapped).
    """
    if not isinstance(size, int) or size < 1:
        raise DataSourceError(f"image size must be a positive integer, got {size!r}")
    resolved = resolve_source(source)
    name = _source_name(resolved)
    path = sample_path() if resolved == "sample" else None if resolved == "cifar10" else Path(resolved)
    listing = None
    if path is not None:
        if not path.exists():
            hint = "reinstall the project (the bundled sample is missing)" if resolved == "sample" else \
                "give an existing image folder or archive, or 'cifar10' / 'sample'"
            raise DataSourceError(f"data source not found: {path}; {hint}")
        if path.is_dir():
            listing = _list_folder(path)
            if not listing:
                raise DataSourceError(f"folder {path} is empty; put images in it (train/<class>/..., "
                                      "<class>/... or loose files)")
    key = _cache_key(resolved, size, _state(resolved, cache_dir, listing))
    cache_path = _cache_path(cache_dir, key)
    cached = _read_cache(cache_path, name, source, mmap)
    if cached is not None:
        return cached
    if resolved == "cifar10":
        ds = _load_cifar10(source, size, cache_dir, download)
    else:
        assert path is not None
        ds = _load_path(path, name, source, size, progress, listing)
    _write_cache(cache_path, ds)
    if mmap:  # the decoded arrays go; the cache's maps take their place (unless the cache could not be written)
        return _read_cache(cache_path, name, source, mmap=True) or ds
    return ds


def _main(argv: list[str] | None = None) -> int:
    """``python -m core.sources SOURCE [SIZE]``: load a source and print its parts and timing."""
    import time

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m core.sources SOURCE [SIZE]", file=sys.stderr)
        return 2
    t = time.perf_counter()
    try:
        ds = load_dataset(args[0], size=int(args[1]) if len(args) > 1 else 32)
    except DataSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    parts = ", ".join(f"{k}: {v.images.shape[0]}" for k, v in ds.parts.items())
    print(f"{ds.name}: {parts}; {len(ds.class_names)} classes; {ds.n_skipped} skipped; "
          f"{time.perf_counter() - t:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
