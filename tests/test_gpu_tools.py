"""The helpers of tools/train_gpu.sh: sizing epochs from calibration runs, and packing runs for the trip back."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.inference import load_colorizer
from core.train import train

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seconds_per_step_skips_the_first_record_of_each_phase(tmp_path):
    plan = _tool("gpu_plan")
    rows = [{"type": "step", "phase": "generator", "step": s, "time": t} for s, t in ((5, 100.0), (10, 101.0),
                                                                                    (15, 101.5), (20, 102.0))]
    rows += [{"type": "val", "phase": "generator", "step": 20}]
    rows += [{"type": "step", "phase": "gan", "step": s, "time": t} for s, t in ((25, 110.0), (30, 112.0))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = plan.seconds_per_step(tmp_path)
    assert got["generator"] == pytest.approx(1.0 / 10)  # 101 -> 102 over steps 10 -> 20; the start-up is left out
    assert got["gan"] == pytest.approx(2.0 / 5)  # two records only: both used
    assert plan.clamp(3.7, 4, 40) == 4 and plan.clamp(12.9, 4, 40) == 12 and plan.clamp(math.inf, 4, 40) == 40


def test_pack_run_keeps_the_pick_halved_and_everything_but_checkpoints(tmp_path):
    pack = _tool("gpu_pack")
    run = tmp_path / "runs" / "gpu-unet"
    train(TrainConfig(model="unet", source="sample", epochs=2, limit=64, val_limit=32, width=8, batch_size=32,
                      threads=1), run, progress=False)
    kept = sorted((run / "checkpoints" / "train").glob("step_*.pt"))
    assert len(kept) == 2
    out = tmp_path / "packed"
    assert pack.pack_run(run, out) == ["checkpoints/best.pt"]  # no pick.json: best.pt
    (run / "pick.json").write_text(json.dumps({"path": str(kept[0]), "step": 2}))
    assert pack.pack_run(run, tmp_path / "packed2") == [f"checkpoints/train/{kept[0].name}"]
    dest = tmp_path / "packed2" / run.name
    assert {p.name for p in dest.iterdir()} >= {"config.json", "status.json", "metrics.jsonl", "split.json",
                                                 "pick.json", "checkpoints"}
    assert [p.relative_to(dest).as_posix() for p in (dest / "checkpoints").rglob("*.pt")] == \
        [f"checkpoints/train/{kept[0].name}"]
    halved, original = load_checkpoint(dest / "checkpoints" / "train" / kept[0].name), load_checkpoint(kept[0])
    assert all(v.dtype == torch.float16 for v in halved["generator"].values() if v.is_floating_point())
    assert halved["step"] == original["step"] and halved["config"] == original["config"]
    L = torch.rand(4, 1, 32, 32) * 2 - 1
    a = load_colorizer(kept[0]).predict(L)
    b = load_colorizer(dest / "checkpoints" / "train" / kept[0].name).predict(L)
    assert torch.allclose(a, b, atol=2e-2)  # the same network, in half precision
