"""core.run_table and core.tags on real tiny runs: the comparison table, differing settings, filters, search and
sorting, curves of several runs (x axes, smoothing, NoGAN's phases), sample grids by epoch, tags, and the models
Home and the Blind test offer by default."""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from core import run_table as rt
from core.atomic import is_temporary
from core.config import TrainConfig
from core.inference import available_models
from core.runs import PROJECT_ROOT, RunDir
from core.tags import (
    TagError,
    add_tag,
    check_tag,
    featured_models,
    has_tag,
    parse_tags,
    read_tags,
    remove_tag,
    set_tags,
    tags_file,
)
from core.train import train

TINY = dict(source="sample", epochs=1, limit=128, val_limit=32, width=8, batch_size=32, threads=1, log_every=1)
CLASSIFIER = PROJECT_ROOT / "checkpoints" / "classifier.pt"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real one-epoch runs on 128 sample images: two U-Nets that differ in lr and validations per epoch,
    a DCGAN, and a NoGAN (generator, critic, GAN) whose feature network is the shipped classifier."""
    root = tmp_path_factory.mktemp("run-table") / "runs"
    train(TrainConfig(model="unet", **TINY), root / "unet-a", progress=False)
    train(TrainConfig(model="unet", lr=1e-3, val_per_epoch=2, **TINY), root / "unet-b", progress=False)
    train(TrainConfig(model="dcgan", **TINY), root / "dcgan-a", progress=False)
    train(TrainConfig(model="nogan", options={"feature_net": str(CLASSIFIER), "critic_epochs": 0.5,
                                              "gan_fraction": 0.5, "gan_checkpoints": 1}, **TINY),
          root / "nogan-a", progress=False)
    return root


@pytest.fixture
def copy_dir(runs_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the runs folder, for tests that tag runs."""
    out = tmp_path / "runs"
    shutil.copytree(runs_dir, out)
    return out


def run(root: Path, name: str) -> RunDir:
    return RunDir(root / name)


def records(root: Path, name: str, kind: str | None = None) -> list[dict]:
    lines = (root / name / "metrics.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in lines]
    return [r for r in out if kind is None or r["type"] == kind]


# --- the comparison table ------------------------------------------------------------------------------------------
def test_table_has_a_row_per_run_with_state_progress_and_best_figures(runs_dir):
    table = rt.comparison_table(runs_dir=runs_dir)
    assert list(table["run"]) == ["nogan-a", "dcgan-a", "unet-b", "unet-a"]  # newest first
    by = table.set_index("run")
    assert set(by["state"]) == {"completed"}
    assert by.loc["unet-a", "method"] == "unet" and by.loc["dcgan-a", "method"] == "dcgan"
    assert by.loc["unet-a", "steps"] == 4 and by.loc["nogan-a", "steps"] == 8  # 4 steps an epoch, 3 phases
    assert by.loc["nogan-a", "epochs_done"] == pytest.approx(2.0)
    for name in ("unet-a", "unet-b", "dcgan-a", "nogan-a"):
        vals = records(runs_dir, name, "val")
        assert by.loc[name, "best_auc_ab"] == pytest.approx(max(r["auc_ab"] for r in vals))
        assert by.loc[name, "lowest_mae_rgb"] == pytest.approx(min(r["mae_rgb"] for r in vals))
        ratios = [r["colorfulness_ratio"] for r in vals]
        assert by.loc[name, "ratio_nearest_1"] == pytest.approx(min(ratios, key=lambda v: abs(v - 1)))
        status = json.loads((runs_dir / name / "status.json").read_text())
        assert by.loc[name, "best_step"] == status["best_step"]
        at_best = [r for r in vals if r["step"] == status["best_step"]][-1]
        assert by.loc[name, "ratio_at_best"] == pytest.approx(at_best["colorfulness_ratio"])
        assert 0 < by.loc[name, "wall_s"] < 600
        assert math.isnan(by.loc[name, "best_accuracy"])  # colorizers log no accuracy
    assert len(records(runs_dir, "unet-b", "val")) == 2  # two validations an epoch


def test_table_holds_every_setting_and_the_methods_own(runs_dir):
    table = rt.comparison_table(runs_dir=runs_dir).set_index("run")
    settings = rt.setting_columns(table.reset_index())
    for name in ("source", "split", "epochs", "width", "batch_size", "lr", "seed", "limit", "val_limit",
                 "l1_weight", "critic_epochs", "feature_layers"):
        assert name in settings, name
    assert "model" not in table.columns and "run" not in settings and "best_auc_ab" not in settings
    assert table.loc["unet-b", "lr"] == pytest.approx(1e-3) and pd.isna(table.loc["unet-a", "lr"])
    assert table.loc["unet-a", "width"] == 8 and table.loc["unet-a", "limit"] == 128
    assert table.loc["dcgan-a", "l1_weight"] == 100.0 and pd.isna(table.loc["unet-a", "l1_weight"])
    assert table.loc["nogan-a", "feature_layers"] == "0 1 2" and table.loc["nogan-a", "critic_epochs"] == 0.5


def test_differing_settings(runs_dir):
    table = rt.comparison_table(runs_dir=runs_dir)
    unets = table[table["run"].isin(["unet-a", "unet-b"])]
    assert set(rt.differing_settings(unets)) == {"lr", "val_per_epoch"}
    every = set(rt.differing_settings(table))
    assert {"lr", "val_per_epoch", "l1_weight", "critic_epochs", "feature_net"} <= every
    assert not every & {"width", "batch_size", "source", "seed", "limit", "epochs"}
    assert rt.differing_settings(table.iloc[:1]) == []


def test_a_job_that_has_not_saved_its_config_reads_its_command(tmp_path, runs_dir):
    from core.runs import start_job

    start_job({"model": "dcgan", "width": "16", "lr": "0.0005", "out": str(tmp_path / "fresh")},
              launcher=lambda cmd, log: 999_999)
    row = rt.comparison_table(runs_dir=tmp_path).iloc[0]
    assert row["run"] == "fresh" and row["method"] == "dcgan"
    assert row["width"] == 16 and row["lr"] == pytest.approx(5e-4)  # typed as the options declare them
    assert row["steps"] is None or pd.isna(row["steps"])


# --- filters, search and sorting -----------------------------------------------------------------------------------
def test_filter_by_method_state_tag_and_text(copy_dir):
    set_tags(run(copy_dir, "unet-b"), ["keep"])
    set_tags(run(copy_dir, "dcgan-a"), ["archive", "gan"])
    table = rt.comparison_table(runs_dir=copy_dir)
    ids = lambda t: sorted(t["run"])  # noqa: E731
    assert ids(rt.filter_runs(table, methods=["unet"])) == ["unet-a", "unet-b"]
    assert ids(rt.filter_runs(table, states=["failed"])) == []
    assert ids(rt.filter_runs(table, states=["completed"])) == ids(table)
    assert ids(rt.filter_runs(table, tags=["keep"])) == ["unet-b"]
    assert ids(rt.filter_runs(table, tags=["keep", "gan"])) == ["dcgan-a", "unet-b"]
    assert ids(rt.filter_runs(table, show_archived=False)) == ["nogan-a", "unet-a", "unet-b"]
    assert ids(rt.filter_runs(table, text="GAN")) == ["dcgan-a", "nogan-a"]  # case-insensitive, name and method
    assert ids(rt.filter_runs(table, text="lr=0.001")) == ["unet-b"]  # setting=value
    assert ids(rt.filter_runs(table, text="unet val_per_epoch=2")) == ["unet-b"]  # every word
    assert ids(rt.filter_runs(table, text="width=8")) == ids(table)
    assert ids(rt.filter_runs(table, text="width=16")) == []
    assert rt.all_tags(table) == ["archive", "gan", "keep"]


def test_sort_runs(runs_dir):
    table = rt.comparison_table(runs_dir=runs_dir)
    by_auc = rt.sort_runs(table, "best_auc_ab", ascending=False)
    assert list(by_auc["best_auc_ab"]) == sorted(table["best_auc_ab"], reverse=True)
    by_lr = rt.sort_runs(table, "lr")
    assert by_lr.iloc[0]["run"] == "unet-b" and by_lr["lr"].iloc[1:].isna().all()  # missing values last
    assert list(rt.sort_runs(table, "run")["run"]) == ["dcgan-a", "nogan-a", "unet-a", "unet-b"]
    with pytest.raises(KeyError):
        rt.sort_runs(table, "no-such-column")


# --- curves ----------------------------------------------------------------------------------------------------------
def test_overlay_frame_on_each_axis(runs_dir):
    runs = [run(runs_dir, "unet-a"), run(runs_dir, "dcgan-a")]
    steps = rt.overlay_frame(runs, "loss", "step")
    assert list(steps.columns) == list(rt.OVERLAY_COLUMNS)
    assert set(steps["run"]) == {"unet-a", "dcgan-a"}
    assert sorted(steps[steps["run"] == "unet-a"]["x"].unique()) == [1, 2, 3, 4]  # log_every 1
    assert set(steps[steps["run"] == "dcgan-a"]["metric"]) >= {"g_loss", "d_loss", "g_l1"}
    assert (steps["value"] == steps["raw"]).all()
    logged = [r["mse"] for r in records(runs_dir, "unet-a", "step")]
    assert list(steps[(steps["run"] == "unet-a") & (steps["metric"] == "mse")]["value"]) == pytest.approx(logged)

    epochs = rt.overlay_frame(runs, "loss", "epoch")
    assert sorted(epochs[epochs["run"] == "unet-a"]["x"].unique()) == [0.25, 0.5, 0.75, 1.0]
    times = rt.overlay_frame(runs, "loss", "time")
    wall = rt.comparison_table(runs).set_index("run")["wall_s"]
    for name in ("unet-a", "dcgan-a"):
        xs = times[times["run"] == name]["x"]
        assert (xs >= 0).all() and xs.is_monotonic_increasing and xs.max() <= wall[name] + 1e-6
    val = rt.overlay_frame(runs, "val", "step", metrics=["auc_ab", "mae_rgb"])
    assert set(val["metric"]) == {"auc_ab", "mae_rgb"} and len(val) == 4  # one validation each
    with pytest.raises(ValueError):
        rt.overlay_frame(runs, "loss", "minutes")


def test_curve_names(runs_dir):
    runs = [run(runs_dir, "unet-a"), run(runs_dir, "dcgan-a")]
    assert rt.curve_names(runs, "loss")[0] == "mse" and "d_loss" in rt.curve_names(runs, "loss")
    val = rt.curve_names(runs, "val")
    assert {"auc_ab", "mae_rgb", "colorfulness_ratio", "val_loss"} <= set(val) and "score" not in val


def test_default_curves_give_every_run_one_of_its_own(runs_dir):
    unet, nogan, dcgan = run(runs_dir, "unet-a"), run(runs_dir, "nogan-a"), run(runs_dir, "dcgan-a")
    first = rt.default_curves([nogan, unet], "loss")
    assert len(first) == 4 and "mse" in first and first[0] == rt.curve_names([nogan], "loss")[0]
    assert rt.default_curves([unet], "loss") == ["mse"]
    assert rt.default_curves([unet, dcgan], "val", preferred=("mae_rgb", "accuracy", "auc_ab")) == ["mae_rgb", "auc_ab"]
    assert rt.default_curves([unet, dcgan], "loss", preferred=("g_loss",)) == ["g_loss", "mse"]  # unet: its own
    assert rt.default_curves([], "loss") == []


def test_ema_is_tensorboards_debiased_average():
    assert rt.ema([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert rt.ema([5.0, 1.0], 0.0) == [5.0, 1.0]
    out = rt.ema([2.0, float("nan"), 2.0], 0.9)
    assert out[0] == pytest.approx(2.0) and math.isnan(out[1]) and out[2] == pytest.approx(2.0)
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(ValueError):
            rt.ema([1.0], bad)


def test_smoothing_changes_values_within_each_phase(runs_dir):
    frame = rt.overlay_frame([run(runs_dir, "unet-a"), run(runs_dir, "nogan-a")], "loss", "step")
    smooth = rt.smooth_frame(frame, 0.8)
    assert (smooth["raw"] == frame["raw"]).all() and list(smooth["run"]) == list(frame["run"])
    assert not (smooth["value"] == smooth["raw"]).all()
    for (name, metric, phase), curve in smooth.groupby(["run", "metric", "phase"]):
        assert curve["value"].iloc[0] == pytest.approx(curve["raw"].iloc[0]), (name, metric, phase)
        assert curve["value"].tolist() == pytest.approx(rt.ema(curve["raw"].tolist(), 0.8))
    assert (rt.smooth_frame(frame, 0.0)["value"] == frame["value"]).all()
    with pytest.raises(ValueError):
        rt.smooth_frame(frame, 1.0)


def test_phase_starts_of_nogan(runs_dir):
    nogan, unet = run(runs_dir, "nogan-a"), run(runs_dir, "unet-a")
    steps = rt.phase_starts([unet, nogan], "step")
    assert list(steps["run"]) == ["nogan-a", "nogan-a"] and list(steps["phase"]) == ["critic", "gan"]
    assert list(steps["x"]) == [4, 6]  # where generator and critic ended, as core.runs.phase_spans counts
    from core.runs import phase_spans

    assert [s["start"] for s in phase_spans(records(runs_dir, "nogan-a"))[1:]] == [4, 6]
    assert list(rt.phase_starts([nogan], "epoch")["x"]) == [1.0, 1.5]
    times = rt.phase_starts([nogan], "time")["x"]
    assert 0 < times.iloc[0] < times.iloc[1]
    frame = rt.overlay_frame([nogan], "loss", "step")
    assert list(dict.fromkeys(frame["phase"])) == ["generator", "critic", "gan"]


# --- sample grids ----------------------------------------------------------------------------------------------------
def test_sample_files_and_the_nearest_one(runs_dir):
    a, b, nogan = run(runs_dir, "unet-a"), run(runs_dir, "unet-b"), run(runs_dir, "nogan-a")
    assert [(s.path.name, s.epoch, s.step) for s in rt.sample_files(a)] == [("epoch_001.png", 1.0, 4)]
    assert [(s.path.name, s.epoch) for s in rt.sample_files(b)] == [("train_step_000002.png", 0.5),
                                                                     ("train_step_000004.png", 1.0)]
    assert [(s.phase, s.epoch) for s in rt.sample_files(nogan)] == [("train", 1.0), ("critic", 1.5), ("gan", 2.0)]
    assert rt.nearest_sample(b, 0.6).path.name == "train_step_000002.png"
    assert rt.nearest_sample(b, 0.75).path.name == "train_step_000002.png"  # a tie: the earlier
    assert rt.nearest_sample(a, 2.0).path.name == "epoch_001.png"
    assert rt.nearest_sample(nogan, 1.9).path.name == "gan_step_000008.png"
    assert rt.sample_epochs([a, b, nogan]) == [0.5, 1.0, 1.5, 2.0]
    empty = RunDir(runs_dir.parent / "nothing")
    assert rt.sample_files(empty) == [] and rt.nearest_sample(empty, 1.0) is None


# --- tags ------------------------------------------------------------------------------------------------------------
def test_tags_are_stored_in_the_run_folder_atomically(copy_dir):
    r = run(copy_dir, "unet-a")
    assert read_tags(r) == [] and not tags_file(r).exists()
    assert set_tags(r, ["Keep", "best-unet", "keep"]) == ["best-unet", "keep"]
    assert json.loads(tags_file(r).read_text())["tags"] == ["best-unet", "keep"]
    assert read_tags(r.path) == ["best-unet", "keep"] and has_tag(r, "keep")
    assert add_tag(r, "archive") == ["archive", "best-unet", "keep"]
    assert remove_tag(r, "best-unet") == ["archive", "keep"]
    assert remove_tag(r, "absent") == ["archive", "keep"]
    assert read_tags(RunDir(copy_dir / "unet-a")) == ["archive", "keep"]  # read back from disk
    assert not [p for p in r.path.iterdir() if is_temporary(p)]


@pytest.mark.parametrize("bad", ["", "two words", "../up", "é", "-dash-first", "x" * 33, "a/b", "semi;colon"])
def test_bad_tag_names_write_nothing(copy_dir, bad):
    r = run(copy_dir, "unet-a")
    set_tags(r, ["keep"])
    with pytest.raises(TagError):
        check_tag(bad)
    with pytest.raises(TagError):
        set_tags(r, ["archive", bad])
    with pytest.raises(TagError):
        add_tag(r, bad)
    assert read_tags(r) == ["keep"]


def test_parse_tags_and_damaged_files(copy_dir):
    assert parse_tags(" keep, Archive  gan-1 ") == ["archive", "gan-1", "keep"]
    r = run(copy_dir, "unet-b")
    tags_file(r).write_text("{oops")
    assert read_tags(r) == []
    with pytest.raises(TagError, match="not valid JSON"):
        read_tags(r, strict=True)
    with pytest.raises(TagError):
        add_tag(r, "keep")  # a damaged file is not silently replaced by a change...
    assert tags_file(r).read_text() == "{oops"
    assert set_tags(r, ["keep"]) == ["keep"] and read_tags(r, strict=True) == ["keep"]  # ...but can be set again
    with pytest.raises(TagError):
        set_tags(copy_dir / "no-such-run", ["keep"])


def test_concurrent_tagging_keeps_every_tag(copy_dir):
    r = run(copy_dir, "dcgan-a")
    names = [f"t{i}" for i in range(16)]
    threads = [threading.Thread(target=add_tag, args=(r, n)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_tags(r) == sorted(names)


def test_signature_changes_with_tags(copy_dir):
    before = rt.runs_signature(copy_dir)
    assert rt.runs_signature(copy_dir) == before
    add_tag(run(copy_dir, "unet-a"), "keep")
    assert rt.runs_signature(copy_dir) != before


# --- the models Home and the Blind test offer ------------------------------------------------------------------------
def test_featured_models_are_shipped_and_keep_tagged_runs(copy_dir, tmp_path):
    shipped = PROJECT_ROOT / "checkpoints"
    every = available_models(shipped, copy_dir)
    runs = [e.name for e in every if e.kind == "run"]
    assert sorted(runs) == ["run:dcgan-a", "run:nogan-a", "run:unet-a", "run:unet-b"]
    shipped_names = [e.name for e in every if e.kind == "shipped"]
    assert shipped_names  # the project ships models
    assert [e.name for e in featured_models(every)] == shipped_names
    add_tag(run(copy_dir, "unet-b"), "keep")
    add_tag(run(copy_dir, "dcgan-a"), "archive")
    every = available_models(shipped, copy_dir)
    assert [e.name for e in featured_models(every)] == [*shipped_names, "run:unet-b"]
    assert featured_models(every, show_all=True) == every
    none_shipped = available_models(tmp_path / "no-checkpoints", copy_dir)
    assert [e.name for e in featured_models(none_shipped)] == ["run:unet-b"]
    assert featured_models([]) == []
