"""Shipping a run (weights-only file + model card), loading colorizers, colorizing pictures, the study commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import FORMAT_WEIGHTS, CheckpointError, load_checkpoint, save_checkpoint
from core.config import TrainConfig
from core.export import export_run
from core.inference import available_models, colorize_picture, load_colorizer, network_size
from core.runs import RunDir
from core.study import (
    comparison_figure,
    fixed_test_indices,
    inflection_plot,
    pick_checkpoint,
    validation_gray_metrics,
)
from core.train import train
from tests.run_util import train_tiny


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny-unet"
    train_tiny(out)
    return out


def test_export_writes_half_precision_weights_and_a_card(tiny_run, tmp_path):
    card = export_run(tiny_run, "unet-test", source="sample", out_dir=tmp_path, limit=100, ssim=False)
    payload = load_checkpoint(tmp_path / "unet-test.pt")
    assert payload["format"] == FORMAT_WEIGHTS and "optimizers" not in json.dumps(list(payload))
    assert all(v.dtype == torch.float16 for v in payload["generator"].values() if v.is_floating_point())
    on_disk = json.loads((tmp_path / "unet-test.json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    assert on_disk["method"] == "unet" and "core.train" in on_disk["command"] and on_disk["machine"]
    metrics = on_disk["evaluation"]["metrics"]
    assert set(metrics) == {"unet-test", "gray", "mean_ab"} and on_disk["evaluation"]["n_images"] == 100
    # the card's metrics are those of the shipped (half precision) file
    from core.data import prepare
    from core.evaluate import evaluate

    again = evaluate(load_colorizer(tmp_path / "unet-test.pt"), prepare("sample", progress=False), limit=100,
                     ssim=False)
    assert again.metrics["auc_ab"] == pytest.approx(metrics["unet-test"]["auc_ab"], abs=1e-6)


def test_load_colorizer_from_run_and_file_and_errors(tiny_run, tmp_path):
    c = load_colorizer(tiny_run)
    assert c.method == "unet" and c.path.endswith("best.pt")
    L = torch.zeros(3, 1, 32, 48)
    assert c.predict(L).shape == (3, 2, 32, 48)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_colorizer(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_colorizer(tmp_path / "junk.pt")
    save_checkpoint({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_colorizer(tmp_path / "other.pt")


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"format": FORMAT_WEIGHTS, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")


def test_available_models_lists_completed_runs(tiny_run, tmp_path):
    entries = available_models(checkpoint_dir=tmp_path, runs_dir=tiny_run.parent)
    assert [(e.kind, e.method) for e in entries] == [("run", "unet")]


@pytest.mark.parametrize("mode,size", [("RGB", (50, 37)), ("L", (64, 64)), ("RGBA", (20, 90)), ("I;16", (33, 17))])
def test_colorize_picture_keeps_size_and_full_resolution_L(tiny_run, mode, size):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8).squeeze(), mode)
    out = colorize_picture(load_colorizer(tiny_run), img, net_size=64)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
    from core.colour import rgb_to_lab
    from core.inference import _to_rgb_array

    L_in = rgb_to_lab(_to_rgb_array(img))[..., 0]
    L_out = rgb_to_lab(out)[..., 0]
    assert np.abs(L_in - L_out).mean() < 2.0  # luminance is the original's, at full resolution


def test_network_size_is_a_multiple_of_16():
    assert network_size(480, 640, 256) == (192, 256)
    assert network_size(10, 10, None) == (16, 16)
    h, w = network_size(1000, 333, 300)
    assert h % 16 == 0 and w % 16 == 0


def test_comparison_figure_has_a_row_per_class_and_a_column_per_model(tiny_run):
    fig = comparison_figure("sample", [tiny_run], per_class=1, scale=2)
    # 10 rows of 32*2 px plus padding, 3 columns (gray, model, truth)
    assert fig.shape[0] > 10 * 64 and fig.shape[1] == 3 * (64 + 2) + 2
    labels = np.array([0, 1, 0, 2, 1, 2])
    assert fixed_test_indices(labels, 1).tolist() == [0, 1, 3]


def test_inflection_plot_needs_a_gan_phase(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="GAN phase"):
        inflection_plot(tiny_run, tmp_path / "x.png")


def test_validation_gray_metrics_use_the_runs_own_validation_images(tiny_run):
    from core.baselines import make_baseline
    from core.data import prepare
    from core.evaluate import evaluate

    gray = validation_gray_metrics(tiny_run)  # the run: sample, hue split, seed 0, val_limit 32
    same = evaluate(make_baseline("gray"), prepare("sample", "hue", 0.1, 0, progress=False), part="val", limit=32,
                    ssim=False).metrics
    assert gray["auc_ab"] == pytest.approx(same["auc_ab"]) and gray["mae_rgb"] == pytest.approx(same["mae_rgb"])
    assert gray["colorfulness_ratio"] < 0.01


def test_pick_checkpoint_is_the_most_colourful_generator_still_clearly_better_than_gray(tmp_path, monkeypatch):
    import core.inference
    run = tmp_path / "nogan"
    (run / "checkpoints" / "gan").mkdir(parents=True)
    TrainConfig(model="nogan", source="sample", val_limit=200).save(run / "config.json")
    truth = {}  # the validation truth, looked up by L, for stand-in generators of known quality

    class Fake:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def predict(self, L: torch.Tensor) -> torch.Tensor:
            if not truth:
                from core.study import validation_tensors

                Lv, abv = validation_tensors(run)
                truth.update({bytes(x.numpy().tobytes()): a for x, a in zip(Lv, abv)})
            ab = torch.stack([truth[bytes(x.numpy().tobytes())] for x in L])
            noise = torch.randn(ab.shape, generator=torch.Generator().manual_seed(0))
            return {"half": 0.5 * ab, "most": 0.9 * ab, "wild": ab + 0.6 * noise, "full": 1.1 * ab + 0.05 * noise,
                    }[self.kind]

    kinds = {10: "half", 20: "most", 30: "wild"}
    for step in kinds:
        (run / "checkpoints" / "gan" / f"step_{step:06d}.pt").write_bytes(b"")
    monkeypatch.setattr(core.inference, "load_colorizer",
                        lambda p, device="cpu": Fake(kinds[int(Path(p).stem.split("_")[1])]))
    pick = pick_checkpoint(run)
    assert pick["step"] == 20 and pick["path"].endswith("step_000020.pt")
    assert pick["auc_ab_gain"][0] > 2 * pick["auc_ab_gain"][1] and pick["mae_rgb_gain"][0] > 0
    (run / "checkpoints" / "gan" / "step_000040.pt").write_bytes(b"")
    kinds[40] = "full"  # more colourful than step 20, and less accurate: the default picks it, --min-ratio does not
    colourful = pick_checkpoint(run)
    accurate = pick_checkpoint(run, min_ratio=0.85)
    assert colourful["step"] == 40 and accurate["step"] == 20
    assert colourful["colorfulness_ratio"] > accurate["colorfulness_ratio"] >= 0.85
    assert colourful["mae_rgb"] > accurate["mae_rgb"]
    assert pick_checkpoint(run, min_ratio=1.5)["step"] == 40  # none that colourful: the most colourful passing one
    (run / "checkpoints" / "gan" / "step_000040.pt").unlink()
    kinds.update({10: "wild", 20: "wild"})
    assert pick_checkpoint(run) is None  # colourful, but worse than gray
    (run / "checkpoints" / "gan").rename(run / "checkpoints" / "train")  # a one-phase run (U-Net, DCGAN) keeps these
    kinds.update({10: "half", 20: "wild"})
    assert pick_checkpoint(run)["step"] == 10 == pick_checkpoint(run, phase="train")["step"]
    with pytest.raises(ValueError, match="phase 'gan'"):
        pick_checkpoint(run, phase="gan")


def test_export_ships_a_chosen_checkpoint_and_says_so(tiny_run, tmp_path):
    from core.checkpoint import weights_payload

    snapshot = tmp_path / "snapshot.pt"
    save_checkpoint(weights_payload(load_checkpoint(tiny_run / "checkpoints" / "last.pt")), snapshot)
    card = export_run(tiny_run, "chosen", out_dir=tmp_path, checkpoint=snapshot, selection="by hand, for a test")
    assert card["checkpoint"] == str(snapshot) and card["selection"] == "by hand, for a test"
    shipped = load_checkpoint(tmp_path / "chosen.pt")
    original = load_checkpoint(snapshot)["generator"]
    assert all(torch.equal(shipped["generator"][k], v.half()) for k, v in original.items() if v.is_floating_point())
    card = export_run(tiny_run, "inside", out_dir=tmp_path, checkpoint=tiny_run / "checkpoints" / "last.pt")
    assert card["checkpoint"] == "checkpoints/last.pt" and "no rule" in card["selection"]
    assert export_run(tiny_run, "default", out_dir=tmp_path)["selection"].startswith("best.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        export_run(tiny_run, "missing", out_dir=tmp_path, checkpoint=tmp_path / "nope.pt")


def test_card_of_a_run_started_with_init_names_the_run_that_trained_its_start(tiny_run, tmp_path):
    start = tiny_run / "checkpoints" / "best.pt"
    out = tmp_path / "tuned"
    train(TrainConfig(model="unet", source="sample", epochs=1, limit=64, val_limit=32, width=8, batch_size=32,
                      threads=1, init=str(start)), out, progress=False)
    card = export_run(out, "tuned", out_dir=tmp_path)
    assert "--init " + str(start) in card["command"]
    init = card["init"]
    assert init["checkpoint"] == str(start) and init["method"] == "unet"
    assert init["step"] == load_checkpoint(start)["step"]
    assert init["command"].endswith("--out " + str(tiny_run)) and "--init" not in init["command"]
    assert init["run_wall_time_s"] >= 0


def test_saturation_curve_runs_from_gray_to_more_colour_than_the_model(tiny_run):
    from core.metrics import compute_metrics
    from core.study import saturation_curve, validation_tensors

    L, ab = validation_tensors(tiny_run)
    curve = saturation_curve(tiny_run / "checkpoints" / "best.pt", L, ab, scales=(0.0, 1.0, 3.0))
    gray = compute_metrics(L, torch.zeros_like(ab), ab)
    own = compute_metrics(L, load_colorizer(tiny_run).predict(L), ab)
    assert curve["mae_rgb"].iloc[0] == pytest.approx(gray["mae_rgb"])
    assert curve["mae_rgb"].iloc[1] == pytest.approx(own["mae_rgb"])
    assert curve["colorfulness_ratio"].is_monotonic_increasing
    assert curve["colorfulness_ratio"].iloc[2] > 2 * curve["colorfulness_ratio"].iloc[1] > 0


def test_tradeoff_plot_draws_each_validation_and_refuses_runs_on_other_images(tiny_run, tmp_path):
    from core.study import tradeoff_plot

    info = tradeoff_plot([tiny_run], tmp_path / "t.png", scale_run=tiny_run)
    assert (tmp_path / "t.png").stat().st_size > 1000
    vals = [r for r in RunDir(tiny_run).metrics() if r["type"] == "val"]
    assert [r["mae_rgb"] for r in info["runs"][tiny_run.name]] == [r["mae_rgb"] for r in vals]
    assert info["saturation_curve"][0]["scale"] == 1.0
    other = tmp_path / "other"
    train(TrainConfig(model="unet", source="sample", epochs=1, limit=64, val_limit=16, width=8, batch_size=32,
                      threads=1), other, progress=False)
    with pytest.raises(ValueError, match="val_limit"):
        tradeoff_plot([tiny_run, other], tmp_path / "u.png")


def test_card_names_the_machine_the_run_trained_on_not_the_exporting_one(tiny_run, tmp_path):
    run = tmp_path / "copied"
    import shutil

    shutil.copytree(tiny_run, run)
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(status | {"machine": "16 CPU cores (x), NVIDIA H100, torch 2"}))
    assert export_run(run, "remote", out_dir=tmp_path)["machine"] == "16 CPU cores (x), NVIDIA H100, torch 2"


def test_inflection_reads_best_step_from_status_when_best_pt_was_left_behind(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "packed"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    rows = [{"type": "val", "step": s, "epoch": 1.0, "phase": p, "auc_ab": a, "mae_rgb": 11.0,
             "colorfulness_ratio": r} for s, p, a, r in ((4, "generator", 91.0, 0.4), (6, "gan", 90.8, 0.6),
                                                           (8, "gan", 90.5, 0.8))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(status | {"best_step": 6}))
    info = inflection_plot(run, tmp_path / "inflection.png", chosen_step=8)
    assert info["best_pt_step"] == 6 and info["chosen_step"] == 8 and info["steps"] == [4, 6, 8]
    assert (tmp_path / "inflection.png").stat().st_size > 0


@pytest.mark.parametrize("model", ["unet", "nogan"])
def test_a_cards_command_parses_back_to_the_runs_configuration(model):
    import shlex

    from core.config import TrainConfig
    from core.export import _command
    from core.train import config_from_args, parse_args

    saved = TrainConfig.from_dict({"model": model, "source": "sample", "size": 64, "flip": False,
                                   "channels_last": False, "compile": True, "ema_decay": 0.99, "crop_scale": 0.5,
                                   "limit": 300, "log_every": 5, "world_size": 2}).checked().to_dict()
    words = shlex.split(_command(saved, "runs/x"))
    assert words[:3] == ["python", "-m", "torch.distributed.run"] and "--nproc_per_node=2" in words
    args = parse_args(words[words.index("core.train") + 1:])
    assert args.out == "runs/x"
    again = config_from_args(args).to_dict()
    recorded_only = ("world_size",)
    assert {k: v for k, v in again.items() if k not in recorded_only} == \
        {k: v for k, v in saved.items() if k not in recorded_only}
