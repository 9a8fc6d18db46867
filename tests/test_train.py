"""The training engine: every method's step, tiny full runs, resume, SIGTERM, the NaN guard, DCGAN losses."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.methods import METHODS, build_method
from core.methods.dcgan import discriminator_loss, generator_loss
from core.runs import RunDir
from core.train import TrainingError, decay_factor, train

ROOT = Path(__file__).resolve().parents[1]


def tiny(model: str, **kw) -> TrainConfig:
    base = dict(model=model, source="sample", split="hue", epochs=1, limit=256, val_limit=64, width=8,
                disc_width=8, batch_size=32, log_every=2, n_samples=4, threads=1)
    return TrainConfig.from_dict(base | kw)


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clf") / "run"
    train(tiny("classifier"), out, progress=False)
    return out / "checkpoints" / "best.pt"


def _batch(n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    from core.colour import uint8_to_model
    from core.sources import load_dataset

    part = load_dataset("sample", progress=False).parts["train"]
    images = part.images[seed * n : (seed + 1) * n]
    L, ab = uint8_to_model(images)
    rgb = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return {"L": L, "ab": ab, "rgb": rgb, "label": torch.from_numpy(part.labels[: len(images)]).long()}


@pytest.mark.parametrize("model", ["unet", "dcgan", "nogan", "classifier"])
def test_each_method_lowers_its_loss_on_a_fixed_batch(model, classifier_ckpt):
    torch.manual_seed(0)
    cfg = tiny(model, feature_net=str(classifier_ckpt), lr=2e-3 if model != "dcgan" else 1e-3)
    method = build_method(cfg, torch.device("cpu"))
    if model == "nogan":
        method.set_phase("generator")
    batch = _batch()
    key = {"unet": "mse", "dcgan": "g_l1", "nogan": "g_loss", "classifier": "ce"}[model]
    losses = []
    for _ in range(12):
        method.set_input(batch)
        losses.append(method.optimize()[key])
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_nogan_gan_phase_runs_at_the_configured_rate(classifier_ckpt):
    method = build_method(tiny("nogan", feature_net=str(classifier_ckpt), lr=1e-3, gan_lr=3e-5), torch.device("cpu"))
    method.set_phase("generator")
    assert method.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3)
    from core.methods.nogan import CRITIC_LR
    from core.train import set_decayed_lr

    set_decayed_lr(method, 0.0)  # the end of a phase 1 with --lr-decay-epochs
    method.set_phase("critic")
    assert method.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(CRITIC_LR)
    method.set_phase("gan")
    for opt in method.optimizers.values():
        assert opt.param_groups[0]["lr"] == pytest.approx(3e-5)
        assert opt.param_groups[0]["betas"][0] == pytest.approx(0.5)


@pytest.mark.parametrize("gan_l1_weight", [0.0, 50.0])
def test_nogan_gan_phase_loss_is_adversarial_plus_weighted_feature_and_l1_terms(classifier_ckpt, gan_l1_weight):
    torch.manual_seed(0)
    method = build_method(tiny("nogan", feature_net=str(classifier_ckpt), feature_weight=2.0,
                               gan_l1_weight=gan_l1_weight), torch.device("cpu"))
    method.set_phase("gan")
    method.set_input(_batch())
    out = method.optimize()
    feat_total = out["g_l1"] + out["g_feat"]
    assert out["g_loss"] == pytest.approx(out["g_gan"] + 2.0 * feat_total + gan_l1_weight * out["g_l1"], rel=1e-5)


def test_decay_factor_is_constant_then_linear_to_zero():
    assert [decay_factor(i, 10, 4) for i in range(10)] == pytest.approx([1] * 7 + [0.75, 0.5, 0.25])
    assert decay_factor(5, 10, 0) == 1.0 and decay_factor(0, 10, 50) == 1.0
    assert decay_factor(9, 10, 50) == pytest.approx(0.1)  # longer than the phase: the whole phase decays


def test_lr_decay_is_applied_and_saved_with_the_optimiser(tmp_path):
    out = tmp_path / "decay"
    cfg = tiny("unet", epochs=2, lr=1e-3, lr_decay_epochs=1.0)  # 8 steps an epoch: the last 8 steps decay
    final = train(cfg, out, progress=False, max_steps=12)
    assert final["state"] == "cancelled"
    groups = load_checkpoint(out / "checkpoints" / "last.pt")["state"]["optimizers"]["generator"]["param_groups"]
    assert groups[0]["initial_lr"] == pytest.approx(1e-3)
    assert groups[0]["lr"] == pytest.approx(1e-3 * decay_factor(11, 16, 8))
    assert train(cfg, out, resume=True, progress=False)["state"] == "completed"
    groups = load_checkpoint(out / "checkpoints" / "last.pt")["state"]["optimizers"]["generator"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(1e-3 / 8)


def test_dcgan_losses_match_the_formula_by_hand():
    real = torch.tensor([[2.0, -1.0]])
    fake = torch.tensor([[0.5, -3.0]])
    sig = torch.sigmoid
    d_hand = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(discriminator_loss(real, fake), d_hand, atol=1e-6)
    d_smooth = -((0.9 * torch.log(sig(real)) + 0.1 * torch.log(1 - sig(real))).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(discriminator_loss(real, fake, real_label=0.9), d_smooth, atol=1e-6)
    fake_ab, true_ab = torch.tensor([0.1, -0.2]), torch.tensor([0.0, 0.2])
    total, adv, l1 = generator_loss(fake, fake_ab, true_ab, l1_weight=100.0)
    adv_hand = -torch.log(sig(fake)).mean()
    assert torch.allclose(adv, adv_hand, atol=1e-6)
    assert torch.allclose(l1, torch.tensor(0.25)) and torch.allclose(total, adv_hand + 25.0, atol=1e-5)


def _check_run_files(out: Path, colorizer: bool = True) -> list[dict]:
    run = RunDir(out)
    cfg = json.loads(run.config.read_text())
    assert cfg["limit"] == 256 and cfg["split"] == "hue"
    split = json.loads(run.split.read_text())
    assert split["kind"] == "hue" and len(split["val"]) > 0
    status = run.status()
    assert status["state"] == "completed", status
    for key in ("phase", "epoch", "step", "total_steps", "images_per_s", "eta_s", "message", "pid", "heartbeat"):
        assert key in status, key
    assert status["step"] == status["total_steps"]
    records = run.metrics()
    assert any(r["type"] == "step" for r in records)
    vals = [r for r in records if r["type"] == "val"]
    assert vals
    if colorizer:
        assert {"auc_ab", "colorfulness", "colorfulness_ratio", "val_loss", "score"} <= set(vals[-1])
        assert list(run.samples.glob("*.png"))
    for name in ("last.pt", "best.pt"):
        ck = load_checkpoint(run.checkpoints / name)
        assert ck["config"]["model"] == cfg["model"] and "generator" in ck["state"]["nets"]
    return records


@pytest.mark.parametrize("model", ["unet", "dcgan"])
def test_tiny_full_run_leaves_every_file(tmp_path, model):
    out = tmp_path / model
    final = train(tiny(model), out, progress=False)
    assert final["state"] == "completed"
    _check_run_files(out)
    assert (out / "samples" / "epoch_001.png").is_file()


def test_tiny_nogan_run_shows_its_three_phases(tmp_path, classifier_ckpt):
    out = tmp_path / "nogan"
    train(tiny("nogan", feature_net=str(classifier_ckpt), critic_epochs=0.5, gan_fraction=0.5, gan_checkpoints=2),
          out, progress=False)
    records = _check_run_files(out)
    assert [p for p in dict.fromkeys(r["phase"] for r in records)] == ["generator", "critic", "gan"]
    gan_vals = [r for r in records if r["type"] == "val" and r["phase"] == "gan"]
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["phase"] == "gan"
    kept = sorted((out / "checkpoints" / "gan").glob("step_*.pt"))
    assert len(kept) == len(gan_vals) and load_checkpoint(kept[-1])["format"] == "colorize-weights"
    assert best["best_score"] == pytest.approx(max(r["score"] for r in gan_vals))


def test_init_starts_from_the_given_generator_and_nogan_epochs_0_skips_phase_1(tmp_path, classifier_ckpt):
    train(tiny("unet", limit=64), tmp_path / "unet", progress=False)
    start = tmp_path / "unet" / "checkpoints" / "best.pt"
    # zero steps of training: the run's generator is exactly the one it started from
    first = train(tiny("dcgan", limit=64, init=str(start)), tmp_path / "dcgan", progress=False, max_steps=0)
    assert first["state"] == "cancelled"
    a = load_checkpoint(start)["state"]["nets"]["generator"]
    b = load_checkpoint(tmp_path / "dcgan" / "checkpoints" / "last.pt")["state"]["nets"]["generator"]
    assert all(torch.equal(a[k].float(), b[k].float()) for k in a)
    out = tmp_path / "nogan"
    train(tiny("nogan", epochs=0, init=str(start), feature_net=str(classifier_ckpt), critic_epochs=0.5,
               gan_fraction=0.5, gan_checkpoints=2), out, progress=False)
    records = RunDir(out).metrics()
    assert [p for p in dict.fromkeys(r["phase"] for r in records)] == ["critic", "gan"]
    critic_val = next(r for r in records if r["type"] == "val" and r["phase"] == "critic")
    assert critic_val["auc_ab"] == pytest.approx(load_checkpoint(start)["metrics"]["auc_ab"])
    from core.study import inflection_plot

    info = inflection_plot(out, tmp_path / "inflection.png")  # starts from the generator it was given
    assert info["steps"][0] == critic_val["step"] and info["auc_ab"][0] == critic_val["auc_ab"]


def test_init_with_a_generator_of_another_width_is_refused_clearly(tmp_path, classifier_ckpt):
    train(tiny("unet", limit=64), tmp_path / "unet", progress=False)
    with pytest.raises(TrainingError, match="width 8.*width 16"):
        train(tiny("unet", limit=64, width=16, init=str(tmp_path / "unet" / "checkpoints" / "best.pt")),
              tmp_path / "wide", progress=False)
    with pytest.raises(TrainingError, match="not a colorization generator"):
        train(tiny("unet", limit=64, init=str(classifier_ckpt)), tmp_path / "clf", progress=False)


def test_nogan_without_feature_net_trains_a_classifier_first(tmp_path, monkeypatch):
    import core.methods.nogan as nogan

    monkeypatch.setattr(nogan, "SHIPPED_CLASSIFIER", tmp_path / "none.pt")
    monkeypatch.setattr(nogan.VGGFeatures, "from_local_cache", classmethod(lambda cls, layers=None: None))
    out = tmp_path / "nogan"
    final = train(tiny("nogan", critic_epochs=0.25, gan_fraction=0.25), out, progress=False)
    assert final["state"] == "completed"
    assert (out / "feature_net" / "checkpoints" / "best.pt").is_file()
    assert "classifier trained first" in final["note"]
    assert json.loads((out / "config.json").read_text())["feature_net"].endswith("best.pt")


def test_classifier_run_reports_accuracy(classifier_ckpt):
    ck = load_checkpoint(classifier_ckpt)
    assert ck["method"] == "classifier" and 0.0 <= ck["metrics"]["accuracy"] <= 100.0


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    cfg = tiny("unet", epochs=2, limit=128, precision="fp32")  # auto may choose differently in two runs
    train(cfg, tmp_path / "whole", progress=False)
    stopped = train(cfg, tmp_path / "parts", progress=False, max_steps=3)
    assert stopped["state"] == "cancelled" and stopped["step"] == 3
    final = train(TrainConfig(epochs=2), tmp_path / "parts", resume=True, progress=False)
    assert final["state"] == "completed" and final["step"] == 8
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["state"]["nets"]["generator"]
    b = load_checkpoint(tmp_path / "parts" / "checkpoints" / "last.pt")["state"]["nets"]["generator"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    steps = [r["step"] for r in RunDir(tmp_path / "parts").metrics() if r["type"] == "step"]
    assert steps == sorted(set(steps))  # no duplicated records after the resume


def test_existing_run_is_not_overwritten(tmp_path):
    train(tiny("unet", limit=64), tmp_path / "r", progress=False)
    with pytest.raises(TrainingError, match="--resume"):
        train(tiny("unet", limit=64), tmp_path / "r", progress=False)


def test_nan_loss_stops_the_run_as_failed_naming_step_and_loss(tmp_path, monkeypatch):
    from core.methods.unet import UNetMethod

    calls = {"n": 0}
    original = UNetMethod.optimize

    def flaky(self):
        calls["n"] += 1
        out = original(self)
        return {"mse": float("nan")} if calls["n"] == 2 else out

    monkeypatch.setattr(UNetMethod, "optimize", flaky)
    with pytest.raises(TrainingError, match="mse became nan at step 2"):  # fp32: no timed steps before the loop
        train(tiny("unet", precision="fp32"), tmp_path / "nan", progress=False)
    status = RunDir(tmp_path / "nan").status()
    assert status["state"] == "failed" and "step 2" in status["message"]


def test_sigterm_cancels_cleanly_after_saving(tmp_path):
    out = tmp_path / "sig"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "core.train", "--model", "unet", "--source", "sample", "--epochs", "50",
           "--width", "8", "--batch-size", "16", "--limit", "256", "--val-limit", "32", "--threads", "1",
           "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run = RunDir(out)
    deadline = time.time() + 120
    while time.time() < deadline and not (run.status().get("state") == "running" and run.status().get("step", 0) > 0):
        time.sleep(0.2)
    assert run.status().get("step", 0) > 0, proc.stdout.read().decode() if proc.poll() is not None else "no progress"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    status = run.status()
    assert status["state"] == "cancelled" and run.last.is_file()
    assert load_checkpoint(run.last)["step"] == status["step"]


def test_cli_reports_bad_settings_in_one_line(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "core.train", "--model", "unet", "--source", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


def test_registry_knows_all_methods():
    assert {"unet", "dcgan", "nogan", "classifier"} <= set(METHODS)


def test_val_per_epoch_validates_and_keeps_a_generator_that_often(tmp_path):
    out = tmp_path / "run"
    train(tiny("unet", limit=256, batch_size=32, val_per_epoch=4, epochs=2), out, progress=False)  # 8 steps an epoch
    vals = [r["step"] for r in RunDir(out).metrics() if r.get("type") == "val"]
    assert vals == [2, 4, 6, 8, 10, 12, 14, 16]
    kept = sorted(int(p.stem.split("_")[1]) for p in (out / "checkpoints" / "train").glob("step_*.pt"))
    assert kept == vals


def test_status_records_the_machine_the_run_trained_on(tmp_path):
    from core.runs import machine_description

    out = tmp_path / "run"
    train(tiny("unet", limit=64), out, progress=False)
    status = RunDir(out).status()
    assert status["machine"] == machine_description() and "CPU cores" in status["machine"]
    assert status["device"] == "cpu"


@pytest.mark.parametrize("select,pick", [("mae", lambda vals: min(vals, key=lambda r: r["mae_rgb"])),
                                         ("auc", lambda vals: max(vals, key=lambda r: r["auc_ab"]))])
def test_select_chooses_best_pt_by_the_named_figure(tmp_path, select, pick):
    from core.export import export_run

    out = tmp_path / select
    train(tiny("unet", epochs=1, val_per_epoch=4, select=select), out, progress=False)
    vals = [r for r in RunDir(out).metrics() if r["type"] == "val"]
    assert len(vals) == 4
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["step"] == pick(vals)["step"]
    card = export_run(out, "card", out_dir=tmp_path / "cards")
    assert card["selection"] == "best.pt: " + {"mae": "the lowest validation mae_rgb",
                                                "auc": "the highest validation auc_ab"}[select]


def test_checkpoint_keeper_keeps_last_best_and_a_bounded_history(tmp_path):
    from core.train import CheckpointKeeper

    run = RunDir(tmp_path / "run")
    keeper = CheckpointKeeper(run, keep=2)
    payload = {"format": "colorize-training-checkpoint", "version": 1, "method": "unet", "config": {"width": 8},
               "state": {"nets": {"generator": {"w": torch.ones(2)}}}}
    for step in (10, 20, 30):
        keeper.keep_generator(payload | {"step": step}, "train", step)
        keeper.save_last(payload | {"step": step})
    keeper.save_best(payload | {"step": 20})
    kept = sorted(p.name for p in (run.checkpoints / "train").glob("step_*.pt"))
    assert kept == ["step_000020.pt", "step_000030.pt"]  # the oldest went first
    assert load_checkpoint(run.last)["step"] == 30 and load_checkpoint(run.best)["step"] == 20
    assert load_checkpoint(run.checkpoints / "train" / kept[-1])["format"] == "colorize-weights"
    everything = CheckpointKeeper(RunDir(tmp_path / "all"))
    for step in range(1, 6):
        everything.keep_generator(payload | {"step": step}, "gan", step)
    assert len(list((tmp_path / "all" / "checkpoints" / "gan").glob("step_*.pt"))) == 5


def test_speed_meter_reports_speed_and_eta_at_most_every_interval(monkeypatch):
    import core.train as engine

    clock = {"t": 100.0}
    monkeypatch.setattr(engine.time, "perf_counter", lambda: clock["t"])
    meter = engine.SpeedMeter(total_steps=100, batch_size=10, every_s=2.0)
    clock["t"] += 0.5
    first = meter.update(1, 10)  # the first step reports at once, before any window has passed
    assert first is not None and first["eta_s"] is None
    clock["t"] += 1.0
    assert meter.update(2, 10) is None  # within the interval: nothing to write
    clock["t"] += 1.5
    report = meter.update(3, 10)
    assert report["images_per_s"] == pytest.approx(30 / 3.0)
    assert report["eta_s"] == pytest.approx((100 - 3) * 10 / 10.0)


def test_ema_decay_keeps_the_moving_average_that_predictions_use():
    torch.manual_seed(0)
    method = build_method(tiny("unet", ema_decay=0.8, lr=1e-2), torch.device("cpu"))
    method.start_average()
    method.set_input(_batch())
    raw = method.nets["generator"]
    by_hand = None
    for _ in range(4):
        method.optimize()
        method.update_average()
        now = {k: v.detach().clone() for k, v in raw.state_dict().items() if v.is_floating_point()}
        by_hand = now if by_hand is None else {k: 0.8 * by_hand[k] + 0.2 * now[k] for k in now}
    averaged = method.generator.state_dict()
    assert method.generator is not raw
    for k, v in by_hand.items():
        assert torch.allclose(averaged[k], v, atol=1e-6), k
    assert not torch.allclose(averaged["encoder.0.1.weight"], raw.state_dict()["encoder.0.1.weight"])
    L = _batch()["L"][:4]
    raw.eval()
    with torch.no_grad():
        assert torch.allclose(method.predict(L), method.generator.eval()(L))
        assert not torch.allclose(method.predict(L), raw(L))


def test_a_run_with_ema_resumes_exactly_and_ships_its_average(tmp_path):
    from core.checkpoint import generator_state, weights_payload

    cfg = tiny("unet", epochs=2, limit=128, precision="fp32", ema_decay=0.7)
    train(cfg, tmp_path / "whole", progress=False)
    train(cfg, tmp_path / "parts", progress=False, max_steps=3)
    train(TrainConfig(epochs=2), tmp_path / "parts", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "parts" / "checkpoints" / "last.pt")
    assert a["state"]["average_count"] == b["state"]["average_count"] == 8
    for k in a["state"]["average"]:
        assert torch.allclose(a["state"]["average"][k].float(), b["state"]["average"][k].float(), atol=1e-5), k
    trained, average = a["state"]["nets"]["generator"], a["state"]["average"]
    differs = [k for k in trained if trained[k].is_floating_point() and not torch.equal(trained[k], average[k])]
    assert differs  # the average is not the trained weights ...
    shipped = weights_payload(a)["generator"]
    assert all(torch.equal(shipped[k], average[k]) for k in average)  # ... and it is what ships
    assert all(torch.equal(generator_state(a)[k], average[k].float()) for k in average)
    kept = sorted((tmp_path / "whole" / "checkpoints" / "train").glob("step_*.pt"))[-1]
    assert all(torch.equal(load_checkpoint(kept)["generator"][k], average[k]) for k in average)
