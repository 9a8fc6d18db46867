"""Shared fixtures: a private cache and runs folder per test session, and small real images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session", autouse=True)
def _private_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests away from the user's cache and runs (the bundled sample is decoded once per session)."""
    base = tmp_path_factory.mktemp("colorize")
    os.environ.setdefault("COLORIZE_CACHE_DIR", str(base / "cache"))
    os.environ["COLORIZE_RUNS_DIR"] = str(base / "runs")
    os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def sample_images() -> np.ndarray:
    """256 real CIFAR-10 test images from the bundled sample (uint8, N x 32 x 32 x 3)."""
    from core.sources import load_dataset

    return load_dataset("sample", progress=False).parts["test"].images[:256]
