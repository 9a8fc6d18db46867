"""The shipped models: each loads without executing code, has a truthful card, and is measured on the sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoint import FORMAT_WEIGHTS, load_checkpoint
from core.inference import available_models, load_colorizer
from core.methods import method_names

COLORIZER_METHODS = method_names(colorizers_only=True)

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SHIPPED = sorted(p for p in CHECKPOINTS.glob("*.pt"))


@pytest.fixture(scope="module")
def sample_results():
    from core.baselines import make_baseline
    from core.data import prepare
    from core.evaluate import evaluate

    prepared = prepare("sample", progress=False)
    out = {"gray": evaluate(make_baseline("gray", prepared), prepared, ssim=False).metrics}
    for path in SHIPPED:
        card = json.loads(path.with_suffix(".json").read_text())
        if card["method"] in COLORIZER_METHODS:
            out[path.stem] = evaluate(load_colorizer(path), prepared, ssim=False).metrics
    return out


def test_one_generator_file_per_method_and_a_light_folder():
    names = [p.stem for p in SHIPPED]
    for method in ("unet", "dcgan", "nogan"):
        assert sum(method in n for n in names) == 1, (method, names)
    assert all(p.stat().st_size <= 20e6 for p in CHECKPOINTS.iterdir())
    assert sum(p.stat().st_size for p in CHECKPOINTS.iterdir()) <= 60e6


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_checkpoint_loads_weights_only_and_has_a_card(path):
    payload = load_checkpoint(path)  # torch.load(weights_only=True)
    assert payload["format"] == FORMAT_WEIGHTS
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["method"] == payload["method"] and card["file"] == path.name
    for key in ("command", "data", "split", "epochs", "wall_time_s", "machine"):
        assert key in card, key
    assert "python -m core.train" in card["command"] and f"--model {card['method']}" in card["command"]
    if card["method"] == "classifier":  # NoGAN's feature network: scored by accuracy, not colour metrics
        assert 10.0 < card["accuracy_val"] <= 100.0
        return
    assert card["evaluation"]["n_images"] == 10_000 and card["evaluation"]["part"] == "test"
    metrics = card["evaluation"]["metrics"]
    assert {"gray", "mean_ab", card["name"]} <= set(metrics)


@pytest.mark.parametrize("path", [p for p in SHIPPED if any(m in p.stem for m in COLORIZER_METHODS)],
                         ids=lambda p: p.stem)
def test_card_claims_hold_on_the_bundled_sample(path, sample_results):
    """A card's `beats_gray` says whether the model beat the gray baseline on the 10,000 test images; the same
    comparison on the bundled sample's 1,000 test images must agree with it."""
    card = json.loads(path.with_suffix(".json").read_text())
    ours, gray = sample_results[path.stem], sample_results["gray"]
    on_test = card["evaluation"]["metrics"]
    claimed = on_test[card["name"]]["auc_ab"] > on_test["gray"]["auc_ab"] and \
        on_test[card["name"]]["mae_rgb"] < on_test["gray"]["mae_rgb"]
    assert card["beats_gray"] == claimed
    if claimed:
        assert ours["auc_ab"] > gray["auc_ab"] and ours["mae_rgb"] < gray["mae_rgb"]


def test_at_least_one_shipped_model_beats_gray_on_the_sample(sample_results):
    gray = sample_results["gray"]
    assert any(m["auc_ab"] > gray["auc_ab"] and m["mae_rgb"] < gray["mae_rgb"]
               for k, m in sample_results.items() if k != "gray")


def test_shipped_models_are_offered_by_the_dashboard():
    entries = available_models(checkpoint_dir=CHECKPOINTS, runs_dir=CHECKPOINTS / "no-runs-here")
    assert {e.method for e in entries} == {"unet", "dcgan", "nogan"}
