"""The blind-test core: Wilson intervals, trials, and a tally file that concurrent writers share safely."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import threading
from pathlib import Path

import numpy as np
import pytest

from core.baselines import make_baseline
from core.blind_test import (
    FILE_ENV,
    TALLY_COLUMNS,
    BlindTestFileError,
    Trial,
    arrange,
    is_fooled,
    load_tallies,
    make_trial,
    record_answer,
    reset,
    tally_file,
    trial_pair,
    wilson_interval,
)


# --- Wilson interval --------------------------------------------------------------------------------------
def test_wilson_matches_hand_computation() -> None:
    k, n, z = 5, 10, 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = wilson_interval(k, n, z)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)


@pytest.mark.parametrize(("k", "n", "expected"), [
    (0, 10, (0.0, 0.2775)),
    (10, 10, (0.7225, 1.0)),
    (1, 10, (0.0179, 0.4042)),
    (50, 100, (0.4038, 0.5962)),
    (0, 1, (0.0, 0.7935)),
])
def test_wilson_known_values(k: int, n: int, expected: tuple[float, float]) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(expected[0], abs=1e-4) and hi == pytest.approx(expected[1], abs=1e-4)


def test_wilson_no_trials_is_whole_range_and_bad_counts_refused() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for k, n in ((3, 2), (-1, 4), (0, -1)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)


def test_wilson_narrows_with_more_trials_and_z() -> None:
    w_small = np.subtract(*reversed(wilson_interval(5, 10)))
    w_big = np.subtract(*reversed(wilson_interval(500, 1000)))
    assert w_big < w_small
    assert np.subtract(*reversed(wilson_interval(5, 10, z=2.576))) > w_small


# --- trials -----------------------------------------------------------------------------------------------
def test_make_trial_covers_images_models_and_sides() -> None:
    rng = np.random.default_rng(0)
    trials = [make_trial(rng, 7, ["a", "b", "c"]) for _ in range(600)]
    assert {t.model for t in trials} == {"a", "b", "c"}
    assert {t.real_side for t in trials} == {"left", "right"}
    assert {t.image_index for t in trials} == set(range(7))
    assert all(isinstance(t.image_index, int) for t in trials)
    # reproducible for a seeded generator
    assert make_trial(np.random.default_rng(3), 50, ["x", "y"]) == make_trial(np.random.default_rng(3), 50, ["x", "y"])


def test_make_trial_needs_images_and_models() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="image"):
        make_trial(rng, 0, ["a"])
    with pytest.raises(ValueError, match="model"):
        make_trial(rng, 5, [])


def test_fooled_means_clicking_the_colorization() -> None:
    t = Trial(3, "m", "left")
    assert not is_fooled(t, "left") and is_fooled(t, "right")
    assert is_fooled(Trial(3, "m", "right"), "left")
    with pytest.raises(ValueError):
        is_fooled(t, "middle")


def test_trial_pair_and_arrange(sample_images: np.ndarray) -> None:
    image = sample_images[0]
    real, fake = trial_pair(make_baseline("gray"), image)
    assert real.shape == fake.shape == image.shape and real.dtype == fake.dtype == np.uint8
    assert np.abs(real.astype(int) - image.astype(int)).max() <= 2  # Lab round trip of the real picture
    assert np.ptp(fake.astype(int), axis=2).max() <= 2  # the gray baseline's colorization is gray
    assert arrange(Trial(0, "m", "left"), real, fake)[0] is real
    assert arrange(Trial(0, "m", "right"), real, fake)[0] is fake


# --- the tally file ---------------------------------------------------------------------------------------
def test_tally_file_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(FILE_ENV, str(tmp_path / "x.json"))
    assert tally_file() == tmp_path / "x.json"
    monkeypatch.delenv(FILE_ENV)
    monkeypatch.setenv("COLORIZE_CACHE_DIR", str(tmp_path / "cache"))
    assert tally_file() == tmp_path / "cache" / "blind_test.json"


def test_record_load_reset(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tallies.json"
    empty = load_tallies(path)
    assert list(empty.columns) == list(TALLY_COLUMNS) and empty.empty
    assert record_answer(path, "unet", True) == {"trials": 1, "fooled": 1}
    record_answer(path, "unet", False)
    record_answer(path, "unet", True)
    record_answer(path, "dcgan", False)
    table = load_tallies(path).set_index("model")
    assert table.loc["unet", "trials"] == 3 and table.loc["unet", "fooled"] == 2
    assert table.loc["unet", "fooled_rate"] == pytest.approx(2 / 3)
    assert (table.loc["unet", "ci_low"], table.loc["unet", "ci_high"]) == pytest.approx(wilson_interval(2, 3))
    assert table.loc["dcgan", "fooled"] == 0 and table.loc["dcgan", "trials"] == 1
    assert json.loads(path.read_text())["models"]["unet"] == {"trials": 3, "fooled": 2}
    assert not list(path.parent.glob("*.tmp"))  # no temporary files left behind
    reset(path)
    assert load_tallies(path).empty


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"models": {"m": {"trials": 1}}}',
                                  '{"models": {"m": {"trials": 1, "fooled": 2}}}'])
def test_corrupt_file_gives_clear_error_and_is_not_overwritten(tmp_path: Path, text: str) -> None:
    path = tmp_path / "tallies.json"
    path.write_text(text)
    with pytest.raises(BlindTestFileError, match="reset"):
        load_tallies(path)
    with pytest.raises(ValueError, match=str(path.name)):
        record_answer(path, "m", True)
    assert path.read_text() == text
    reset(path)
    assert load_tallies(path).empty
    record_answer(path, "m", True)
    assert load_tallies(path)["trials"].tolist() == [1]


def test_empty_file_counts_as_no_answers(tmp_path: Path) -> None:
    path = tmp_path / "tallies.json"
    path.write_text("")
    assert load_tallies(path).empty


def test_interleaved_threads_lose_no_answers(tmp_path: Path) -> None:
    path = tmp_path / "tallies.json"
    n = 40

    def writer(model: str, fooled: bool) -> None:
        for _ in range(n):
            record_answer(path, model, fooled)

    threads = [threading.Thread(target=writer, args=("a", True)), threading.Thread(target=writer, args=("a", False)),
               threading.Thread(target=writer, args=("b", True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = load_tallies(path).set_index("model")
    assert table.loc["a", "trials"] == 2 * n and table.loc["a", "fooled"] == n
    assert table.loc["b", "trials"] == n and table.loc["b", "fooled"] == n


def _process_writer(path: str, model: str, n: int) -> None:
    for i in range(n):
        record_answer(path, model, i % 2 == 0)


def test_interleaved_processes_lose_no_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "tallies.json")
    n = 30
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    procs = [ctx.Process(target=_process_writer, args=(path, "m", n)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    table = load_tallies(path)
    assert table["trials"].tolist() == [2 * n] and table["fooled"].tolist() == [n]


def test_lock_without_flock_loses_no_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on systems without flock
    path = tmp_path / "tallies.json"
    threads = [threading.Thread(target=_process_writer, args=(str(path), "m", 20)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load_tallies(path)["trials"].tolist() == [40]
    assert not (tmp_path / "tallies.json.lock").exists()
