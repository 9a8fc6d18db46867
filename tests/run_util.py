"""Run directories written by hand for the tests of core.runs, core.jobs, the runs command and the dashboard."""

from __future__ import annotations

from pathlib import Path

from core.config import TrainConfig
from core.runs import RunDir


def fake_launcher(cmd, log_path) -> int:
    """A launcher that starts nothing and reports a process id no process has."""
    return 999_999


def make_run(root: Path, name: str, state: str = "completed", model: str = "unet", records: list[dict] | None = None,
             **status) -> RunDir:
    """A run directory as the engine leaves it: config, status and metrics."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    TrainConfig(model=model, split="random").save(run.config)
    run.write_status(state=state, pid=None, **status)
    for r in records or []:
        run.append_metrics(r)
    return run


NOGAN_RECORDS = [
    {"type": "step", "step": 2, "epoch": 1.0, "phase": "generator", "g_loss": 1.0, "time": 0},
    {"type": "val", "step": 2, "epoch": 1.0, "phase": "generator", "auc_ab": 80.0, "colorfulness_ratio": 0.5,
     "val_loss": 0.02, "score": 40.0, "time": 0},
    {"type": "step", "step": 4, "epoch": 2.0, "phase": "generator", "g_loss": 0.8, "time": 0},
    {"type": "step", "step": 5, "epoch": 2.5, "phase": "critic", "d_loss": 1.3, "d_acc": 0.5, "time": 0},
    {"type": "step", "step": 6, "epoch": 3.0, "phase": "critic", "d_loss": 1.2, "d_acc": 0.6, "time": 0},
    {"type": "step", "step": 7, "epoch": 3.5, "phase": "gan", "g_loss": 0.9, "d_loss": 1.1, "time": 0},
    {"type": "val", "step": 7, "epoch": 3.5, "phase": "gan", "auc_ab": 85.0, "colorfulness_ratio": float("nan"),
     "val_loss": 0.018, "score": 85.0, "time": 0},
]


TINY_RUN = dict(model="unet", source="sample", epochs=1, limit=128, val_limit=32, width=8, batch_size=32, threads=1)


def train_tiny(out: Path, **settings) -> Path:
    """A real, completed one-epoch U-Net run (``TINY_RUN``, with ``settings`` over it) on a slice of the bundled
    sample, in ``out``: a few seconds of training."""
    from core.train import train

    train(TrainConfig(**(TINY_RUN | settings)), out, progress=False)
    return out
