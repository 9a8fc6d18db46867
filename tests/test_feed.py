"""Pictures of any size, resident or streamed: the same batches either way (and in any number of processes),
memory-mapped caches, --size, random resized crops."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import load_checkpoint
from core.config import ConfigError, TrainConfig
from core.data import prepare_for
from core.distributed import SINGLE, World
from core.feed import (
    StepBatches,
    StreamedImages,
    choose_mode,
    crop_boxes,
    crop_resize,
    default_workers,
    open_feed,
    resident_bytes,
)
from core.figures import picture_grid
from core.runs import RunDir
from core.sources import images_file, load_dataset
from core.train import config_from_args, parse_args, train

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def tiny(model: str = "unet", **kw) -> TrainConfig:
    base = dict(model=model, source="sample", split="hue", epochs=1, limit=256, val_limit=64, width=8,
                disc_width=8, batch_size=32, log_every=1, n_samples=4, threads=1, workers=1, precision="fp32")
    return TrainConfig.from_dict(base | kw).checked()


def first_batches(cfg: TrainConfig, n: int = 3, world: World = SINGLE) -> list[dict[str, torch.Tensor]]:
    feed = dataclasses.replace(open_feed(cfg, CPU, SINGLE, progress=False), world=world)
    it = feed.batches(0, 0, 0, n, ("L", "ab", "rgb", "label"))
    return [next(it) for _ in range(n)]


# --- the same batches in both modes and any number of processes --------------------------------------------
@pytest.mark.parametrize("extra", [{}, {"crop_scale": 0.4}, {"flip": False, "size": 48}])
def test_streamed_and_resident_modes_give_identical_first_batches(extra):
    resident = first_batches(tiny(data_mode="resident", **extra))
    streamed = first_batches(tiny(data_mode="stream", **extra))
    for a, b in zip(resident, streamed):
        assert set(a) == set(b) == {"L", "ab", "rgb", "label"}
        for key in a:
            assert torch.equal(a[key], b[key]), key
    size = extra.get("size", 32)
    assert resident[0]["L"].shape == (32, 1, size, size) and resident[0]["ab"].shape == (32, 2, size, size)
    assert not torch.equal(resident[0]["L"], resident[1]["L"])  # successive steps: different pictures


@pytest.mark.parametrize("mode", ["resident", "stream"])
def test_each_process_takes_its_slice_of_the_global_batch(mode):
    cfg = tiny(data_mode=mode, crop_scale=0.5)
    whole = first_batches(cfg, 2)
    halves = [first_batches(cfg, 2, World(rank, 2, rank, 2)) for rank in (0, 1)]
    for step in range(2):
        for key in whole[step]:
            joined = torch.cat([halves[0][step][key], halves[1][step][key]])
            assert torch.equal(joined, whole[step][key]), (step, key)


def test_default_workers_leave_the_training_threads_their_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    assert default_workers(SINGLE, CPU) == 2
    assert default_workers(World(0, 2, 0, 2), CPU) == 0  # 4 cores each, all taken by 6 threads
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert default_workers(SINGLE, CPU) == 4 and default_workers(SINGLE, torch.device("cuda")) == 4


def test_step_batches_visit_every_picture_once_an_epoch_and_split_evenly():
    sampler = StepBatches(seed=3, phase_index=0, n=100, batch_size=20, steps_per_epoch=5, start=0, end=10)
    steps = list(sampler)
    assert len(steps) == 10 and all(len(s) == 20 for s in steps)
    for epoch in (0, 1):
        assert sorted(sum(steps[epoch * 5 : epoch * 5 + 5], [])) == list(range(100))
    assert steps[:5] != steps[5:]  # a new order each epoch
    shards = [list(StepBatches(3, 0, 100, 20, 5, 0, 10, rank, 4)) for rank in range(4)]
    for k in range(10):
        assert sum((shards[r][k] for r in range(4)), []) == steps[k]
    resumed = list(StepBatches(3, 0, 100, 20, 5, 7, 10))
    assert resumed == steps[7:]
    with pytest.raises(ValueError, match="does not split"):
        StepBatches(3, 0, 100, 20, 5, 0, 10, 0, 3)


def test_a_streamed_run_trains_exactly_as_a_resident_run(tmp_path):
    finals = {}
    for mode in ("resident", "stream"):
        status = train(tiny(data_mode=mode, crop_scale=0.6), tmp_path / mode, progress=False)
        assert status["state"] == "completed" and status["data_mode"] == mode
        finals[mode] = load_checkpoint(tmp_path / mode / "checkpoints" / "last.pt")
    a, b = (finals[m]["state"]["nets"]["generator"] for m in ("resident", "stream"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert finals["resident"]["metrics"] == finals["stream"]["metrics"]
    assert "--data-mode stream" in RunDir(tmp_path / "stream").status()["data_reason"]


def test_auto_mode_streams_when_the_tensors_exceed_half_the_free_memory(tmp_path, monkeypatch):
    import core.feed

    need = resident_bytes(256 + 64, 32)
    monkeypatch.setattr(core.feed, "free_bytes", lambda _device: 2 * need)
    assert choose_mode(tiny(), 320, CPU, SINGLE)[0] == "resident"
    assert choose_mode(tiny(), 320, CPU, World(0, 2, 0, 2))[0] == "stream"  # two processes hold two copies
    monkeypatch.setattr(core.feed, "free_bytes", lambda _device: need)
    mode, why = choose_mode(tiny(), 320, CPU, SINGLE)
    assert mode == "stream" and "above" in why and "half the free memory" in why
    assert choose_mode(tiny(data_mode="resident"), 320, CPU, SINGLE)[0] == "resident"
    status = train(tiny(), tmp_path / "auto", progress=False)
    assert status["data_mode"] == "stream" and "above the" in status["data_reason"]
    assert status["world_size"] == 1 and json.loads((tmp_path / "auto" / "config.json").read_text())["world_size"] == 1


# --- --size ---------------------------------------------------------------------------------------------------
def test_size_trains_and_evaluates_at_that_size(tmp_path, capsys):
    from core.evaluate import evaluate
    from core.inference import load_colorizer

    out = tmp_path / "run48"
    status = train(tiny(size=48, limit=128, data_mode="stream"), out, progress=False)
    assert status["state"] == "completed" and "images at 48x48" in capsys.readouterr().out
    ckpt = load_checkpoint(out / "checkpoints" / "best.pt")
    assert ckpt["config"]["size"] == 48
    grid = np.asarray(Image.open(next((out / "samples").glob("*.png"))))
    L, ab = torch.zeros(4, 1, 48, 48), torch.zeros(4, 2, 48, 48)
    assert grid.shape[:2] == picture_grid(L, {"predicted": ab}, ab, scale=3).shape[:2]  # 4 rows of 48x48 pictures
    prepared = prepare_for(ckpt["config"])
    assert prepared.images("test").shape[1:] == (48, 48, 3)
    result = evaluate(load_colorizer(out), prepared, "test", limit=32, ssim=False)
    assert 0 < result.metrics["auc_ab"] <= 100


def test_a_size_the_networks_cannot_take_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--size must be a multiple of 16"):
        config_from_args(parse_args(["--size", "40", "--out", str(tmp_path / "r")]))
    r = subprocess.run([sys.executable, "-m", "core.train", "--size", "40", "--out", str(tmp_path / "r")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "multiple of 16" in r.stderr
    assert not (tmp_path / "r").exists()


# --- caches: memory maps and the upscale filter ---------------------------------------------------------------
def test_memory_mapped_cache_reads_the_same_pictures():
    plain = load_dataset("sample", progress=False)
    mapped = load_dataset("sample", progress=False, mmap=True)
    for part in plain.parts:
        m = mapped.parts[part].images
        assert isinstance(m, np.memmap) and not m.flags.writeable and images_file(m).is_file()
        assert np.array_equal(m, plain.parts[part].images)
        assert np.array_equal(mapped.parts[part].labels, plain.parts[part].labels)
        assert images_file(plain.parts[part].images) is None
    data = StreamedImages(mapped.parts["train"].images, np.array([5, 2, 9]), np.array([0, 1, 2]))
    assert np.array_equal(data.read(np.array([2, 0])), plain.parts["train"].images[[9, 5]])


# --- random-resized crops -------------------------------------------------------------------------------------
def test_crop_boxes_are_seeded_inside_the_picture_with_the_asked_area():
    boxes = crop_boxes(seed=1, step=5, n=500, min_scale=0.3)
    assert torch.equal(boxes, crop_boxes(1, 5, 500, 0.3)) and not torch.equal(boxes, crop_boxes(1, 6, 500, 0.3))
    left, top, w, h = boxes.unbind(1)
    area = w * h
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= 1 + 1e-6).all() and (top + h <= 1 + 1e-6).all()
    assert area.min() >= 0.3 - 1e-6 and area.max() <= 1 + 1e-6 and area.std() > 0.1
    left, top, w, h = crop_boxes(seed=1, step=5, n=500, min_scale=0.9).unbind(1)
    assert (w * h).min() >= 0.9 - 1e-6 and w.max() <= 1 + 1e-6 and h.max() <= 1 + 1e-6
    x = torch.rand(2, 3, 16, 16)
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    assert torch.allclose(crop_resize(x, whole, "bilinear"), x, atol=1e-5)
    quarter = crop_resize(x, torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 2), "nearest")
    assert torch.equal(quarter, x[:, :, :8, :8].repeat_interleave(2, 2).repeat_interleave(2, 3))
