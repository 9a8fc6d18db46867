"""Random and hue-stratified splits: sizes, disjointness, determinism, hue balance, saving."""

from __future__ import annotations

import numpy as np
import pytest

from core.splits import Split, hue_split, make_split, random_split, split_stats, spread_subset


@pytest.fixture(scope="module")
def hues() -> np.ndarray:
    rng = np.random.default_rng(0)
    # a skewed, clustered hue distribution like real photos: lots of orange/blue, little else
    return np.concatenate([rng.normal(0.08, 0.03, 600) % 1, rng.normal(0.6, 0.05, 300) % 1, rng.uniform(0, 1, 100)])


def test_random_split_sizes_disjoint_and_seeded():
    tr, va = random_split(1000, 0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900
    assert not set(tr) & set(va) and set(tr) | set(va) == set(range(1000))
    tr2, va2 = random_split(1000, 0.1, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, random_split(1000, 0.1, seed=4)[1])


def test_hue_split_sends_every_kth_image_by_hue_to_validation(hues):
    tr, va = hue_split(hues, 0.1, seed=0)
    assert len(va) == 100 and len(tr) == 900 and not set(tr) & set(va)
    order = np.argsort(hues, kind="stable")
    assert np.array_equal(np.sort(order[::10]), va)
    assert np.array_equal(hue_split(hues, 0.1, seed=0)[1], va)  # deterministic
    assert not np.array_equal(hue_split(hues, 0.1, seed=1)[1], va)  # the seed picks the offset


def test_hue_split_ties_are_deterministic():
    hues = np.zeros(50)
    tr, va = hue_split(hues, 0.2)
    assert va.tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]


def test_hue_split_balances_hue_better_than_random(hues):
    gray = np.zeros(len(hues), bool)
    ks = {}
    for kind in ("random", "hue"):
        ks[kind] = [split_stats(make_split(hues, gray, 0, kind, 0.1, seed), hues, np.zeros(len(hues), int))["ks_hue"]
                    for seed in range(5)]
    assert max(ks["hue"]) < 0.02  # every k-th by hue: the two distributions are nearly identical
    assert np.mean(ks["random"]) > 2 * max(ks["hue"])


def test_make_split_drops_grayscale_first_and_keeps_test_whole(hues):
    gray = np.zeros(len(hues), bool)
    gray[[3, 50, 999]] = True
    for kind in ("random", "hue"):
        sp = make_split(hues, gray, n_test=77, kind=kind, val_fraction=0.2, seed=1)
        assert sp.dropped.tolist() == [3, 50, 999]
        used = np.concatenate([sp.train, sp.val])
        assert len(used) == 997 and len(set(used.tolist())) == 997 and not set(used.tolist()) & {3, 50, 999}
        assert sp.test.tolist() == list(range(77))
    with pytest.raises(ValueError, match="unknown split"):
        make_split(hues, gray, 0, kind="stratified")
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(hues, gray, 0, val_fraction=1.5)


def test_split_saves_and_loads_with_parameters(tmp_path, hues):
    sp = make_split(hues, np.zeros(len(hues), bool), 10, "hue", 0.1, 2, source="sample")
    sp.save(tmp_path / "split.json")
    back = Split.load(tmp_path / "split.json")
    assert back.params() == sp.params() and back.params()["kind"] == "hue"
    for k in ("train", "val", "test", "dropped"):
        assert np.array_equal(getattr(back, k), getattr(sp, k))


def test_split_stats_histograms_and_class_counts(hues):
    labels = np.arange(len(hues)) % 10
    sp = make_split(hues, np.zeros(len(hues), bool), 0, "random", 0.1, 0)
    s = split_stats(sp, hues, labels, bins=36)
    assert sum(s["hue_histogram"]["train"]) == s["n_train"] == 900
    assert sum(s["hue_histogram"]["val"]) == s["n_val"] == 100
    assert len(s["hue_histogram"]["val"]) == 36
    assert sum(s["class_counts"]["train"]) + sum(s["class_counts"]["val"]) == 1000
    assert 0.0 <= s["ks_hue"] <= 1.0


def test_spread_subset_draws_across_class_ordered_data():
    labels = np.repeat(np.arange(10), 100)  # parts are stored class by class
    rows = spread_subset(len(labels), 50, seed=3)
    assert len(rows) == 50 and len(set(rows.tolist())) == 50 and (np.diff(rows) > 0).all()
    assert len(np.unique(labels[rows])) >= 8  # the first 50 would all be class 0
    assert spread_subset(len(labels), 50, seed=3).tolist() == rows.tolist()
    assert spread_subset(len(labels), 50, seed=4).tolist() != rows.tolist()
    assert spread_subset(7, None).tolist() == list(range(7)) == spread_subset(7, 7).tolist() == \
        spread_subset(7, 100).tolist()
    with pytest.raises(ValueError, match="at least one"):
        spread_subset(7, 0)
