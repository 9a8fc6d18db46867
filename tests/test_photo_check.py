"""core.photo_check (the best network size on photographs, recorded in the card) and full-resolution colorization
in bands of bounded size (core.inference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import core.inference as inference
from core import photo_check
from core.colour import rgb_to_lab
from core.config import TrainConfig
from core.inference import Colorizer, colorize_picture, default_net_size
from core.methods import build_generator

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.fixture(scope="module")
def tiny() -> Colorizer:
    """A width-8 U-Net with seeded random weights (no card: the fallback size applies)."""
    torch.manual_seed(0)
    net = build_generator("unet", TrainConfig(model="unet", width=8).to_dict()).eval()
    return Colorizer("tiny", "unet", net, "tiny.pt", {"card": {}})


def test_photo_check_on_one_photo_and_two_sizes(tiny: Colorizer, tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    table = photo_check.check(tiny, ["chelsea"], [32, 48], progress=lambda *a: calls.append(a))
    assert list(table["size"]) == [32, 48] and set(table["photo"]) == {"chelsea"}
    assert calls == [("photo check tiny", 1, 2), ("photo check tiny", 2, 2)]
    gray = table["gray_mae_rgb"].iloc[0]
    assert gray > 1.0 and np.allclose(table["gain"], gray - table["mae_rgb"])
    best = photo_check.best_size(table)
    assert best == int(table.loc[table["mae_rgb"].idxmin(), "size"])

    card = tmp_path / "tiny.json"
    card.write_text(json.dumps({"name": "tiny", "method": "unet", "evaluation": {"n_images": 5}}, indent=1))
    written = photo_check.write_card(card, table)
    again = json.loads(card.read_text())
    assert again == written and again["name"] == "tiny" and again["evaluation"] == {"n_images": 5}
    assert again["default_net_size"] == best
    check = again["net_size_check"]
    assert check["photos"] == ["chelsea"] and set(check["mean_by_size"]) == {"32", "48"}
    assert check["gray_mean"] == round(float(gray), 3)
    assert set(check["artefact_ratio_by_size"]) == {"32", "48"} and (table["artefact_ratio"] > 0).all()


def test_the_artefact_ratio_tells_a_dot_pattern_from_smooth_colour() -> None:
    rgb = photo_check.photo("chelsea")
    assert photo_check.picture_artefacts(rgb, rgb) == pytest.approx(1.0)
    dotted = rgb.astype(np.int16)
    dotted[::2, ::2, 0] += 40  # a red dot on every other pixel: colour energy at the highest frequencies
    dotted = np.clip(dotted, 0, 255).astype(np.uint8)
    assert photo_check.picture_artefacts(dotted, rgb) > 2.0
    from PIL import Image

    small = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] // 8, rgb.shape[0] // 8)))
    blurred = np.asarray(Image.fromarray(small).resize(rgb.shape[1::-1], Image.Resampling.BILINEAR))
    assert photo_check.picture_artefacts(blurred, rgb) < 1.0  # colour from a small network, enlarged: smoother


def test_the_card_size_is_colorize_pictures_default(tiny: Colorizer) -> None:
    rgb = photo_check.photo("coffee")
    assert default_net_size(tiny) == inference.FALLBACK_NET_SIZE == 64
    np.testing.assert_array_equal(colorize_picture(tiny, rgb), colorize_picture(tiny, rgb, 64))
    sized = Colorizer("tiny", "unet", tiny.net, "tiny.pt", {"card": {"default_net_size": 48}})
    assert default_net_size(sized) == 48
    np.testing.assert_array_equal(colorize_picture(sized, rgb), colorize_picture(sized, rgb, 48))
    assert not np.array_equal(colorize_picture(sized, rgb), colorize_picture(sized, rgb, 64))


def test_shipped_cards_name_their_measured_size() -> None:
    for name in ("unet", "dcgan", "nogan"):
        card = json.loads((CHECKPOINTS / f"{name}.json").read_text())
        means = card["net_size_check"]["mean_by_size"]
        assert card["default_net_size"] == int(min(means, key=lambda s: (means[s], int(s))))
        assert card["net_size_check"]["photos"] == list(photo_check.PHOTOS)


def test_from_cards_prints_the_recorded_checks_and_refuses_a_card_without_one(
        tiny: Colorizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = photo_check.check(tiny, ["chelsea", "rocket"], [32, 48])
    (tmp_path / "tiny.json").write_text(json.dumps({"method": "unet"}))
    photo_check.write_card(tmp_path / "tiny.json", table)
    assert photo_check.main(["--from-cards", str(tmp_path / "tiny.pt")]) == 0
    out = capsys.readouterr().out
    means = photo_check.by_size(table)
    row = next(line for line in out.splitlines() if line.startswith("| U-Net (`tiny.pt`)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    best = photo_check.best_size(table)
    for size, cell in zip((32, 48), cells[1:3], strict=True):
        value = f"{means.loc[size, 'mae_rgb']:.2f}"
        assert cell == (f"**{value}**" if size == best else value)
    assert cells[3:] == [f"{means['gray_mae_rgb'].iloc[0]:.2f}", str(best)]
    assert "Artefact ratio" in out

    (tmp_path / "bare.json").write_text(json.dumps({"method": "unet"}))
    assert photo_check.main(["--from-cards", str(tmp_path / "bare.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "records no photo check" in err[0] and "--write" in err[0]


def test_the_readme_photo_table_is_the_shipped_cards() -> None:
    readme = (CHECKPOINTS.parent / "README.md").read_text()
    printed = photo_check.markdown_tables(*photo_check.card_tables([CHECKPOINTS / f"{n}.pt"
                                                                    for n in ("unet", "dcgan", "nogan")]))
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    missing = [line for line in rows if line not in readme]
    assert not missing, "README's photo check tables differ from the cards; paste python -m core.photo_check " \
                        f"--from-cards checkpoints/{{unet,dcgan,nogan}}.pt: {missing}"


def test_a_tall_picture_keeps_its_full_resolution_in_bounded_bands(tiny: Colorizer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (300, 20, 3), dtype=np.uint8), 10, axis=0), 10, axis=1)
    assert rgb.shape == (3000, 200, 3)
    whole = colorize_picture(tiny, rgb, 64)
    seen: list[int] = []
    real = inference.rgb_to_lab

    def counting(images):
        seen.append(int(np.asarray(images).shape[0] * np.asarray(images).shape[1]))
        return real(images)

    monkeypatch.setattr(inference, "rgb_to_lab", counting)
    banded = colorize_picture(tiny, rgb, 64, tile_pixels=20_000)
    assert banded.shape == rgb.shape == whole.shape and banded.dtype == np.uint8
    np.testing.assert_array_equal(banded, whole)  # bands join exactly
    full_res = [s for s in seen if s > 64 * 64]  # the conversions of the full-resolution picture
    assert max(full_res) <= 20_000 and sum(full_res) == 3000 * 200 and len(full_res) == 30
    L_in, L_out = real(rgb)[..., 0], real(whole)[..., 0]
    assert np.abs(L_in - L_out).mean() < 1.0  # the output's lightness is the picture's own, pixel for pixel


def test_bands_match_one_bilinear_enlargement(tiny: Colorizer) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (123, 77, 3), dtype=np.uint8)
    ab = torch.rand(1, 2, 16, 16) * 0.6 - 0.3
    big = torch.nn.functional.interpolate(ab, size=(123, 77), mode="bilinear", align_corners=False)
    from core.colour import lab_to_rgb, rgb_to_uint8

    L = torch.from_numpy(rgb_to_lab(rgb)[..., :1]).permute(2, 0, 1)[None]
    reference = rgb_to_uint8(lab_to_rgb(torch.cat((L, big * 110.0), dim=1)))[0]
    for tile in (1, 1000, 1 << 20):
        out = inference.join_colours(rgb, ab, tile)
        assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1
