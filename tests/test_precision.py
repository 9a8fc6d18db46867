"""Precision by measurement: autocast contexts, the training run's choice (and that it leaves the run unchanged),
bf16 against fp32 in training and inference within stated tolerances, and the --precision flags."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch

import core.precision as precision
from core.checkpoint import load_checkpoint
from core.config import ConfigError, TrainConfig
from core.methods import build_method
from core.precision import (
    autocast_for,
    choose_precision,
    cpu_flags,
    cpu_has_fast_bf16,
    inference_figures,
    inference_precision,
)
from core.runs import RunDir
from core.train import train

ROOT = Path(__file__).resolve().parents[1]

# bf16 against fp32, validation of the same tiny run (auc_ab in points of 0-100, mae_rgb in levels of 0-255).
# Measured differences on the bundled sample: at most 0.02 for both; one epoch less of fp32 training moves them
# by 0.22 to 0.32 on the same validation images.
TRAIN_AUC_TOLERANCE = 0.1
TRAIN_MAE_TOLERANCE = 0.1
# bf16 inference against fp32 on the shipped models: measured mean 0.07, largest 1.3 Lab units per pixel and at
# most 0.011 on the metrics.
INFER_MEAN_AB_TOLERANCE = 0.25  # Lab units, mean over pixels
INFER_MAX_AB_TOLERANCE = 3.0  # Lab units, any pixel (about one just-noticeable difference)
INFER_METRIC_TOLERANCE = 0.05  # auc_ab points, mae_rgb levels


def tiny(model: str = "unet", **kw) -> TrainConfig:
    base = dict(model=model, source="sample", split="hue", epochs=2, limit=512, val_limit=200, width=8,
                disc_width=8, batch_size=32, log_every=4, n_samples=0, threads=1)
    return TrainConfig.from_dict(base | kw)


def _batch(n: int = 32) -> dict[str, torch.Tensor]:
    from core.colour import uint8_to_model
    from core.sources import load_dataset

    images = load_dataset("sample", progress=False).parts["train"].images[:n]
    L, ab = uint8_to_model(images)
    return {"L": L, "ab": ab}


# --- the pieces ---------------------------------------------------------------------------------------------
def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx2", "avx512_bf16"} <= cpu_flags(info) and cpu_has_fast_bf16(info)
    info.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_fast_bf16(info)
    assert cpu_flags(tmp_path / "missing") == set() and not cpu_has_fast_bf16(tmp_path / "missing")


def test_autocast_for_runs_convolutions_in_the_named_precision():
    conv, x = torch.nn.Conv2d(1, 4, 3), torch.randn(2, 1, 8, 8)
    with autocast_for("fp32", "cpu"):
        assert conv(x).dtype == torch.float32
    with autocast_for("bf16", "cpu"):
        assert conv(x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp32, bf16"):
        autocast_for("auto", "cpu")


class _Stub:
    """A method whose step sleeps longer in one precision: the choice must follow the clock."""

    def __init__(self, slow: str | None = None, fails: str | None = None) -> None:
        self.slow, self.fails, self.calls = slow, fails, {"fp32": 0, "bf16": 0}
        self.weight = torch.zeros(3)

    def set_input(self, batch: dict) -> None:
        self.batch = batch

    def optimize(self) -> dict[str, float]:
        now = "bf16" if torch.is_autocast_enabled("cpu") else "fp32"
        self.calls[now] += 1
        if now == self.fails:
            raise RuntimeError("no kernel for this precision")
        self.weight += 1.0
        time.sleep(0.03 if now == self.slow else 0.001)
        return {"loss": 1.0}

    def state_dict(self) -> dict:
        return {"weight": self.weight}

    def load_state_dict(self, state: dict) -> None:
        self.weight = state["weight"].clone()


@pytest.mark.parametrize("slow, expected", [("bf16", "fp32"), ("fp32", "bf16")])
def test_auto_keeps_the_faster_precision_by_measurement(slow, expected):
    stub = _Stub(slow=slow)
    choice, figures = choose_precision(stub, {"L": torch.zeros(8, 1)}, "cpu", warmup=2, steps=3)
    assert choice == figures["choice"] == expected
    assert stub.calls == {"fp32": 5, "bf16": 5}  # 2 warm-up + 3 timed steps each
    assert figures[f"{expected}_images_per_s"] > 2 * figures[f"{slow}_images_per_s"] > 0
    assert torch.equal(stub.weight, torch.zeros(3))  # the state before the measurement is back
    assert figures["cpu_fast_bf16"] == cpu_has_fast_bf16()


def test_a_precision_that_fails_is_not_chosen():
    choice, figures = choose_precision(_Stub(slow="fp32", fails="bf16"), {"L": torch.zeros(8, 1)}, "cpu")
    assert choice == "fp32" and "bf16" in figures["failed"] and "bf16_images_per_s" not in figures


def test_a_named_precision_is_used_without_measuring():
    stub = _Stub()
    assert choose_precision(stub, {"L": torch.zeros(8, 1)}, "cpu", "bf16")[0] == "bf16"
    assert choose_precision(stub, {"L": torch.zeros(8, 1)}, "cpu", "fp32")[0] == "fp32"
    assert stub.calls == {"fp32": 0, "bf16": 0}
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        choose_precision(stub, {}, "cpu", "fp16")


@pytest.mark.parametrize("model", ["unet", "dcgan"])
def test_measuring_a_real_method_restores_weights_optimisers_and_random_state(model):
    torch.manual_seed(3)
    method = build_method(tiny(model), torch.device("cpu"))
    method.set_input(_batch())
    method.optimize()  # optimiser state that is not empty
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in _flat(method.state_dict()).items()}
    rng = torch.get_rng_state()
    choice, figures = choose_precision(method, _batch(), "cpu")
    assert choice in ("fp32", "bf16") and figures["fp32_images_per_s"] > 0 and figures["bf16_images_per_s"] > 0
    after = _flat(method.state_dict())
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v) if torch.is_tensor(v) else after[k] == v, k
    assert torch.equal(torch.get_rng_state(), rng)


def _flat(state: object, prefix: str = "") -> dict[str, object]:
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, value in enumerate(state) for k, v in _flat(value, f"{prefix}{i}.").items()}
    return {prefix: state}


# --- a training run ---------------------------------------------------------------------------------------
def test_a_run_records_its_choice_and_trains_as_with_that_precision_named(tmp_path, capsys):
    auto = train(tiny(epochs=1), tmp_path / "auto", progress=False)
    chosen = auto["precision"]["choice"]
    assert chosen in ("fp32", "bf16") and auto["precision"]["fp32_images_per_s"] > 0
    assert auto["precision"]["bf16_images_per_s"] > 0
    assert f"precision {chosen}: faster of fp32 and bf16" in capsys.readouterr().out
    assert RunDir(tmp_path / "auto").status()["precision"] == auto["precision"]
    named = train(tiny(epochs=1, precision=chosen), tmp_path / "named", progress=False)
    assert named["precision"] == {"choice": chosen, "reason": f"--precision {chosen}",
                                  "cpu_fast_bf16": cpu_has_fast_bf16(), "device": "cpu"}
    a = load_checkpoint(tmp_path / "auto" / "checkpoints" / "last.pt")["state"]["nets"]["generator"]
    b = load_checkpoint(tmp_path / "named" / "checkpoints" / "last.pt")["state"]["nets"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the measurement left the run exactly as it was


def test_a_resumed_run_keeps_the_precision_chosen_at_its_start(tmp_path, monkeypatch):
    stopped = train(tiny(epochs=1), tmp_path / "run", progress=False, max_steps=3)
    assert stopped["state"] == "cancelled"
    started = stopped["precision"]

    def no_measuring(*_a, **_k):
        raise AssertionError("a resumed run measured again")

    monkeypatch.setattr(precision, "time_candidates", no_measuring)
    final = train(None, tmp_path / "run", resume=True, progress=False)
    assert final["state"] == "completed" and final["precision"]["choice"] == started["choice"]
    assert final["precision"]["reason"].startswith("kept from the run's start")
    assert final["precision"]["fp32_images_per_s"] == started["fp32_images_per_s"]


@pytest.mark.parametrize("model", ["unet", "dcgan"])
def test_bf16_training_validates_like_fp32_within_the_tolerance(tmp_path, model):
    val = {}
    for name, kw in (("fp32", {"precision": "fp32"}), ("bf16", {"precision": "bf16"}),
                     ("fp32 1 epoch", {"precision": "fp32", "epochs": 1})):
        final = train(tiny(model, **kw), tmp_path / name.replace(" ", "-"), progress=False)
        assert final["state"] == "completed" and final["precision"]["choice"] == kw["precision"]
        val[name] = RunDir(tmp_path / name.replace(" ", "-")).status()["last_val"]
    for key, tolerance in (("auc_ab", TRAIN_AUC_TOLERANCE), ("mae_rgb", TRAIN_MAE_TOLERANCE)):
        assert abs(val["bf16"][key] - val["fp32"][key]) <= tolerance, (key, val)
    # the tolerance is tighter than what one epoch less of training changes, so the comparison can fail
    assert abs(val["fp32 1 epoch"]["mae_rgb"] - val["fp32"]["mae_rgb"]) > TRAIN_MAE_TOLERANCE


def test_precision_is_a_command_line_setting():
    from core.train import config_from_args, parse_args

    assert TrainConfig().precision == "auto"
    assert config_from_args(parse_args(["--precision", "bf16", "--out", "x"])).precision == "bf16"
    with pytest.raises(SystemExit):
        parse_args(["--precision", "fp16", "--out", "x"])
    with pytest.raises(ConfigError, match="--precision must be one of auto, fp32, bf16"):
        TrainConfig(precision="half").checked()


# --- inference ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_images():
    from core.colour import uint8_to_model
    from core.sources import load_dataset

    return uint8_to_model(load_dataset("sample", progress=False).parts["test"].images[:256])


@pytest.mark.parametrize("name", ["unet", "dcgan"])
def test_bf16_predictions_agree_with_fp32_within_the_tolerance(test_images, name):
    from core.inference import load_colorizer
    from core.metrics import aggregate, per_image_metrics

    L, ab = test_images
    fp32 = load_colorizer(ROOT / "checkpoints" / f"{name}.pt", precision="fp32").predict(L)
    bf16 = load_colorizer(ROOT / "checkpoints" / f"{name}.pt", precision="bf16").predict(L)
    assert bf16.dtype == torch.float32 and bf16.is_contiguous() and not bf16.is_inference()
    assert not torch.equal(fp32, bf16)  # bf16 did run
    diff = (bf16 - fp32).abs() * 110.0
    assert diff.mean() <= INFER_MEAN_AB_TOLERANCE and diff.max() <= INFER_MAX_AB_TOLERANCE
    a, b = aggregate(per_image_metrics(L, fp32, ab, ssim=False)), aggregate(per_image_metrics(L, bf16, ab, ssim=False))
    assert abs(a["auc_ab"] - b["auc_ab"]) <= INFER_METRIC_TOLERANCE
    assert abs(a["mae_rgb"] - b["mae_rgb"]) <= INFER_METRIC_TOLERANCE


def test_inference_is_measured_once_per_network_and_image_shape(monkeypatch):
    from core.networks import UNet

    precision.forget_inference_measurements()
    calls = []
    real = precision._measure_inference
    monkeypatch.setattr(precision, "_measure_inference", lambda *a: calls.append(1) or real(*a))
    net, other = UNet(width=8).eval(), UNet(width=8).eval()
    x = torch.zeros(16, 1, 32, 32)
    first = inference_precision(net, x)
    assert first in ("fp32", "bf16") and len(calls) == 1
    assert inference_precision(other, x[:5]) == first and len(calls) == 1  # same shapes: the same answer
    inference_precision(net, torch.zeros(4, 1, 64, 64))  # another picture size is measured again
    assert len(calls) == 2
    assert inference_precision(net, x, "fp32") == "fp32" and len(calls) == 2
    figures = inference_figures()
    assert len(figures) == 2 and all(f["fp32_images_per_s"] > 0 and f["bf16_images_per_s"] > 0 for f in figures)
    assert net.training is False
    precision.forget_inference_measurements()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(inference_precision(net, x))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 3 and len(results) == 3 and len(set(results)) == 1  # callers at once: one measurement


def test_evaluate_takes_precision_and_reports_it(tmp_path):
    from core.evaluate import main

    out = tmp_path / "fp32.json"
    assert main(["--checkpoint", str(ROOT / "checkpoints" / "unet.pt"), "--source", "sample", "--limit", "64",
                 "--no-ssim", "--precision", "fp32", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["info"]["precision"] == "fp32"
    out = tmp_path / "bf16.json"
    assert main(["--checkpoint", str(ROOT / "checkpoints" / "unet.pt"), "--source", "sample", "--limit", "64",
                 "--no-ssim", "--precision", "bf16", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["info"]["precision"] == "bf16"
    with pytest.raises(SystemExit):
        main(["--checkpoint", "x.pt", "--precision", "fp16"])


def test_models_evaluated_on_the_same_images_share_one_lab_conversion(monkeypatch):
    import core.evaluate as ev
    from core.data import prepare
    from core.inference import load_colorizer

    prepared = prepare("sample", "random", 0.1, 0, progress=False)
    converted = []
    real = ev._convert
    monkeypatch.setattr(ev, "_convert", lambda images: converted.append(len(images)) or real(images))
    models = [load_colorizer(ROOT / "checkpoints" / f"{m}.pt", precision="fp32") for m in ("unet", "dcgan")]
    results = [ev.evaluate(m, prepared, "test", ssim=False) for m in models]
    assert converted == [len(prepared.images("test"))]  # once, for both models
    assert results[1].timing["convert_s"] < results[0].timing["convert_s"]
    again = ev.evaluate(models[0], prepared, "test", limit=100, ssim=False)  # another draw: converted anew
    assert converted[1:] == [100] and again.n_images == 100
    L, ab = real(prepared.images("test"))
    cached = ev.model_space(prepared, "test")
    assert cached is not None and torch.equal(cached[0], L) and torch.equal(cached[1], ab)
