"""Prepared data and the ``python -m core.data`` command line: JSON summary, cached statistics, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data import prepare, prepare_from_split
from core.sources import DataSourceError

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core.data", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_prepare_splits_the_sample_and_keeps_test_whole():
    p = prepare("sample", "hue", 0.1, 0, progress=False)
    assert len(p.images("test")) == 1000
    n_used = len(p.split.train) + len(p.split.val)
    assert n_used + len(p.split.dropped) == 1000
    assert len(p.split.val) == pytest.approx(n_used * 0.1, abs=1)
    assert p.images("train").shape[1:] == (32, 32, 3) and p.images("train").dtype == np.uint8
    # dropped images really are grayscale by the rule, kept ones are not
    max_ab = p.stats["train"]["max_abs_ab"]
    assert (max_ab[p.split.dropped] <= 5.0).all() and (max_ab[p.split.train] > 5.0).all()
    with pytest.raises(ValueError, match="unknown subset"):
        p.images("holdout")


def test_split_round_trips_through_its_file(tmp_path):
    p = prepare("sample", "random", 0.2, 3, progress=False)
    p.split.save(tmp_path / "split.json")
    from core.splits import Split

    again = prepare_from_split(Split.load(tmp_path / "split.json"), progress=False)
    assert np.array_equal(again.split.val, p.split.val) and again.split.kind == "random"


def test_cli_writes_the_json_summary(tmp_path):
    out = tmp_path / "summary.json"
    r = _cli("--source", "sample", "--split", "hue", "--val-fraction", "0.1", "--seed", "0", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "grayscale dropped" in r.stdout
    s = json.loads(out.read_text())
    for key in ("n_total", "n_grayscale_dropped", "n_train", "n_val", "n_test", "ks_hue"):
        assert key in s, key
    assert s["n_total"] == 1000 and s["n_test"] == 1000
    assert s["n_train"] + s["n_val"] + s["n_grayscale_dropped"] == s["n_total"]
    for part in ("train", "val", "test"):
        assert len(s["hue_histogram"][part]) == 36
        assert sum(s["class_counts"][part]) == {"train": s["n_train"], "val": s["n_val"], "test": 1000}[part]
    assert sum(s["hue_histogram"]["val"]) == s["n_val"]


def test_hue_split_has_smaller_ks_than_random_on_real_images():
    ks = {k: prepare("sample", k, 0.1, 0, progress=False).summary()["ks_hue"] for k in ("random", "hue")}
    assert ks["hue"] < ks["random"] / 2


@pytest.mark.parametrize("make", ["missing", "empty", "not_archive"])
def test_cli_bad_source_is_one_clear_line(tmp_path, make):
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "not_archive":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    r = _cli("--source", str(path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr


def test_prepare_raises_data_source_error_for_missing_path(tmp_path):
    with pytest.raises(DataSourceError):
        prepare(str(tmp_path / "nothing.tar.gz"), progress=False)
