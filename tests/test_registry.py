"""The method registry is the one source of method knowledge: a method defined here, and nowhere else, appears
on the command line and the Train form, trains, is offered as a model on Compare and the Leaderboard, and is
scored by core.evaluate. A new file in core/methods/ is found with no other file edited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.config import Option, TrainConfig
from core.methods import METHODS, get_method, method_label, method_names, register
from core.methods.unet import UNetMethod

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "dashboard" / "pages"
DASHBOARD = ROOT / "dashboard"
if str(DASHBOARD) not in sys.path:  # pages import `common` as they do under `streamlit run dashboard/Home.py`
    sys.path.insert(0, str(DASHBOARD))


class CopyOfUNet(UNetMethod):
    """A copy of the U-Net under a new name, with an option of its own."""

    name = "unetcopy"
    label = "U-Net copy"
    help = "a copy of the U-Net, registered by a test"
    options = (Option("copy_scale", float, 1.0, "scale of the MSE (a copy's own option)", label="Copy scale",
                      above=0.0, max=10.0),)


@pytest.fixture(scope="module")
def registered():
    register(CopyOfUNet)
    yield CopyOfUNet
    METHODS.pop(CopyOfUNet.name, None)


@pytest.fixture(scope="module")
def copy_run(registered, tmp_path_factory) -> Path:
    from core.train import train

    out = tmp_path_factory.mktemp("copyruns") / "copy-run"
    cfg = TrainConfig.from_dict({"model": "unetcopy", "source": "sample", "epochs": 1, "limit": 128, "val_limit": 32,
                                 "width": 8, "batch_size": 32, "threads": 1, "copy_scale": 2.0})
    final = train(cfg, out, progress=False)
    assert final["state"] == "completed"
    return out


@pytest.fixture
def isolated(copy_run, tmp_path, monkeypatch):
    import core.inference

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(copy_run.parent))
    monkeypatch.setenv("COLORIZE_DATA", "sample")
    monkeypatch.setattr(core.inference, "SHIPPED_DIR", shipped)
    st.cache_data.clear()
    yield copy_run
    st.cache_data.clear()


def test_registry_describes_every_method() -> None:
    for name in method_names():
        cls = get_method(name)
        assert cls.label and cls.help and cls.name == name
        if cls.is_colorizer:
            net = cls.build_generator(TrainConfig.from_dict({"model": name, "width": 8}))
            assert sum(p.numel() for p in net.parameters()) > 0
    assert method_names(colorizers_only=True) == ["unet", "dcgan", "nogan"]
    assert method_label("dcgan") == "DCGAN" and method_label("gone") == "gone"


def test_a_new_method_is_on_the_command_line(registered) -> None:
    from core.train import build_parser, config_from_args, parse_args

    text = build_parser().format_help()
    assert "unetcopy" in text and "--copy-scale" in text and "a copy of the U-Net" in text
    cfg = config_from_args(parse_args(["--model", "unetcopy", "--copy-scale", "3", "--out", "x"]))
    assert cfg.copy_scale == 3.0 and cfg.to_dict()["copy_scale"] == 3.0
    with pytest.raises(ValueError, match="--copy-scale is an option of unetcopy, not of unet"):
        config_from_args(parse_args(["--model", "unet", "--copy-scale", "3", "--out", "x"]))
    with pytest.raises(ValueError, match="--copy-scale must be above 0"):
        config_from_args(parse_args(["--model", "unetcopy", "--copy-scale", "0", "--out", "x"]))


def test_a_new_method_builds_from_the_train_form(registered, tmp_path, monkeypatch) -> None:
    from core.jobs import TrainForm, build_train_args

    args = build_train_args(TrainForm(method="unetcopy", options={"copy_scale": 2.5}), tmp_path)
    assert args["model"] == "unetcopy" and args["copy_scale"] == 2.5

    calls = []

    def launcher(cmd, log):
        calls.append(list(cmd))
        return os.getpid()

    monkeypatch.setenv("COLORIZE_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(PAGES / "2_Train.py"), default_timeout=120)
    at.session_state["_launcher"] = launcher
    at.session_state["source"] = "sample"
    at.run()
    at.segmented_control(key="train_method").set_value("unetcopy").run()
    assert not at.exception, at.exception
    at.number_input(key="train_opt_unetcopy_copy_scale").set_value(4.0)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    argv = " ".join(calls[0])
    assert "--model unetcopy" in argv and "--copy-scale 4.0" in argv


def test_a_new_method_trains_and_is_a_model_everywhere(isolated, tmp_path) -> None:
    from core.evaluate import main as evaluate_main
    from core.inference import available_models, load_colorizer

    cfg = json.loads((isolated / "config.json").read_text())
    assert cfg["model"] == "unetcopy" and cfg["copy_scale"] == 2.0
    entries = [e for e in available_models() if e.method == "unetcopy"]
    assert [e.name for e in entries] == ["run:copy-run"]
    assert load_colorizer(isolated).method == "unetcopy"

    out = tmp_path / "scores.json"
    assert evaluate_main(["--run", str(isolated), "--source", "sample", "--limit", "64", "--no-ssim",
                          "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["n_images"] == 64 and scores["method"] == "unetcopy" and 0 < scores["auc_ab"] <= 100

    compare = AppTest.from_file(str(PAGES / "3_Compare.py"), default_timeout=180)
    compare.session_state["source"] = "sample"
    compare.run()
    assert not compare.exception, compare.exception
    assert "run:copy-run (unetcopy, run)" in compare.multiselect(key="compare_models").options

    board = AppTest.from_file(str(PAGES / "5_Leaderboard.py"), default_timeout=180)
    board.session_state["source"] = "sample"
    board.session_state["lb_limit"] = 100
    board.run()
    assert not board.exception, board.exception
    table = board.table[0].value
    assert "run:copy-run" in set(table.index.astype(str))


def test_a_new_file_in_core_methods_is_found_without_other_edits(tmp_path) -> None:
    name = f"probe{uuid.uuid4().hex[:8]}"
    module = ROOT / "core" / "methods" / f"{name}.py"
    module.write_text(
        "from core.methods.base import register\n"
        "from core.methods.unet import UNetMethod\n\n\n"
        "@register\n"
        f"class Probe(UNetMethod):\n    name = {name!r}\n    label = 'Probe'\n    help = 'a probe method'\n")
    try:
        r = subprocess.run([sys.executable, "-m", "core.train", "--help"], cwd=ROOT, capture_output=True, text=True,
                           env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=120)
    finally:
        module.unlink(missing_ok=True)
    assert r.returncode == 0, r.stderr
    assert name in r.stdout and "a probe method" in r.stdout
