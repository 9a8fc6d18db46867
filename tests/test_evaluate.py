"""Baselines and the evaluation plumbing: tables, JSON, CSV, leaderboard and command-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core import evaluate as E
from core.baselines import BASELINES, Baseline, make_baseline, mean_ab
from core.colour import AB_SCALE, uint8_to_model
from core.metrics import METRICS, aggregate, validation_score

LIMIT = 128


class FakeColorizer:
    """Stand-in for core.inference.Colorizer: half the true colour plus noise, looked up from L."""

    def __init__(self, prepared, part: str = "test") -> None:
        L, ab = uint8_to_model(prepared.images(part))
        self.table = {l.numpy().tobytes(): a for l, a in zip(L, ab)}
        self.name, self.method, self.info = "fake", "unet", {"config": {"width": 8}}

    def predict(self, L: torch.Tensor) -> torch.Tensor:
        truth = torch.stack([self.table[l.numpy().tobytes()] for l in L])
        return 0.5 * truth + 0.02 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def prepared():
    from core.data import prepare

    return prepare("sample", "hue", 0.1, 0, progress=False)


@pytest.fixture(scope="module")
def result(prepared) -> E.EvalResult:
    calls: list[tuple[int, int]] = []
    out = E.evaluate(FakeColorizer(prepared), prepared, "test", limit=LIMIT, batch_size=48, keep_predictions=True,
                     callback=lambda done, total: calls.append((done, total)))
    assert calls == [(48, LIMIT), (96, LIMIT), (LIMIT, LIMIT)]
    return out


def test_limit_draws_the_same_spread_images_for_every_model(prepared, result):
    rows = result.per_image["part_index"].to_numpy()
    assert len(rows) == LIMIT and (np.diff(rows) > 0).all() and rows.max() < len(prepared.images("test"))
    labels = np.asarray(prepared.labels("test"))
    assert result.per_image["label"].tolist() == labels[rows].tolist()
    assert result.per_image["label"].nunique() == len(set(labels.tolist()))  # every class, not the first one or two
    gray = E.evaluate(make_baseline("gray"), prepared, "test", limit=LIMIT, ssim=False)
    assert gray.per_image["part_index"].tolist() == rows.tolist()
    whole = E.evaluate(make_baseline("gray"), prepared, "test", ssim=False)
    assert whole.per_image["part_index"].tolist() == list(range(len(labels)))
    np.testing.assert_allclose(whole.per_image["psnr"].to_numpy()[rows], gray.per_image["psnr"].to_numpy())


def test_baselines(prepared):
    assert BASELINES == ("gray", "mean_ab")
    L = torch.zeros(3, 1, 8, 16)
    gray = make_baseline("gray")
    assert gray.name == "gray" and torch.equal(gray.predict(L), torch.zeros(3, 2, 8, 16))
    base = make_baseline("mean_ab", prepared)
    _, ab = uint8_to_model(prepared.images("train"))
    expected = ab.double().mean(dim=(0, 2, 3))
    pred = base.predict(L)
    assert pred.shape == (3, 2, 8, 16)
    assert torch.allclose(pred, expected.float().view(1, 2, 1, 1).expand_as(pred), atol=1e-6)
    assert np.allclose(base.info["ab_mean_lab"], (expected * AB_SCALE).numpy(), atol=1e-4)
    assert mean_ab(prepared.images("train")[:10], chunk=3) == pytest.approx(
        tuple(uint8_to_model(prepared.images("train")[:10])[1].double().mean(dim=(0, 2, 3)).tolist()))
    with pytest.raises(ValueError):
        make_baseline("mean_ab")
    with pytest.raises(ValueError):
        make_baseline("sepia")


def test_per_image_table_and_metrics(result, prepared):
    df = result.per_image
    assert result.n_images == LIMIT and len(df) == LIMIT and df.index.name == "index"
    assert {"part_index", "source_index", "label", "class_name", "hue", "hue_bin", *METRICS} <= set(df.columns)
    rows = df["part_index"].to_numpy()
    assert np.array_equal(df["label"], prepared.labels("test")[rows])
    assert np.allclose(df["hue"], prepared.subset_hues("test")[rows])
    assert df["class_name"].iloc[0] == prepared.dataset.class_names[df["label"].iloc[0]]
    assert result.predictions is not None and result.predictions.shape == (LIMIT, 2, 32, 32)
    L, ab = uint8_to_model(prepared.images("test")[rows])
    from core.metrics import compute_metrics

    direct = compute_metrics(L, result.predictions, ab)
    for k in METRICS:
        assert result.metrics[k] == pytest.approx(direct[k], rel=1e-9, nan_ok=True)
    assert 0 < result.metrics["colorfulness_ratio"] < 1


def test_group_tables_add_up_to_the_whole(result):
    for table in (result.per_class, result.per_hue_bin):
        assert table["n_images"].sum() == result.n_images
        full = table[table["n_images"] > 0]
        w = full["n_images"].to_numpy()
        for k in METRICS:
            if k == "colorfulness_ratio":
                continue
            assert np.sum(w * full[k]) / w.sum() == pytest.approx(result.metrics[k], rel=1e-9)
        ratio = np.sum(w * full["colorfulness"]) / np.sum(w * full["colorfulness_gt"])
        assert ratio == pytest.approx(result.metrics["colorfulness_ratio"], rel=1e-9)
    assert len(result.per_hue_bin) == E.HUE_BINS
    assert np.allclose(result.per_hue_bin["hue_lo"], np.arange(12) / 12)
    counts = np.bincount(E.hue_bin(result.per_image["hue"]), minlength=12)
    assert np.array_equal(result.per_hue_bin["n_images"], counts)


def test_to_json(result):
    doc = result.to_json()
    text = json.dumps(doc, allow_nan=False)  # NaN (empty hue bins) becomes null: strict JSON
    assert {*METRICS, "n_images", "model", "source", "part", "per_class", "per_hue_bin", "score"} <= set(doc)
    assert doc["n_images"] == LIMIT and doc["model"] == "fake" and doc["part"] == "test"
    assert doc["score"] == pytest.approx(validation_score(result.metrics))
    assert json.loads(text)["per_class"][0]["n_images"] > 0


def test_leaderboard_and_best(prepared, result):
    results = [result] + [E.evaluate(make_baseline(b, prepared), prepared, limit=LIMIT, ssim=False) for b in BASELINES]
    table = E.leaderboard(results)
    assert list(table.index) == list(table.sort_values("auc_ab", ascending=False).index)
    assert set(table.index) == {"fake", "gray", "mean_ab"}
    best = E.best_per_column(table)
    assert best["auc_ab"] == table["auc_ab"].idxmax() and best["mae_rgb"] == table["mae_rgb"].idxmin()
    assert best["ssim"] == "fake"  # the only one with SSIM
    assert "colorfulness_gt" not in best
    text = E.format_table(table, best)
    assert text.count("*") == len(best)
    other = E.evaluate(make_baseline("gray"), prepared, limit=LIMIT - 1, ssim=False)
    with pytest.raises(ValueError):
        E.leaderboard([result, other])


def test_cli_baseline_json_and_csv(tmp_path, capsys):
    out_json, out_csv = tmp_path / "m.json", tmp_path / "m.csv"
    rc = E.main(["--baseline", "gray", "--source", "sample", "--limit", "50", "--json", str(out_json),
                 "--csv", str(out_csv), "--no-ssim"])
    assert rc == 0
    assert "auc_ab" in capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    assert doc["n_images"] == 50 and doc["model"] == "gray" and doc["source"] == "sample" and doc["part"] == "test"
    assert doc["colorfulness"] == pytest.approx(0.0, abs=0.05)
    df = pd.read_csv(out_csv, index_col="index")
    assert len(df) == 50 and set(METRICS) <= set(df.columns)
    assert aggregate({k: df[k].to_numpy() for k in METRICS})["auc_ab"] == pytest.approx(doc["auc_ab"])


def test_cli_val_part_and_split(tmp_path):
    out = tmp_path / "v.json"
    rc = E.main(["--baseline", "mean_ab", "--source", "sample", "--part", "val", "--split", "random",
                 "--seed", "3", "--limit", "40", "--json", str(out), "--no-ssim"])
    assert rc == 0 and json.loads(out.read_text())["part"] == "val"


@pytest.mark.parametrize("args", [
    ["--checkpoint", "/nonexistent/model.pt"],
    ["--run", "/nonexistent/run"],
    ["--baseline", "gray", "--source", "/nonexistent/data"],
    ["--baseline", "gray", "--limit", "0"],
    ["--checkpoint", "BAD"],
])
def test_cli_errors_are_one_line(args, tmp_path, capsys):
    if "BAD" in args:
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        args = [str(bad) if a == "BAD" else a for a in args]
    assert E.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err


def test_real_tiny_checkpoint_and_leaderboard_cli(tmp_path, capsys):
    """A width-8 U-Net saved as a weights checkpoint, loaded by core.inference, on the leaderboard."""
    pytest.importorskip("core.inference")
    from core.checkpoint import FORMAT_WEIGHTS, VERSION, save_checkpoint
    from core.networks import UNet

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint({"format": FORMAT_WEIGHTS, "version": VERSION, "method": "unet", "config": {"width": 8},
                     "metrics": {}, "generator": UNet(width=8).state_dict()}, path)
    out_json, out_csv = tmp_path / "lb.json", tmp_path / "lb.csv"
    rc = E.main(["--leaderboard", str(path), "--source", "sample", "--limit", "48", "--json", str(out_json),
                 "--csv", str(out_csv)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tiny" in printed and "*" in printed
    doc = json.loads(out_json.read_text())
    assert [r["model"] for r in doc["rows"]] == sorted([r["model"] for r in doc["rows"]],
                                                       key=lambda m: -next(r["auc_ab"] for r in doc["rows"]
                                                                           if r["model"] == m))
    assert {r["model"] for r in doc["rows"]} == {"tiny", "gray", "mean_ab"}
    assert doc["n_images"] == 48 and doc["best"]["auc_ab"] in {"tiny", "gray", "mean_ab"}
    assert len(pd.read_csv(out_csv)) == 3


def test_baseline_is_a_plain_object():
    b = Baseline("const", (0.1, -0.2))
    assert torch.allclose(b.predict(torch.zeros(1, 1, 2, 2))[0, :, 0, 0], torch.tensor([0.1, -0.2]))


def test_cpu_network_on_worker_threads_matches_a_direct_forward(prepared, tmp_path):
    """Batches of a CPU colorizer are split into pieces for worker threads; the result must not change."""
    pytest.importorskip("core.inference")
    from core.inference import load_colorizer
    from core.networks import UNet

    torch.manual_seed(1)
    path = tmp_path / "tiny.pt"
    from core.checkpoint import FORMAT_WEIGHTS, VERSION, save_checkpoint

    save_checkpoint({"format": FORMAT_WEIGHTS, "version": VERSION, "method": "unet", "config": {"width": 8},
                     "generator": UNet(width=8).state_dict()}, path)
    colorizer = load_colorizer(str(path))
    n = E.PIECE * 2 + 20
    res = E.evaluate(colorizer, prepared, limit=n, batch_size=n, ssim=False, keep_predictions=True)
    L, _ = uint8_to_model(prepared.images("test")[res.per_image["part_index"].to_numpy()])
    assert res.predictions is not None
    assert torch.allclose(res.predictions, colorizer.predict(L), atol=1e-5)
    assert res.info["path"] == str(path) and res.method == "unet"


def test_jsonable_gives_strict_json_or_keeps_nan_for_python() -> None:
    doc = {"a": np.float32(1.5), "n": float("nan"), "t": torch.tensor([1, 2]), "arr": np.array([[0.5]]),
           "inf": np.float64("inf"), 3: (True, None), "path": E.Path("x/y")}
    strict = E.jsonable(doc)
    assert strict == {"a": 1.5, "n": None, "t": [1, 2], "arr": [[0.5]], "inf": None, "3": [True, None], "path": "x/y"}
    json.dumps(strict, allow_nan=False)  # strict JSON: no NaN token
    kept = json.loads(json.dumps(E.jsonable(doc, keep_nan=True)))
    assert np.isnan(kept["n"]) and kept["inf"] == float("inf") and kept["t"] == [1, 2]
