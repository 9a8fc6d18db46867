"""Tests for core.networks: shapes, value ranges, structure, registry, weights, FLOPs."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

from core.networks import (
    NETWORKS,
    Classifier,
    PatchDiscriminator,
    UNet,
    VGGFeatures,
    build_network,
    conv_flops,
    count_parameters,
    freeze,
    init_weights,
)

SIZES = [(32, 32), (64, 48)]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# -----------------------------------------------------------------------------
# UNet


@pytest.mark.parametrize("width", [8, 32])
@pytest.mark.parametrize("size", SIZES)
def test_unet_output_shape_and_range(width: int, size: tuple[int, int]) -> None:
    model = UNet(width=width)
    x = torch.rand(2, 1, *size) * 2 - 1
    for training in (True, False):
        model.train(training)
        y = model(x)
        assert y.shape == (2, 2, *size)
        assert y.min() >= -1 and y.max() <= 1
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [(40, 40), (32, 36), (30, 32)])
def test_unet_rejects_sizes_not_multiple_of_16(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        UNet(width=8)(torch.zeros(1, 1, *size))


def test_unet_dropout_only_in_two_deepest_decoder_blocks() -> None:
    model = UNet(width=8)
    with_dropout = [any(isinstance(m, nn.Dropout) for m in block.modules()) for block in model.decoder]
    assert with_dropout == [True, True, False, False]
    assert all(m.p == 0.5 for m in model.decoder.modules() if isinstance(m, nn.Dropout))
    assert not any(isinstance(m, nn.Dropout) for m in model.encoder.modules())
    no_dropout = UNet(width=8, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())


@pytest.mark.parametrize("width", [8, 32])
def test_unet_channels_double_and_cap_at_8x_width(width: int) -> None:
    model = UNet(width=width)
    encoder_out = [next(m for m in block if isinstance(m, nn.Conv2d)).out_channels for block in model.encoder]
    assert encoder_out == [width, 2 * width, 4 * width, 8 * width, 8 * width]
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            assert m.out_channels <= 8 * width
    # each decoder block's output matches the encoder activation it is joined to
    decoder_out = [block[0].out_channels for block in model.decoder]
    assert decoder_out == encoder_out[-2::-1]


def test_unet_first_conv_pads_like_same() -> None:
    model = UNet(width=8)
    pad, conv = model.encoder[0][0], model.encoder[0][1]
    same = nn.Conv2d(1, 8, 4, 1, padding="same", bias=False)
    same.weight.data.copy_(conv.weight.data)
    x = torch.rand(2, 1, 32, 32)
    with warnings.catch_warnings():  # torch warns that even-kernel "same" pads a copy
        warnings.simplefilter("ignore")
        expected = same(x)
    torch.testing.assert_close(conv(pad(x)), expected)


def test_unet_encoder_has_batchnorm_and_leaky_relu() -> None:
    model = UNet(width=8)
    for block in model.encoder:
        kinds = [type(m) for m in block]
        assert nn.BatchNorm2d in kinds
        leaky = next(m for m in block if isinstance(m, nn.LeakyReLU))
        assert leaky.negative_slope == 0.2


def test_unet_channels_last_matches_contiguous() -> None:
    model = UNet(width=8).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


# -----------------------------------------------------------------------------
# PatchDiscriminator


@pytest.mark.parametrize(("size", "expected"), [((32, 32), (2, 2)), ((64, 48), (6, 4))])
def test_discriminator_patch_map_shape(size: tuple[int, int], expected: tuple[int, int]) -> None:
    model = PatchDiscriminator(width=8)
    y = model(torch.rand(3, 3, *size))
    assert y.shape == (3, 1, *expected)
    assert PatchDiscriminator.output_size(*size) == expected


def test_discriminator_layout() -> None:
    model = PatchDiscriminator()  # width 64
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.body[0].modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    assert not any(isinstance(m, nn.Sigmoid) for m in model.modules())


# -----------------------------------------------------------------------------
# Classifier


@pytest.mark.parametrize("width", [8, 32])
def test_classifier_logits_and_features(width: int) -> None:
    model = Classifier(width=width)
    x = torch.rand(4, 3, 32, 32)
    assert model(x).shape == (4, 10)
    feats = model.features(x, [0, 1, 2])
    assert [tuple(f.shape) for f in feats] == [
        (4, width, 32, 32),
        (4, 2 * width, 16, 16),
        (4, 4 * width, 8, 8),
    ]
    reordered = model.features(x, [2, 0])
    torch.testing.assert_close(reordered[0], feats[2])
    torch.testing.assert_close(reordered[1], feats[0])


def test_classifier_normalises_inside() -> None:
    assert len(Classifier.MEAN) == len(Classifier.STD) == 3
    model = Classifier(width=8, num_classes=5).eval()
    mean_image = torch.tensor(Classifier.MEAN).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    # the CIFAR mean colour is mapped to zero before the first stage
    out = model.features(mean_image, [0])[0]
    torch.testing.assert_close(out, model.stages[0](torch.zeros(1, 3, 16, 16)))
    assert model(torch.rand(2, 3, 64, 48)).shape == (2, 5)


def test_classifier_rejects_bad_feature_layers() -> None:
    model = Classifier(width=8)
    with pytest.raises(ValueError, match="0..2"):
        model.features(torch.rand(1, 3, 32, 32), [3])
    with pytest.raises(ValueError):
        model.features(torch.rand(1, 3, 32, 32), [])


# -----------------------------------------------------------------------------
# VGGFeatures


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> str:
    """Point torch hub at an empty temporary TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # undo any earlier set_dir
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    return torch.hub.get_dir()


def test_vgg_from_local_cache_returns_none_without_weights(hub_dir: str) -> None:
    assert VGGFeatures.weights_path().startswith(hub_dir)
    assert VGGFeatures.from_local_cache([0, 1]) is None


def test_vgg_from_local_cache_loads_cached_weights(hub_dir: str) -> None:
    # A checkpoint shaped like torchvision's: "features.*" plus classifier keys.
    trunk = VGGFeatures(layers=[4]).stages
    state = {
        f"features.{i}.{k}": v.clone()
        for i, m in enumerate(m for stage in trunk for m in stage)
        for k, v in m.state_dict().items()
    }
    for k, v in state.items():  # non-default statistics, to see that they load
        if k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
        elif k.endswith("running_mean"):
            v.normal_(0.0, 0.1)
    state["classifier.6.bias"] = torch.zeros(1000)
    path = VGGFeatures.weights_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path)

    model = VGGFeatures.from_local_cache(layers=[0, 1, 2, 3, 4])
    assert isinstance(model, VGGFeatures)
    torch.testing.assert_close(model.stages[0][0].weight, state["features.0.weight"])
    torch.testing.assert_close(model.stages[4][-2].running_var, state["features.41.running_var"])

    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    feats = model(x)
    assert [tuple(f.shape) for f in feats] == [
        (2, 64, 32, 32),
        (2, 128, 16, 16),
        (2, 256, 8, 8),
        (2, 512, 4, 4),
        (2, 512, 2, 2),
    ]
    assert [tuple(f.shape) for f in model.features(x, [1])] == [(2, 128, 16, 16)]
    # frozen: eval mode survives .train(), no parameter gradients, input gradients flow
    model.train()
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    sum(f.mean() for f in feats).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_vgg_keeps_only_requested_stages() -> None:
    model = VGGFeatures(layers=[1])
    assert len(model.stages) == 2
    with pytest.raises(ValueError):
        model.features(torch.rand(1, 3, 32, 32), [2])


# -----------------------------------------------------------------------------
# Registry, init, accounting


def test_registry_builds_known_networks() -> None:
    assert set(NETWORKS) == {"unet", "patch_discriminator", "classifier"}
    assert isinstance(build_network("unet", width=8), UNet)
    assert isinstance(build_network("patch_discriminator", width=8), PatchDiscriminator)
    clf = build_network("classifier", width=8, num_classes=3)
    assert isinstance(clf, Classifier)
    assert clf(torch.rand(1, 3, 32, 32)).shape == (1, 3)


def test_registry_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown network") as info:
        build_network("resnet")
    for name in NETWORKS:
        assert name in str(info.value)


def test_init_weights_is_pix2pix_style() -> None:
    model = init_weights(
        nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(512), nn.Linear(256, 256)),
        std=0.02,
    )
    conv, bn, linear = model
    assert abs(conv.weight.std().item() - 0.02) < 0.002
    assert abs(linear.weight.std().item() - 0.02) < 0.002
    assert abs(bn.weight.mean().item() - 1.0) < 0.005
    assert abs(bn.weight.std().item() - 0.02) < 0.005
    for bias in (conv.bias, bn.bias, linear.bias):
        assert torch.count_nonzero(bias) == 0


def test_count_parameters() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    assert count_parameters(model) == 3 * 4 + 4 + 4 * 2 + 2
    freeze(model[0])
    assert count_parameters(model, trainable_only=True) == 4 * 2 + 2
    assert count_parameters(model) == 26


def test_conv_flops_single_conv_matches_hand_computation() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # output 2 x 8 x 32 x 32 elements, each 3 * 3 * 3 multiply-adds
    assert conv_flops(conv, (2, 3, 32, 32)) == 2 * (2 * 8 * 32 * 32) * (3 * 3 * 3)
    strided = nn.Conv2d(4, 6, kernel_size=4, stride=2, padding=1, groups=2)
    assert conv_flops(strided, (1, 4, 16, 16)) == 2 * (6 * 8 * 8) * (2 * 4 * 4)


def test_conv_flops_transposed_and_linear() -> None:
    up = nn.ConvTranspose2d(8, 4, kernel_size=4, stride=2, padding=1)
    # each of the 8 x 5 x 5 inputs feeds a 4 x 4 x 4 window
    assert conv_flops(up, (1, 8, 5, 5)) == 2 * (8 * 5 * 5) * (4 * 4 * 4)
    assert conv_flops(nn.Linear(10, 7), (3, 10)) == 2 * 3 * 10 * 7


def test_conv_flops_leaves_model_state_untouched() -> None:
    model = UNet(width=8)
    model.train()
    model.decoder[0].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flops = conv_flops(model, (1, 1, 32, 32))
    assert flops > 0
    assert model.training and not model.decoder[0].training
    assert model.decoder[1].training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
