"""core.atomic: content written, nothing left behind, the old file kept on failure, 0644, stale cleanup."""

from __future__ import annotations

import io
import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    is_temporary,
    remove_stale_temporaries,
    temporary_prefix,
)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_bytes_and_text_are_written_and_nothing_is_left(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "deeper" / "data.bin"  # missing folders are made
    assert atomic_write_bytes(target, b"\x00\x01abc") == target
    assert target.read_bytes() == b"\x00\x01abc"
    text = tmp_path / "status.json"
    atomic_write_text(text, json.dumps({"state": "running", "note": "ünïcode"}))
    assert json.loads(text.read_text(encoding="utf-8")) == {"state": "running", "note": "ünïcode"}
    atomic_write_text(text, "second")  # replaces an existing file
    assert text.read_text() == "second"
    assert _temporaries(tmp_path) == [] and _temporaries(target.parent) == []


def test_callable_writers_torch_png_npy(tmp_path: Path) -> None:
    payload = {"w": torch.arange(6.0).reshape(2, 3), "step": 7}
    atomic_write(tmp_path / "c.pt", lambda f: torch.save(payload, f))
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert back["step"] == 7 and torch.equal(back["w"], payload["w"])

    from PIL import Image

    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    atomic_write(tmp_path / "p.png", lambda f: Image.fromarray(image).save(f, format="PNG"))
    with Image.open(tmp_path / "p.png") as im:
        assert np.array_equal(np.asarray(im), image)

    arr = np.linspace(0, 1, 10)
    atomic_write(tmp_path / "a.npy", lambda f: np.save(f, arr))
    assert np.array_equal(np.load(tmp_path / "a.npy"), arr)
    atomic_write(tmp_path / "a.npz", lambda f: np.savez(f, x=arr))  # a file object: no second ".npz" appended
    with np.load(tmp_path / "a.npz") as z:
        assert np.array_equal(z["x"], arr)
    assert _temporaries(tmp_path) == []


def test_a_writer_that_closes_its_file_still_works(tmp_path: Path) -> None:
    def write(f: io.BufferedWriter) -> None:
        f.write(b"closed early")
        f.close()

    atomic_write(tmp_path / "x", write)
    assert (tmp_path / "x").read_bytes() == b"closed early" and _temporaries(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failing_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, error: type) -> None:
    target = tmp_path / "best.pt"
    target.write_bytes(b"old content")

    def half_then_fail(f: io.BufferedWriter) -> None:
        f.write(b"half of the new")
        raise error("disk full")

    with pytest.raises(error, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old content"
    assert _temporaries(tmp_path) == []
    with pytest.raises(TypeError):  # an error while encoding, before any byte is written
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old content" and _temporaries(tmp_path) == []


def test_files_are_0644_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "config.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644


def test_temporary_names_and_stale_cleanup(tmp_path: Path) -> None:
    seen: list[str] = []
    atomic_write(tmp_path / "status.json", lambda f: seen.extend(p.name for p in _temporaries(tmp_path)))
    assert len(seen) == 1 and seen[0].startswith(temporary_prefix(tmp_path / "status.json")) and is_temporary(seen[0])

    stale = [tmp_path / ".last.pt.ab12_xyz.tmp", tmp_path / ".status.json.k3j9qq0w.tmp"]
    for p in stale:
        p.write_bytes(b"left by a killed write")
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / ".best.pt.0123abcd.tmp"
    nested.write_bytes(b"x")
    kept = [tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / ".a.TOOLONG123.tmp", tmp_path / "last.pt"]
    for p in kept:
        p.write_bytes(b"keep")
    (tmp_path / ".folder.abcd1234.tmp").mkdir()  # only files are removed

    assert remove_stale_temporaries(tmp_path) == sorted(stale)
    assert nested.exists() and all(p.exists() for p in kept) and (tmp_path / ".folder.abcd1234.tmp").is_dir()
    assert remove_stale_temporaries(tmp_path, recursive=True) == [nested]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_stale_cleanup_spares_young_files(tmp_path: Path) -> None:
    young, old = tmp_path / ".a.json.aaaaaaaa.tmp", tmp_path / ".b.json.bbbbbbbb.tmp"
    young.write_bytes(b"")
    old.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert remove_stale_temporaries(tmp_path, min_age_s=60) == [old]
    assert young.exists()
