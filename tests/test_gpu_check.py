"""benchmarks/gpu_check.sh with --tiny on a CPU: every section prints its line, every registered method included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from core.methods import method_names

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_prints_every_figure_on_the_tiny_setting():
    env = os.environ | {"PY": sys.executable, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh", "sample", "--tiny", "--threads", "1"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=540)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("device: cpu")
    assert any(line.startswith("data: sample, ") for line in lines)
    for name in method_names():  # every registered method, each phase of its schedule
        rows = [line for line in lines if re.match(rf"train {name}( \(\w+\))?: \d+ img/s, epoch of 45000 images "
                                                    r"[\d.]+ s \(width 8, batch 32, (fp32|bf16)", line)]
        assert rows, f"no row for {name}:\n{r.stdout}"
    assert len([line for line in lines if line.startswith("train nogan (")]) == 3  # generator, critic, gan
    for model in ("unet", "dcgan", "nogan"):
        assert any(re.match(rf"evaluate: {model}, 64 test images: [\d.]+ s", line) for line in lines), r.stdout
    assert "peak GPU memory: n/a (no GPU)" in lines
    assert any(line.startswith("target: unet epoch < 5 s applies to H100/H200, not to cpu") for line in lines)
    assert any(line.startswith("target: dcgan epoch < 10 s") for line in lines)
    assert "DDP smoke run: skipped (0 GPU(s); it needs 2)" in lines
    assert re.fullmatch(r"total wall time: \d+ s \(limit 300 s\)", lines[-1])


def test_gpu_check_refuses_to_run_without_data(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--source", str(tmp_path / "none.tar.gz"),
                        "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert "none.tar.gz" in r.stderr
