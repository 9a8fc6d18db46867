"""A catalogue of bad inputs and faults: each bad input is refused with one clear line, each fault is survived,
and nothing is lost or changed on disk that should not be.

Test names say what they count (``tools/reliability_report.py`` counts the collected cases into
docs/reliability.md): ``test_refused_<category>_...`` cases are bad inputs refused cleanly (CLI: exit 2, one
``error:`` line, no traceback; dashboard: an error element and no exception), ``test_survived_<category>_...``
cases are faults survived (killed, vanished or impostor processes, files that would hang or escape a reader),
``test_exposure_...`` checks what the dashboard opens to the network.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import pickle
import random
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import limits
from core.access import AccessError, check_name, check_source
from core.checkpoint import FORMAT_WEIGHTS, CheckpointError, load_checkpoint
from core.config import ConfigError
from core.inference import PictureError, load_colorizer, open_picture
from core.jobs import TrainForm, build_train_args, resume_args
from core.runlock import LOCK_NAME, RunLock, process_start_time
from core.runs import JobError, RunDir, cancel_job, find_runs, runs_table, start_job
from core.sources import DataSourceError, load_dataset
from tests.run_util import make_run

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboard"
SHIPPED = ROOT / "checkpoints"
PY = sys.executable
TIMEOUT = 180
TINY = ["--model", "unet", "--source", "sample", "--width", "8", "--batch-size", "16", "--limit", "128",
        "--val-limit", "32", "--threads", "1", "--quiet"]

if str(DASHBOARD) not in sys.path:  # pages import `common` as they do under `streamlit run dashboard/Home.py`
    sys.path.insert(0, str(DASHBOARD))


# --- helpers -----------------------------------------------------------------------------------------------
def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m ARGS`` from the project root (a hang fails the case at ``timeout`` instead of blocking)."""
    return subprocess.run([PY, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=os.environ | (env or {}))


PROGRESS_BAR = re.compile(r"\d+%\||\[\d+:\d\d[,<\]]|^\s*$")  # tqdm lines: "40%|", "[00:01<00:02, ..."


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2 with exactly one ``error:`` line on stderr (besides progress bars) naming every needle, no traceback."""
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if not PROGRESS_BAR.search(line)]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def one_line(error: BaseException, *needles: str) -> str:
    """The error's message, checked: one line, naming every needle, no Python object in it."""
    text = str(error)
    assert "\n" not in text and " object at 0x" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry below ``folder``, links not followed: a hash of each regular file, the kind of anything else."""
    out: dict[str, str] = {}
    if not folder.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            rel = str(path.relative_to(folder))
            if stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = "link to " + os.readlink(path)
            else:
                out[rel] = f"kind {stat.S_IFMT(st.st_mode)}"
    return out


def picture(seed: int, size: tuple[int, int] = (32, 32), fmt: str = "PNG") -> bytes:
    """A random RGB picture of (width, height) ``size``, encoded."""
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels with a few bytes of data (a decompression bomb's
    shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def tar_bytes(files: dict[str, bytes], special: dict[str, bytes] | None = None) -> bytes:
    """An uncompressed tar of ``files``; ``special`` maps member names to tar types (FIFO, device, link)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, kind in (special or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def member_boundary(raw: bytes, index: int) -> int:
    """The offset where member ``index`` of a tar starts (cutting there leaves whole members before it)."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        return tf.getmembers()[index].offset


IMAGES = {f"cat/{i}.png": picture(i) for i in range(4)}
BIG_ZEROS = b"\0" * 3_000_000  # 3 MB that compress to a few kB


# --- sources: bad folders, archives, special files and settings --------------------------------------------
def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _fifo(base: Path) -> Path:
    os.mkfifo(base / "images.tar")
    return base / "images.tar"


def _links_out(base: Path) -> Path:
    outside = _write(base.parent / "outside" / "secret.png", picture(9))
    (base / "imgs").mkdir()
    os.symlink(outside, base / "imgs" / "a.png")
    os.symlink(outside.parent, base / "imgs" / "more")
    return base / "imgs"


def _only_text(base: Path) -> Path:
    _write(base / "notes" / "a.txt", b"hello")
    _write(base / "notes" / "b.csv", b"1,2,3\n")
    return base / "notes"


def _over_pixels(base: Path) -> Path:
    return _write(base / "huge" / "a.png", png_claiming(8000, 6000)).parent


def _damaged_zip(base: Path) -> Path:
    raw = bytearray(zip_bytes({"a/0.png": picture(1, (64, 64))}))
    raw[60:80] = bytes(20)  # inside the compressed data of the only member
    return _write(base / "bad-crc.zip", bytes(raw))


def _empty_dir(base: Path) -> Path:
    (base / "empty").mkdir()
    return base / "empty"


RAW_TAR = tar_bytes(IMAGES)
SOURCE_REFUSALS: list[tuple[str, Callable[[Path], Path | str], str, dict[str, str]]] = [
    ("missing path", lambda b: b / "nope", "not found", {}),
    ("FIFO as the source", _fifo, "not a regular file", {}),
    ("device as the source", lambda b: "/dev/zero", "not a regular file", {}),
    ("empty folder", _empty_dir, "is empty", {}),
    ("folder whose only files are links leaving it", _links_out, "is empty", {}),
    ("folder of non-images", _only_text, "no images", {}),
    ("folder of pictures over the pixel cap", _over_pixels, "none a decodable image", {}),
    ("empty file", lambda b: _write(b / "x.tar", b""), "not a folder or a supported archive", {}),
    ("tar cut at a member boundary", lambda b: _write(b / "cut.tar", RAW_TAR[:member_boundary(RAW_TAR, 2)]),
     "truncated", {}),
    ("tar cut inside a member", lambda b: _write(b / "cut.tar", RAW_TAR[:member_boundary(RAW_TAR, 2) + 700]),
     "cannot read tar archive", {}),
    ("tar.gz cut short", lambda b: _write(b / "cut.tar.gz", gzip.compress(RAW_TAR)[:-40]), "cannot read tar", {}),
    ("tar.gz of a tar cut at a member boundary",
     lambda b: _write(b / "cut2.tar.gz", gzip.compress(RAW_TAR[:member_boundary(RAW_TAR, 1)])), "truncated", {}),
    ("tar.xz cut short", lambda b: _write(b / "cut.tar.xz", lzma.compress(RAW_TAR)[:-60]), "cannot read tar", {}),
    ("tar.xz of a tar cut at a member boundary",
     lambda b: _write(b / "cut2.tar.xz", lzma.compress(RAW_TAR[:member_boundary(RAW_TAR, 3)])), "truncated", {}),
    ("zip cut short", lambda b: _write(b / "cut.zip", zip_bytes(IMAGES)[:-30]), "no directory at its end", {}),
    ("zip with a damaged member", _damaged_zip, "cannot be read", {}),
    ("zip with a ../ member", lambda b: _write(b / "evil.zip", zip_bytes({"../../evil.png": picture(1)})),
     "points outside the archive", {}),
    ("tar with a ../ member", lambda b: _write(b / "evil.tar", tar_bytes({"a/../../evil.png": picture(1)})),
     "points outside the archive", {}),
    ("tar.gz with an absolute member", lambda b: _write(b / "abs.tar.gz", gzip.compress(tar_bytes(
        {"/tmp/evil.png": picture(1)}))), "points outside the archive", {}),
    ("zip of non-images", lambda b: _write(b / "text.zip", zip_bytes({"a/readme.txt": b"x"})), "no images", {}),
    ("tar.gz member over the member cap", lambda b: _write(b / "bomb.tar.gz", gzip.compress(tar_bytes(
        {"a/big.png": BIG_ZEROS}))), "COLORIZE_MAX_MEMBER_MB", {"COLORIZE_MAX_MEMBER_MB": "1"}),
    ("zip member over the member cap", lambda b: _write(b / "bomb.zip", zip_bytes({"a/big.png": BIG_ZEROS})),
     "COLORIZE_MAX_MEMBER_MB", {"COLORIZE_MAX_MEMBER_MB": "1"}),
    ("tar.xz over the archive cap", lambda b: _write(b / "many.tar.xz", lzma.compress(tar_bytes(
        {f"a/{i}.png": BIG_ZEROS[:400_000] for i in range(4)}))), "COLORIZE_MAX_ARCHIVE_MB",
     {"COLORIZE_MAX_ARCHIVE_MB": "1"}),
    ("zip over the archive cap", lambda b: _write(b / "many.zip", zip_bytes(
        {f"a/{i}.png": BIG_ZEROS[:400_000] for i in range(4)})), "COLORIZE_MAX_ARCHIVE_MB",
     {"COLORIZE_MAX_ARCHIVE_MB": "1"}),
    ("malformed member cap setting", lambda b: _write(b / "ok.tar", RAW_TAR), "COLORIZE_MAX_MEMBER_MB must be",
     {"COLORIZE_MAX_MEMBER_MB": "lots"}),
    ("malformed archive cap setting", lambda b: _write(b / "ok.tar", RAW_TAR), "COLORIZE_MAX_ARCHIVE_MB must be",
     {"COLORIZE_MAX_ARCHIVE_MB": "0"}),
    ("malformed pixel cap setting", lambda b: _write(b / "ok.tar", RAW_TAR), "COLORIZE_MAX_PIXELS must be",
     {"COLORIZE_MAX_PIXELS": "-1"}),
]


@pytest.mark.parametrize("build,needle,env", [c[1:] for c in SOURCE_REFUSALS], ids=[c[0] for c in SOURCE_REFUSALS])
def test_refused_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build, needle: str, env: dict) -> None:
    base = tmp_path / "data"
    base.mkdir()
    source = str(build(base))
    cache = tmp_path / "cache"
    before = snapshot(tmp_path)
    result = cli("core.data", "--source", source, env=env | {"COLORIZE_CACHE_DIR": str(cache)}, timeout=60)
    assert_refused(result, needle)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises((DataSourceError, ConfigError)) as err:
        load_dataset(source, cache_dir=cache, progress=False)
    one_line(err.value, needle)
    assert snapshot(tmp_path) == before  # no cache, no extracted member, nothing else written
    assert not (tmp_path.parent / "evil.png").exists() and not Path("/tmp/evil.png").exists()


def _fifo_among_images(base: Path) -> tuple[Path, int]:
    folder = base / "imgs"
    for i in range(3):
        _write(folder / "cat" / f"{i}.png", picture(i))
    os.mkfifo(folder / "cat" / "pipe.png")
    return folder, 3


def _links_among_images(base: Path) -> tuple[Path, int]:
    folder, _ = _fifo_among_images(base)
    outside = _write(base / "outside" / "cat" / "secret.png", picture(99))
    os.symlink(outside, folder / "cat" / "escape.png")
    os.symlink(outside.parent, folder / "dog")
    os.symlink(folder / "cat" / "0.png", folder / "cat" / "again.png")  # a link inside the folder is read
    return folder, 4


def _special_tar_members(base: Path) -> tuple[Path, int]:
    raw = tar_bytes(IMAGES, {"cat/pipe.png": tarfile.FIFOTYPE, "cat/dev.png": tarfile.CHRTYPE,
                             "cat/link.png": tarfile.SYMTYPE})
    return _write(base / "special.tar", raw), len(IMAGES)


def _pixel_bomb_among_images(base: Path) -> tuple[Path, int]:
    folder, _ = _fifo_among_images(base)
    _write(folder / "cat" / "huge.png", png_claiming(8000, 6000))
    return folder, 3


def _big_archive_streamed(base: Path) -> tuple[Path, int]:
    return _write(base / "plain.tar.bz2", bz2.compress(RAW_TAR)), len(IMAGES)


SOURCE_SURVIVALS = [
    ("FIFO inside an image folder is skipped, no hang", _fifo_among_images),
    ("links leaving the folder are not followed", _links_among_images),
    ("FIFO, device and link members of a tar are not read", _special_tar_members),
    ("a picture over the pixel cap is skipped and counted", _pixel_bomb_among_images),
    ("a bzip2 tar is read as a stream with its end checked", _big_archive_streamed),
]


@pytest.mark.parametrize("build", [c[1] for c in SOURCE_SURVIVALS], ids=[c[0] for c in SOURCE_SURVIVALS])
def test_survived_sources(tmp_path: Path, build) -> None:
    base = tmp_path / "data"
    base.mkdir()
    source, expected = build(base)
    cache = tmp_path / "cache"
    before = snapshot(base)
    result = cli("core.sources", str(source), env={"COLORIZE_CACHE_DIR": str(cache)}, timeout=60)
    assert result.returncode == 0 and f"train: {expected};" in result.stdout, result.stdout + result.stderr
    ds = load_dataset(str(source), cache_dir=cache, progress=False)
    assert len(ds.parts["train"].images) == expected
    outside = picture(99)
    assert not any(np.array_equal(img, np.asarray(Image.open(io.BytesIO(outside)))) for img in ds.parts["train"].images)
    assert snapshot(base) == before


def test_survived_sources_streamed_gzip_checks_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.sources as sources

    monkeypatch.setattr(sources, "GZIP_IN_MEMORY_MAX", 0)  # as for a large archive: read as a stream
    whole = _write(tmp_path / "whole.tar.gz", gzip.compress(RAW_TAR))
    assert len(load_dataset(str(whole), cache_dir=tmp_path / "c", progress=False).parts["train"].images) == 4
    cut = _write(tmp_path / "cut.tar.gz", gzip.compress(RAW_TAR[:member_boundary(RAW_TAR, 2)]))
    with pytest.raises(DataSourceError) as err:
        load_dataset(str(cut), cache_dir=tmp_path / "c", progress=False)
    one_line(err.value, "truncated", str(cut))


# --- uploads on the Colorize page --------------------------------------------------------------------------
def _zip_upload() -> bytes:
    return zip_bytes({"a.txt": b"x"})


PNG, JPEG = picture(3, (64, 48)), picture(3, (64, 48), "JPEG")
UPLOAD_REFUSALS = [
    ("empty.png", b"", "the file is empty"),
    ("notes.png", b"hello, this is not a picture\n", "not a picture format"),
    ("cut.png", PNG[: len(PNG) // 2], "truncated"),
    ("cut.jpg", JPEG[: len(JPEG) // 2], "truncated"),
    ("noise.jpg", b"\xff\xd8\xff\xe0" + random.Random(0).randbytes(600), "not a readable picture"),
    ("huge.png", png_claiming(8000, 6000), "COLORIZE_MAX_PIXELS"),
    ("giant.png", png_claiming(100_000, 100_000), "COLORIZE_MAX_PIXELS"),
    ("archive.png", _zip_upload(), "not a picture format"),
    ("zero.png", png_claiming(0, 10), "not a readable picture"),
]


@pytest.mark.parametrize("name,data,needle", UPLOAD_REFUSALS, ids=[c[0] for c in UPLOAD_REFUSALS])
def test_refused_uploads(name: str, data: bytes, needle: str) -> None:
    from core.compare import read_picture

    started = time.perf_counter()
    with pytest.raises(PictureError) as err:
        read_picture(data, name)
    text = one_line(err.value, needle)
    assert text.startswith(f"{name}: ") and "BytesIO" not in text
    assert time.perf_counter() - started < 5  # refused from the header, not after decoding


def test_refused_uploads_pixel_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORIZE_MAX_PIXELS", "1000")
    with pytest.raises(PictureError) as err:
        open_picture(picture(1, (40, 40)), "small.png")
    one_line(err.value, "small.png", "40x40", "COLORIZE_MAX_PIXELS")
    monkeypatch.setenv("COLORIZE_MAX_PIXELS", "2000")
    assert open_picture(picture(1, (40, 40)), "small.png").size == (40, 40)


def test_refused_uploads_on_the_page_each_named_page_still_usable(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "runs"))
    st.cache_data.clear()
    at = AppTest.from_file(str(DASHBOARD / "pages" / "4_Colorize.py"), default_timeout=TIMEOUT)
    at.run()
    at.multiselect(key="colorize_models").set_value([str(SHIPPED / "unet.pt")])
    at.file_uploader(key="colorize_upload").set_value(
        [(name, data, "image/png") for name, data, _ in UPLOAD_REFUSALS] + [("good.png", PNG, "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == len(UPLOAD_REFUSALS), errors
    for (name, _, needle), text in zip(UPLOAD_REFUSALS, errors):
        assert text.startswith(f"{name}: ") and needle in text and " object at 0x" not in text, text
    assert "good.png" in [s.value for s in at.subheader]  # the readable upload is colorized beside the refusals
    assert len(at.download_button) == 1


# --- checkpoints -------------------------------------------------------------------------------------------
class Payload:
    """A pickle that runs a shell command when loaded: the file must be refused unread."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _shipped(**config: object) -> dict:
    payload = torch.load(SHIPPED / "unet.pt", weights_only=True)
    payload["config"] = dict(payload["config"]) | config
    return payload


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


UNET_BYTES = (SHIPPED / "unet.pt").read_bytes()
CHECKPOINT_REFUSALS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("truncated file", lambda d: _write(d / "cut.pt", UNET_BYTES[: len(UNET_BYTES) // 2]), "damaged, truncated"),
    ("empty file", lambda d: _write(d / "empty.pt", b""), "damaged, truncated"),
    ("random bytes", lambda d: _write(d / "noise.pt", random.Random(1).randbytes(4096)), "not a readable checkpoint"),
    ("malicious pickle in a torch file", lambda d: _save(d / "evil.pt", {"format": FORMAT_WEIGHTS,
                                                                         "x": Payload(d / "PWNED")}), "asks to build"),
    ("malicious plain pickle", lambda d: _write(d / "evil.pkl.pt", pickle.dumps(Payload(d / "PWNED"), protocol=2)),
     "asks to build"),
    ("dict of another format", lambda d: _save(d / "other.pt", {"hello": torch.zeros(2)}), "not a checkpoint of this"),
    ("list instead of a dict", lambda d: _save(d / "list.pt", [1, 2, 3]), "not a checkpoint of this project"),
    ("no weights inside", lambda d: _save(d / "hollow.pt", {"format": FORMAT_WEIGHTS, "method": "unet",
                                                            "config": {"width": 8}}), "holds no generator weights"),
    ("weights that are not tensors", lambda d: _save(d / "strings.pt", {"format": FORMAT_WEIGHTS, "method": "unet",
                                                                        "config": {}, "generator": {"a": "b"}}),
     "holds no generator weights"),
    ("huge width", lambda d: _save(d / "huge.pt", _shipped(width=100_000)), "at most 1024, not 100000"),
    ("negative width", lambda d: _save(d / "neg.pt", _shipped(width=-4)), "--width must be at least 1"),
    ("width not a number", lambda d: _save(d / "wide.pt", _shipped(width="wide")), "--width must be an integer"),
    ("weights of another width", lambda d: _save(d / "misfit.pt", _shipped(width=8)), "do not fit"),
    ("a classifier, not a colorizer", lambda d: _write(d / "clf.pt", (SHIPPED / "classifier.pt").read_bytes()),
     "not a colorizer"),
    ("unknown method", lambda d: _save(d / "magic.pt", _shipped() | {"method": "magic"}), "not a colorizer"),
    ("missing file", lambda d: d / "absent.pt", "absent.pt"),
    ("run folder without a checkpoint", lambda d: make_run(d, "bare").path, "has no checkpoint yet"),
]


@pytest.mark.parametrize("build,needle", [c[1:] for c in CHECKPOINT_REFUSALS], ids=[c[0] for c in CHECKPOINT_REFUSALS])
def test_refused_checkpoints(tmp_path: Path, build, needle: str) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    path = build(folder)
    before = snapshot(folder)
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        load_colorizer(path)
    one_line(err.value, needle)
    assert time.perf_counter() - started < 20  # nothing huge was built
    flag = "--run" if Path(path).is_dir() else "--checkpoint"
    result = cli("core.evaluate", flag, str(path), "--source", "sample", "--limit", "4", "--no-ssim")
    assert_refused(result, needle)
    assert not (folder / "PWNED").exists()  # no code in the file ran
    assert snapshot(folder) == before


def test_refused_checkpoints_on_home_page_still_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import core.inference

    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    _save(shipped / "huge.pt", _shipped(width=100_000))
    _save(shipped / "evil.pt", {"format": FORMAT_WEIGHTS, "x": Payload(tmp_path / "PWNED")})
    for name in ("huge", "evil"):
        (shipped / f"{name}.json").write_text(json.dumps({"method": "unet"}))
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", shipped)
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "runs"))
    st.cache_data.clear()
    at = AppTest.from_file(str(DASHBOARD / "Home.py"), default_timeout=TIMEOUT)
    at.session_state["source"] = "sample"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = " | ".join(e.value for e in at.error)
    assert "Model huge" in errors and "at most 1024, not 100000" in errors and "Model evil" in errors, errors
    assert {m.label for m in at.metric} >= {"Train", "Test"}  # the data and the gray baseline are still shown
    assert not (tmp_path / "PWNED").exists()
    st.cache_data.clear()


# --- names and paths a user gives --------------------------------------------------------------------------
BAD_NAMES = ["../../x", "../x", "/tmp/abs", "a/b", ".hidden", "..", "x y", "-dash", ""]


@pytest.fixture(scope="module")
def shippable_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose best.pt is the shipped U-Net (enough for core.export without evaluation)."""
    run = make_run(tmp_path_factory.mktemp("export"), "ship")
    run.checkpoints.mkdir()
    shutil.copy(SHIPPED / "unet.pt", run.best)
    return run.path


@pytest.mark.parametrize("name", BAD_NAMES)
def test_refused_names_export(tmp_path: Path, shippable_run: Path, name: str) -> None:
    out = tmp_path / "deep" / "er" / "out"
    out.mkdir(parents=True)
    before = snapshot(tmp_path)
    result = cli("core.export", "--run", str(shippable_run), f"--name={name}", "--out-dir", str(out))
    assert_refused(result, "--name")
    assert snapshot(tmp_path) == before and not Path("/tmp/abs.pt").exists()
    with pytest.raises(AccessError):
        check_name(name)


def test_survived_names_export_a_plain_name_is_written_in_its_folder(tmp_path: Path, shippable_run: Path) -> None:
    result = cli("core.export", "--run", str(shippable_run), "--name", "unet-copy.v2", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet-copy.v2.json", "unet-copy.v2.pt"]


@pytest.mark.parametrize("name", ["../escape", "a/b", ".x", "x/../../y", "/abs"])
def test_refused_names_run(tmp_path: Path, name: str) -> None:
    with pytest.raises(JobError) as err:
        build_train_args(TrainForm(name=name), tmp_path / "runs")
    one_line(err.value, "run name")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


def _outside_link(base: Path) -> str:
    (base / "allowed").mkdir()
    os.symlink("/etc", base / "allowed" / "etc")
    return str(base / "allowed" / "etc")


OUTSIDE_SOURCES: list[tuple[str, Callable[[Path], str]]] = [
    ("an absolute path", lambda b: "/etc/passwd"),
    ("the root folder", lambda b: "/"),
    ("a path with ..", lambda b: str(b / "allowed" / ".." / ".." / "elsewhere")),
    ("a link out of an allowed root", _outside_link),
    ("the home folder", lambda b: "~"),
]


@pytest.mark.parametrize("build", [c[1] for c in OUTSIDE_SOURCES], ids=[c[0] for c in OUTSIDE_SOURCES])
def test_refused_names_source_outside_the_allowed_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         build) -> None:
    monkeypatch.setenv("COLORIZE_DATA_ROOTS", str(tmp_path / "allowed"))
    monkeypatch.delenv("COLORIZE_DATA", raising=False)
    monkeypatch.delenv("COLORIZE_CIFAR10_ROOT", raising=False)
    source = build(tmp_path)
    with pytest.raises(AccessError) as err:
        check_source(source)
    one_line(err.value, "outside the folders", "COLORIZE_DATA_ROOTS")
    with pytest.raises(JobError, match="outside the folders"):
        build_train_args(TrainForm(source=source), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    assert check_source("sample") == "sample" and check_source(str(tmp_path / "allowed" / "x.tar"))


class FakeLauncher:
    """Records the commands it is given instead of starting processes."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, cmd, log_path) -> int:
        self.calls.append(list(cmd))
        return 999_999


def test_refused_names_train_form_on_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(runs))
    launcher = FakeLauncher()
    at = AppTest.from_file(str(DASHBOARD / "pages" / "2_Train.py"), default_timeout=TIMEOUT)
    at.session_state["_launcher"] = launcher
    at.run()
    for field, value, needle in (("train_name", "../escape", "run name"), ("train_source", "/etc", "outside the")):
        at.text_input(key="train_source").set_value("sample")
        at.text_input(key="train_name").set_value("")
        at.text_input(key=field).set_value(value)
        next(b for b in at.button if b.label == "Start training").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(needle in e.value for e in at.error), [e.value for e in at.error]
    assert launcher.calls == [] and not runs.exists() and not (tmp_path / "escape").exists()


def test_refused_names_source_picker_keeps_the_last_good_source(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("COLORIZE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLORIZE_DATA_ROOTS", str(tmp_path / "allowed"))
    at = AppTest.from_file(str(DASHBOARD / "pages" / "1_Data_and_splits.py"), default_timeout=TIMEOUT)
    at.session_state["source"] = "sample"
    at.run()
    at.radio(key="source_picker_kind").set_value("path").run()
    at.text_input(key="source_picker_path").set_value("/etc").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("outside the folders" in e.value for e in at.error), [e.value for e in at.error]
    assert at.session_state["source"] == "sample" and len(at.dataframe) >= 1  # still showing the sample
    settings = tmp_path / "cache" / "dashboard-settings.json"
    assert json.loads(settings.read_text())["source"] == "sample"


def test_survived_sources_a_fifo_chosen_on_home_is_not_remembered(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A source that would hang a reader is refused at once, and the next start does not begin with it."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import core.inference

    monkeypatch.setenv("COLORIZE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLORIZE_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", tmp_path / "no-models")
    st.cache_data.clear()
    fifo = tmp_path / "data.tar.gz"
    os.mkfifo(fifo)
    at = AppTest.from_file(str(DASHBOARD / "Home.py"), default_timeout=60)
    at.session_state["source"] = "sample"
    at.run()
    at.radio(key="source_picker_kind").set_value("path").run()
    at.text_input(key="source_picker_path").set_value(str(fifo)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not a regular file" in e.value for e in at.error), [e.value for e in at.error]
    settings = json.loads((tmp_path / "cache" / "dashboard-settings.json").read_text())
    assert settings["source"] == "sample"
    fresh = AppTest.from_file(str(DASHBOARD / "Home.py"), default_timeout=60).run()  # the next start
    assert not fresh.exception and fresh.session_state["source"] == "sample"


# --- settings ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags,needle", [
    (["--size", "8"], "--size must be at least 16"), (["--width", "100000"], "at most 1024, not 100000"),
    (["--n-samples", "1000"], "at most 256, not 1000"), (["--val-per-epoch", "0"], "--val-per-epoch must be"),
    (["--seed", "-1"], "--seed must be at least 0"), (["--keep-generators", "0"], "--keep-generators must be"),
    (["--batch-size", "100000"], "at most 65536, not 100000"), (["--threads", "5000"], "--threads must be"),
])
def test_refused_settings_train(tmp_path: Path, flags: list[str], needle: str) -> None:
    out = tmp_path / "bad"
    result = cli("core.train", *TINY, *flags, "--out", str(out))
    assert_refused(result, needle)
    assert not out.exists()


# --- runs: one writer, liveness from the lock and the heart-beat, impostor pids, kill -9 -------------------
def _sleeper(marker: Path) -> subprocess.Popen:
    """A process that notes any SIGTERM in ``marker``: it stands for whatever took a dead run's pid."""
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (open(sys.argv[1], 'w').write('TERM'), sys.exit(0)))\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([PY, "-c", code, str(marker)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_survived_runs_start_job_writes_only_its_launch_record(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import core.runs

    proc = _sleeper(tmp_path / "unused")

    def launcher(cmd, log_path) -> int:
        log_path.write_text("error: the data source was not found\n")
        return proc.pid

    try:
        run, _, pid = start_job({"model": "unet", "out": str(tmp_path / "new")}, launcher=launcher)
        assert not run.status_file.exists() and json.loads(run.launch_file.read_text())["pid"] == pid
        assert [r.id for r in find_runs(tmp_path)] == ["new"]
        assert run.live_status()["state"] == "starting"
        with pytest.raises(JobError, match="already starting"):
            start_job({"out": str(run.path), "resume": True}, launcher=launcher)
    finally:
        proc.kill()
        proc.wait()
    assert run.live_status()["state"] == "starting"  # for a moment after the launch, as the process may not show yet
    monkeypatch.setattr(core.runs, "LAUNCH_GRACE_S", 0.0)
    live = run.live_status()
    assert live["state"] == "failed" and "the data source was not found" in live["message"]
    assert runs_table(runs_dir=tmp_path).iloc[0]["method"] == "unet"


def test_refused_runs_resume_of_a_locked_run_changes_nothing(tmp_path: Path) -> None:
    run = make_run(tmp_path, "busy", state="cancelled")
    launcher = FakeLauncher()
    with RunLock(run.path):  # a trainer took the run between the Resume button's last look and its click
        before = snapshot(run.path)
        with pytest.raises(JobError) as err:
            start_job({"out": str(run.path), "resume": True, "quiet": True}, launcher=launcher)
        one_line(err.value, f"being trained by process {os.getpid()}", "nothing was changed")
        assert snapshot(run.path) == before and launcher.calls == []


def _lost_run(root: Path, name: str, pid: int, start_time: float | None) -> RunDir:
    """A run whose trainer died: status still says running, the lock file names a pid, and nobody holds it."""
    run = make_run(root, name, state="running", step=8, total_steps=48)
    run.write_status(pid=pid)  # a fresh heart-beat: the lock alone says it is gone
    (run.path / LOCK_NAME).write_text(json.dumps({"pid": pid, "start_time": start_time, "locked_at": time.time() - 5,
                                                  "host": socket.gethostname()}))
    return run


def test_survived_runs_a_dead_run_reads_as_process_lost_and_resumes(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    run = _lost_run(runs, "lost", 999_999, None)
    live = run.live_status()
    assert live["state"] == "failed" and live["lost"] and "process lost" in live["message"]
    assert runs_table(runs_dir=runs).iloc[0]["state"] == "failed (process lost)"
    assert resume_args(run)["resume"] is True
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(runs))
    launcher = FakeLauncher()
    at = AppTest.from_file(str(DASHBOARD / "pages" / "2_Train.py"), default_timeout=TIMEOUT)
    at.session_state["_launcher"] = launcher
    at.query_params["run"] = "lost"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["state"] == "failed (process lost)"
    at.button(key="train_resume").click().run()
    assert not at.exception and launcher.calls and "--resume" in launcher.calls[0]


def test_survived_runs_a_dead_run_whose_pid_was_reused_signals_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "signalled"
    other = _sleeper(marker)
    try:
        started = process_start_time(other.pid)
        runs = tmp_path / "runs"
        reused = _lost_run(runs, "reused", other.pid, (started or 0) - 100)  # the pid, not the process
        old = make_run(runs, "old", state="running")  # no lock file (an older run): the heart-beat decides
        old.write_status(pid=other.pid)
        status = json.loads(old.status_file.read_text()) | {"heartbeat": time.time() - 600}
        old.status_file.write_text(json.dumps(status))
        launch = {"command": ["x"], "pid": other.pid, "pid_start_time": (started or 0) - 100,
                  "started": time.time() - 60, "host": socket.gethostname()}  # launched a minute ago, pid reused since
        reused.launch_file.write_text(json.dumps(launch))
        for run in (reused, old):
            assert run.live_status()["state"] == "failed" and run.live_status()["lost"]
            assert cancel_job(run) is False
        result = cli("core.runs", "--runs-dir", str(runs), "cancel", "reused")
        assert result.returncode == 0 and "nothing to cancel" in result.stdout, result.stdout + result.stderr
        time.sleep(0.5)
        assert other.poll() is None and not marker.exists()  # the other process got no signal
    finally:
        other.kill()
        other.wait()


def test_survived_runs_a_lockless_run_with_a_fresh_heartbeat_is_believed(tmp_path: Path) -> None:
    """Where no lock can be asked (a run from another machine records that machine), the heart-beat decides."""
    run = make_run(tmp_path, "remote", state="running")
    run.write_status(pid=12345)
    (run.path / LOCK_NAME).write_text(json.dumps({"pid": 12345, "host": "another-machine", "locked_at": 1.0}))
    assert run.live_status()["state"] == "running"
    status = json.loads(run.status_file.read_text()) | {"heartbeat": time.time() - 600}
    run.status_file.write_text(json.dumps(status))
    assert run.live_status()["state"] == "failed" and run.live_status()["lost"]
    assert cancel_job(run) is False


def _records(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in RunDir(run).metrics()]


def _progress(run: Path) -> int:
    """The last step a run has logged (metrics.jsonl), 0 before any."""
    return max((int(r.get("step", 0)) for r in RunDir(run).metrics()), default=0)


def _reached(run: Path, since: float, target: int | None) -> bool:
    """Whether the run exists and, for a ``target`` step, the process started at ``since`` reported past it."""
    if not (run / "config.json").is_file():
        return False
    return target is None or (RunDir(run).status().get("heartbeat", 0) >= since and _progress(run) >= target)


def test_survived_runs_kill_9_at_ten_random_moments_then_resume(tmp_path: Path) -> None:
    """A run killed (SIGKILL) ten times and resumed after each ends with the metrics and weights of one never
    interrupted; every checkpoint left behind loads. Three kills land while the process starts (imports, lock,
    data), seven at random points of the training (steps, validations, checkpoint writes)."""
    epochs, steps_per_epoch = 30, 8
    # one precision for both runs: "auto" measures in each run, and two runs may measure differently
    args = [*TINY, "--epochs", str(epochs), "--precision", "fp32"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = cli("core.train", *args, "--out", str(whole), timeout=300)
    assert done.returncode == 0, done.stderr
    rng = random.Random(20261201)
    targets = iter(sorted(rng.sample(range(4, epochs * steps_per_epoch - 24), 7)))
    kinds = ["start"] * 3 + ["train"] * 7
    rng.shuffle(kinds)
    kills: list[tuple[str, float, int | None]] = []
    log = open(tmp_path / "log.txt", "w")
    try:
        for kind in kinds:
            resume = (cut / "config.json").is_file()
            cmd = [PY, "-m", "core.train", "--out", str(cut), "--resume", "--quiet"] if resume else \
                [PY, "-m", "core.train", *args, "--out", str(cut)]
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
            started, wall = time.monotonic(), time.time()
            if not resume or kind == "train":  # the first kill lands once the run exists, so --resume continues it
                target = next(targets) if kind == "train" else None
                while not _reached(cut, wall, target):
                    assert proc.poll() is None, (tmp_path / "log.txt").read_text()[-2000:]
                    time.sleep(0.01)
                delay = rng.uniform(0.0, 0.3)  # somewhere in the steps after the target: a step, a validation, a write
            else:
                delay = rng.uniform(0.05, 2.0)
            try:
                proc.wait(timeout=delay)
                pytest.fail(f"the run ended before kill {len(kills) + 1} (kills so far {kills})")
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=30) == -signal.SIGKILL
            last = RunDir(cut).last
            kills.append((kind, round(time.monotonic() - started, 2), load_checkpoint(last)["step"]
                          if last.is_file() else None))  # every checkpoint left behind is whole
            live = RunDir(cut).live_status()
            assert live.get("state") != "running", live
            if live.get("state") == "failed":
                assert live.get("lost"), live
    finally:
        log.close()
    assert len({step for _, _, step in kills}) >= 3, f"the kills did not spread over the run: {kills}"
    final = cli("core.train", "--out", str(cut), "--resume", "--quiet", timeout=300)
    assert final.returncode == 0, final.stderr
    assert RunDir(cut).status()["state"] == "completed"
    print("kills (when, seconds after the start, last.pt step):", kills)
    assert _records(cut) == _records(whole), f"kills (when, seconds, last.pt step): {kills}"
    a, b = (torch.load(p / "checkpoints" / "last.pt", weights_only=True)["state"]["nets"]["generator"]
            for p in (whole, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("best_score", "best_step", "step"):
        assert RunDir(cut).status()[key] == RunDir(whole).status()[key]


# --- exposure --------------------------------------------------------------------------------------------------
def _listening(port: int) -> set[str]:
    """The local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # kernel words are little-endian
            found.add(socket.inet_ntop(family, raw))
    return found


def test_exposure_the_dashboard_listens_on_this_machine_only(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"COLORIZE_RUNS_DIR": str(tmp_path / "runs"), "COLORIZE_CACHE_DIR": str(tmp_path / "cache"),
                        "COLORIZE_DATA": "sample"}
    proc = subprocess.Popen([PY, "-m", "streamlit", "run", "dashboard/Home.py", "--server.port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 90
        while not (addresses := _listening(port)):
            assert proc.poll() is None and time.time() < deadline, "the dashboard did not start"
            time.sleep(0.2)
        time.sleep(1.0)  # a second listener (IPv6) would be up by now
        assert _listening(port) == {"127.0.0.1"}, addresses
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_refused_settings_limits_are_checked_once_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("COLORIZE_MAX_MEMBER_MB", "COLORIZE_MAX_ARCHIVE_MB", "COLORIZE_MAX_PIXELS"):
        for bad in ("", "nan", "inf", "-3", "ten"):
            monkeypatch.setenv(env, bad)
            if bad:
                with pytest.raises(ConfigError) as err:
                    limits.check_all()
                one_line(err.value, env)
            else:
                limits.check_all()  # empty: the default
        monkeypatch.delenv(env)
    assert limits.max_member_bytes() == 100_000_000 and limits.max_pixels() == 40_000_000


# --- the catalogue's counts in docs/reliability.md ----------------------------------------------------------
def test_the_counts_in_the_docs_are_the_catalogues() -> None:
    import importlib.util
    from collections import Counter

    spec = importlib.util.spec_from_file_location("reliability_report", ROOT / "tools" / "reliability_report.py")
    report = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = report  # its dataclass looks its module up there
    spec.loader.exec_module(report)
    cases = report.collect()
    counts = Counter((c.category, c.kind) for c in cases)
    assert len(cases) >= 60 and len({c.id for c in cases}) == len(cases)
    assert report.counts_in_doc(report.DOC.read_text()) == dict(counts), "run tools/reliability_report.py --write"


@pytest.mark.parametrize(("args", "needles"), [
    (("core.train", "--model", "unet", "--out", "x", "--width", "wide"), ("--width", "invalid int value", "'wide'")),
    (("core.train", "--model", "no-such", "--out", "x"), ("--model", "invalid choice", "no-such")),
    (("core.evaluate", "--run", "x", "--bogus"), ("unrecognized arguments: --bogus",)),
    (("core.study", "pick"), ("--run", "python -m core.study pick --help")),  # a subcommand names its own help
    (("core.photo_check", "--sizes", "big"), ("--sizes",)),
])
def test_refused_arguments_one_line_naming_the_help(args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    """A wrong option or value: the one error line names it and the command's --help, without argparse's usage
    block (every command line shares core.cli.ArgumentParser)."""
    result = cli(*args)
    assert_refused(result, *needles, f"python -m {args[0]}", "--help")
    assert "usage:" not in result.stderr
