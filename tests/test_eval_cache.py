"""core.eval_cache: evaluations found again after a restart, and not found once the checkpoint or the limit
changed; core.progress reports of the data preparation and the evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from core import eval_cache as EC
from core.checkpoint import FORMAT_WEIGHTS, save_checkpoint
from core.config import TrainConfig
from core.data import prepare
from core.methods import build_generator
from core.progress import Recorder

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64


class Loader:
    """get_prepared / get_model for cached_evaluate that count their calls."""

    def __init__(self) -> None:
        self.models = 0

    def prepared(self, progress=None):
        return prepare("sample", progress=progress or False)

    def model(self, spec: str, name: str, prepared):
        from core.evaluate import load_model

        self.models += 1
        return load_model(spec, prepared)


def tiny_checkpoint(path: Path, seed: int) -> Path:
    """A width-8 U-Net weights file with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    config = TrainConfig(model="unet", width=8).to_dict()
    net = build_generator("unet", config)
    save_checkpoint({"format": FORMAT_WEIGHTS, "version": 1, "method": "unet", "config": config,
                     "generator": net.state_dict()}, path)
    return path


def run(loader: Loader, spec: str, cache: EC.EvalCache, limit: int = LIMIT, **kw):
    return EC.cached_evaluate(spec, Path(spec).stem, "sample", "test", limit, loader.prepared, loader.model,
                              ssim=False, cache=cache, **kw)


def test_an_evaluation_is_found_again_by_a_fresh_cache(tmp_path: Path) -> None:
    loader = Loader()
    first = run(loader, "baseline:gray", EC.EvalCache(tmp_path))
    assert loader.models == 1
    again = run(loader, "baseline:gray", EC.EvalCache(tmp_path))  # a new cache object: only the disk is shared
    assert loader.models == 1
    pd.testing.assert_frame_equal(again.per_image, first.per_image)
    pd.testing.assert_frame_equal(again.per_class, first.per_class)
    pd.testing.assert_frame_equal(again.per_hue_bin, first.per_hue_bin)
    assert json.dumps(again.metrics) == json.dumps(first.metrics)  # NaN (ssim) included
    assert torch.equal(again.predictions, first.predictions) and again.n_images == LIMIT


def test_a_fresh_process_reads_the_entry_without_evaluating(tmp_path: Path) -> None:
    loader = Loader()
    first = run(loader, "baseline:gray", EC.EvalCache(tmp_path))
    script = (
        "import json, sys\n"
        "from core import eval_cache as EC\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('evaluated instead of reading the cache')\n"
        f"r = EC.cached_evaluate('baseline:gray', 'gray', 'sample', 'test', {LIMIT}, refuse, refuse, ssim=False,\n"
        f"                       cache=EC.EvalCache({str(tmp_path)!r}))\n"
        "print(json.dumps({'auc_ab': r.metrics['auc_ab'], 'n': r.n_images}))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"auc_ab": first.metrics["auc_ab"], "n": LIMIT}


def test_new_checkpoint_bytes_or_another_limit_miss(tmp_path: Path) -> None:
    cache, loader = EC.EvalCache(tmp_path / "cache"), Loader()
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", seed=0)
    first = run(loader, str(ckpt), cache)
    run(loader, str(ckpt), cache)
    assert loader.models == 1
    tiny_checkpoint(ckpt, seed=1)  # the same path, other weights (as a resumed run's new best.pt)
    changed = run(loader, str(ckpt), cache)
    assert loader.models == 2
    assert not changed.per_image["mae_rgb"].equals(first.per_image["mae_rgb"])
    fewer = run(loader, str(ckpt), cache, limit=32)
    assert loader.models == 3 and fewer.n_images == 32
    assert len(cache.entries()) == 3


def test_a_run_directory_is_keyed_by_its_best_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    tiny_checkpoint(run_dir / "checkpoints" / "last.pt", seed=0)
    assert EC.checkpoint_file(run_dir) == run_dir / "checkpoints" / "last.pt"
    tiny_checkpoint(run_dir / "checkpoints" / "best.pt", seed=1)
    assert EC.checkpoint_file(run_dir) == run_dir / "checkpoints" / "best.pt"
    assert EC.model_key(str(run_dir)) == EC.model_key(str(run_dir / "checkpoints" / "best.pt"))
    assert EC.model_key(str(run_dir)) != EC.model_key(str(run_dir / "checkpoints" / "last.pt"))


def test_missing_predictions_incomplete_or_damaged_entries_are_evaluated_again(tmp_path: Path) -> None:
    cache, loader = EC.EvalCache(tmp_path), Loader()
    run(loader, "baseline:gray", cache, keep_predictions=False)
    assert run(loader, "baseline:gray", cache, keep_predictions=False).predictions is None and loader.models == 1
    assert run(loader, "baseline:gray", cache).predictions is not None and loader.models == 2
    (folder,) = cache.entries()
    (folder / "per_image.parquet").write_bytes(b"not parquet")
    assert run(loader, "baseline:gray", cache).n_images == LIMIT and loader.models == 3
    (folder / "meta.json").unlink()  # an entry cut short before its meta.json: not an entry
    assert cache.entries() == []
    run(loader, "baseline:gray", cache)
    assert loader.models == 4


def test_prune_keeps_the_total_size_bounded(tmp_path: Path) -> None:
    loader = Loader()
    big = EC.EvalCache(tmp_path)
    for limit in (16, 32, 48):
        run(loader, "baseline:gray", big, limit=limit)
    assert len(big.entries()) == 3
    one = sum(f.stat().st_size for f in big.entries()[-1].iterdir())
    small = EC.EvalCache(tmp_path, max_bytes=int(one * 1.5))
    removed = small.prune()
    assert len(removed) == 2 and len(small.entries()) == 1


# --- progress reports ------------------------------------------------------------------------------------
def test_preparation_reports_decoding_statistics_and_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLORIZE_CACHE_DIR", str(tmp_path))  # nothing cached: every stage runs
    monkeypatch.setenv("COLORIZE_DECODE_WORKERS", "2")
    import core.sources

    monkeypatch.setattr(core.sources, "POOL_MIN_CHUNKS", 0)  # the sample is small: decode it in workers too
    monkeypatch.setattr(core.sources, "CHUNK", 256)
    rec = Recorder()
    prepared = prepare("sample", progress=rec)
    n = sum(len(p.images) for p in prepared.dataset.parts.values())
    assert rec.stages() == ["reading", "decoding", "statistics", "split"]
    decoding = [(d, t) for s, d, t in rec.calls if s == "decoding"]
    assert decoding[-1] == (n, n) and [d for d, _ in decoding] == sorted(d for d, _ in decoding)
    assert [(d, t) for s, d, t in rec.calls if s == "statistics"][-1] == (n, n)
    rec2 = Recorder()
    prepare("sample", progress=rec2)  # cached now: only the split is left to do
    assert rec2.stages() == ["split"]


def test_evaluation_reports_its_images(tmp_path: Path) -> None:
    rec, loader = Recorder(), Loader()
    EC.cached_evaluate("baseline:gray", "gray", "sample", "test", 600, loader.prepared, loader.model, ssim=False,
                       cache=EC.EvalCache(tmp_path), progress=rec)
    evaluating = [(d, t) for s, d, t in rec.calls if s == "evaluating gray"]
    assert evaluating[0] == (0, 0) and evaluating[-1] == (600, 600) and len(evaluating) >= 3  # batches of 512
    rec2 = Recorder()
    EC.cached_evaluate("baseline:gray", "gray", "sample", "test", 600, loader.prepared, loader.model, ssim=False,
                       cache=EC.EvalCache(tmp_path), progress=rec2)
    assert rec2.calls == []  # found on disk: nothing to report

