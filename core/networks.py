"""Neural networks for image colorization (pure ``torch.nn``, no training code).

Read top to bottom:

1. building blocks and weight init,
2. ``UNet``: the colorization generator, L -> a,b,
3. ``PatchDiscriminator``: conditional PatchGAN critic on (L, a, b),
4. ``Classifier``: small VGG-like CIFAR-10 classifier that doubles as a feature
   network for perceptual ("feature") losses,
5. ``VGGFeatures``: frozen ImageNet ``vgg16_bn`` features, loaded only from the
   local torch hub cache (never downloaded),
6. a name -> constructor registry and FLOP / parameter counters for benchmarks.

Conventions shared by the colorization networks: L is N x 1 x H x W scaled to
[-1, 1]; a,b are N x 2 x H x W in [-1, 1] (tanh; callers multiply by 110).
H and W may be any multiple of 16, so the same weights colorize 32x32 CIFAR
images and larger pictures. All modules are plain feed-forward graphs without
data-dependent Python control flow, so they work with
``memory_format=torch.channels_last`` and ``torch.compile``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

# -----------------------------------------------------------------------------
# Building blocks and initialisation


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """pix2pix-style init: conv/linear weights ~ N(0, std), BN weights ~ N(1, std), biases 0.

    Small random weights keep the early GAN game balanced; every constructor in
    this file calls it. Returns ``module`` for chaining.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode and stop gradients to its parameters (feature networks)."""
    module.eval()
    module.requires_grad_(False)
    return module


def _down(c_in: int, c_out: int, stride: int, norm: bool = True) -> nn.Sequential:
    """4x4 conv (padding 1) -> [BatchNorm] -> LeakyReLU(0.2). Stride 2 halves H and W."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    """4x4 transposed conv (stride 2, padding 1; doubles H and W) -> BatchNorm -> ReLU [-> Dropout]."""
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (same size) -> BatchNorm -> ReLU, the classifier's unit."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _check_layers(layers: Sequence[int], num_stages: int) -> None:
    """Raise ValueError unless every feature index is in 0..num_stages-1."""
    if len(layers) == 0 or any(not 0 <= i < num_stages for i in layers):
        raise ValueError(f"feature layers must be non-empty indices in 0..{num_stages - 1}, got {list(layers)}")


# -----------------------------------------------------------------------------
# Generator


class UNet(nn.Module):
    """U-Net colorization generator: L (N x 1 x H x W) -> a,b (N x 2 x H x W, tanh).

    Layout for width w on a 32x32 input (H, W must be multiples of 16):

        block       layers                                            output (C x H x W)
        encoder[0]  pad(1,2,1,2), conv4x4 s1 -> BN -> LeakyReLU(0.2)  w   x 32 x 32
        encoder[1]  conv4x4 s2 p1 -> BN -> LeakyReLU(0.2)             2w  x 16 x 16
        encoder[2]  conv4x4 s2 p1 -> BN -> LeakyReLU(0.2)             4w  x  8 x  8
        encoder[3]  conv4x4 s2 p1 -> BN -> LeakyReLU(0.2)             8w  x  4 x  4
        encoder[4]  conv4x4 s2 p1 -> BN -> LeakyReLU(0.2)             8w  x  2 x  2 (bottleneck)
        decoder[0]  convT4x4 s2 p1 -> BN -> ReLU -> Dropout, + enc[3]  16w x  4 x  4
        decoder[1]  convT4x4 s2 p1 -> BN -> ReLU -> Dropout, + enc[2]  8w  x  8 x  8
        decoder[2]  convT4x4 s2 p1 -> BN -> ReLU,            + enc[1]  4w  x 16 x 16
        decoder[3]  convT4x4 s2 p1 -> BN -> ReLU,            + enc[0]  2w  x 32 x 32
        head        conv1x1 (with bias) -> tanh                        2   x 32 x 32

    ("+ enc[i]" is channel concatenation with that encoder block's output.)
    Each decoder block is pix2pix-ordered: up-conv -> BN -> ReLU (-> dropout),
    then the result is concatenated (up first, skip second) with the mirrored
    encoder activation. Every encoder block, the first included, has BatchNorm.
    Encoder channels double per step and are capped at 8x the base width. The
    first 4x4 stride-1 conv keeps the size with asymmetric zero padding
    (1 left/top, 2 right/bottom, as ``padding='same'`` would), applied to the
    cheap 1-channel input. Convs followed by BatchNorm have no bias.
    """

    DEPTH = 4  # stride-2 steps; inputs must be multiples of 2**DEPTH = 16

    def __init__(
        self,
        width: int = 32,
        in_channels: int = 1,
        out_channels: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        # w, 2w, 4w, 8w, 8w: doubling per level, capped at 8x the base width
        chans = [min(width * 2**i, 8 * width) for i in range(self.DEPTH + 1)]
        self.encoder = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ZeroPad2d((1, 2, 1, 2)),
                    nn.Conv2d(in_channels, chans[0], 4, 1, 0, bias=False),
                    nn.BatchNorm2d(chans[0]),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            ]
            + [_down(chans[i - 1], chans[i], stride=2) for i in range(1, self.DEPTH + 1)]
        )
        # decoder[j] goes from level DEPTH-j to DEPTH-j-1; its input is the bottleneck
        # (j == 0) or the previous concat, its output matches the skip it joins.
        self.decoder = nn.ModuleList(
            [
                _up(
                    chans[self.DEPTH] if j == 0 else 2 * chans[self.DEPTH - j],
                    chans[self.DEPTH - j - 1],
                    dropout if j < 2 else 0.0,
                )
                for j in range(self.DEPTH)
            ]
        )
        self.head = nn.Conv2d(2 * chans[0], out_channels, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.DEPTH
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"UNet input H and W must be multiples of {multiple}, got {tuple(x.shape[-2:])}")
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck has no mirror
        for block in self.decoder:
            x = torch.cat([block(x), skips.pop()], dim=1)
        return torch.tanh(self.head(x))


# -----------------------------------------------------------------------------
# Discriminator


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: (L, a, b) as N x 3 x H x W -> N x 1 x H' x W' map of logits (no sigmoid).

    4x4 convs, all with padding 1: w s2, 2w s2, 4w s2, 8w s1 (BatchNorm on all
    but the first, LeakyReLU(0.2) after each), then a 4x4 s1 conv to 1 channel.
    For H, W multiples of 8 the map is (H/8 - 2) x (W/8 - 2): 32x32 gives
    16 -> 8 -> 4 -> 3 -> 2, i.e. a 2x2 patch map; 64x48 gives 6x4; 256x256 gives 30x30.
    Use ``output_size`` for the exact formula.
    """

    def __init__(self, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _down(in_channels, width, stride=2, norm=False),
            _down(width, 2 * width, stride=2),
            _down(2 * width, 4 * width, stride=2),
            _down(4 * width, 8 * width, stride=1),
            nn.Conv2d(8 * width, 1, 4, 1, 1),
        )
        init_weights(self)

    @staticmethod
    def output_size(height: int, width: int) -> tuple[int, int]:
        """Spatial size of the patch map for an input of ``height`` x ``width``."""

        def size(n: int) -> int:
            for stride in (2, 2, 2, 1, 1):  # kernel 4, padding 1
                n = (n + 2 - 4) // stride + 1
            return n

        return size(height), size(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# -----------------------------------------------------------------------------
# Classifier / feature network


class Classifier(nn.Module):
    """Small VGG-like CIFAR-10 classifier; input RGB in [0, 1] (N x 3 x H x W), output logits.

    Normalisation ``(rgb - MEAN) / STD`` with CIFAR-10 statistics happens inside
    ``forward`` and ``features``. Stages for width w (sizes at 32x32 input):

        stages[0]           conv-bn-relu w,  conv-bn-relu w     -> w  x 32x32
        stages[1]  maxpool, conv-bn-relu 2w, conv-bn-relu 2w    -> 2w x 16x16
        stages[2]  maxpool, conv-bn-relu 4w, conv-bn-relu 4w    -> 4w x  8x8
        head       maxpool, global average pool, linear        -> num_classes

    ``features(x, layers)`` returns the activations at the end of the chosen
    stages (indices 0..2, before that stage's pooling) for perceptual losses;
    call ``freeze(model)`` to use a trained classifier as a fixed feature network
    (and call it again if a parent module's ``.train()`` flips it back).
    """

    MEAN = (0.4914, 0.4822, 0.4465)
    STD = (0.2470, 0.2435, 0.2616)
    NUM_STAGES = 3

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)
        chans = [width, 2 * width, 4 * width]
        self.stages = nn.ModuleList()
        c_in = 3
        for i, c in enumerate(chans):
            pool = [nn.MaxPool2d(2)] if i > 0 else []
            self.stages.append(nn.Sequential(*pool, _conv_bn_relu(c_in, c), _conv_bn_relu(c, c)))
            c_in = c
        self.head = nn.Sequential(
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def features(self, x: torch.Tensor, layers: Sequence[int] = (0, 1, 2)) -> list[torch.Tensor]:
        """Activations after the stages in ``layers`` (0..2), in the order requested."""
        _check_layers(layers, self.NUM_STAGES)
        x = (x - self.mean) / self.std
        out: dict[int, torch.Tensor] = {}
        for i in range(max(layers) + 1):  # stop after the deepest requested stage
            x = self.stages[i](x)
            out[i] = x
        return [out[i] for i in layers]


class VGGFeatures(nn.Module):
    """Frozen torchvision ``vgg16_bn`` feature extractor with the ``features(x, layers)`` interface.

    Input RGB in [0, 1] (ImageNet normalisation inside). Layer indices 0..4 are
    the five VGG stages, taken after each stage's last ReLU (relu1_2, relu2_2,
    relu3_3, relu4_3, relu5_3), before its max-pool; only stages up to
    ``max(layers)`` are kept. Spatial sizes are H/1, H/2, H/4, H/8, H/16, so at
    32x32 the deepest features (index 4) are only 2x2 (1x1 after pooling):
    prefer indices 0..3 for CIFAR-sized images.

    ``VGGFeatures(layers)`` has random weights (tests, shapes); use
    ``VGGFeatures.from_local_cache(layers)`` for the ImageNet weights. The
    module always stays in eval mode and its parameters never require grad.
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)
    NUM_STAGES = 5

    def __init__(
        self,
        layers: Sequence[int] = (0, 1, 2, 3),
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        _check_layers(layers, self.NUM_STAGES)
        self.layers = tuple(layers)
        import torchvision  # here, not at the top: importing it takes seconds, and only VGG features need it

        # The convolutional trunk of vgg16_bn alone; building the full model would
        # also initialise its ~120M-parameter classifier for nothing.
        vgg = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"], batch_norm=True)
        if state_dict is not None:
            prefix = "features."
            vgg.load_state_dict({k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})
        # Split before every max-pool: stage i = [pool] + convs, ending on relu_i.
        pools = [i for i, m in enumerate(vgg) if isinstance(m, nn.MaxPool2d)]
        bounds = [0] + pools
        self.stages = nn.ModuleList(
            [nn.Sequential(*vgg[bounds[i] : bounds[i + 1]]) for i in range(max(self.layers) + 1)]
        )
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)
        freeze(self)

    @staticmethod
    def weights_path() -> str:
        """Where torch hub keeps the ImageNet ``vgg16_bn`` weights: ``<hub dir>/checkpoints/<file>``."""
        import torchvision

        url = torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1.url
        return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))

    @classmethod
    def from_local_cache(cls, layers: Sequence[int] = (0, 1, 2, 3)) -> VGGFeatures | None:
        """ImageNet-pretrained features if the weights file is already cached, else None.

        Never downloads: only ``weights_path()`` is read (``weights_only=True``).
        """
        path = cls.weights_path()
        if not os.path.isfile(path):
            return None
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        return cls(layers, state_dict=state_dict)

    def train(self, mode: bool = True) -> VGGFeatures:
        """Ignore ``mode``: the BatchNorm statistics are fixed, so stay in eval mode."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x, self.layers)

    def features(self, x: torch.Tensor, layers: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Activations after the stages in ``layers`` (default: the constructor's), in the order requested."""
        layers = self.layers if layers is None else layers
        _check_layers(layers, len(self.stages))
        x = (x - self.mean) / self.std
        out: dict[int, torch.Tensor] = {}
        for i in range(max(layers) + 1):
            x = self.stages[i](x)
            out[i] = x
        return [out[i] for i in layers]


# -----------------------------------------------------------------------------
# Registry and accounting

NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "patch_discriminator": PatchDiscriminator,
    "classifier": Classifier,
}


def build_network(name: str, **kwargs: object) -> nn.Module:
    """Construct the network registered under ``name`` with ``kwargs``; ValueError if unknown."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[name](**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def conv_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs (2 x multiply-adds) of convs, transposed convs and linears for one forward pass.

    Runs ``model`` once on zeros of ``input_shape`` (batch included) in eval
    mode under ``no_grad`` with forward hooks, then restores the training mode,
    so BatchNorm statistics are untouched. Biases, norms and activations are not
    counted; the result is what benchmarks divide by time to report GFLOP/s.
    Pass the plain module, not a ``torch.compile`` wrapper.
    """
    total = 0

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.ConvTranspose2d):  # every input element is scattered through the kernel
            k = m.weight.shape[2] * m.weight.shape[3]
            macs = inputs[0].numel() * (m.out_channels // m.groups) * k
        elif isinstance(m, nn.Conv2d):  # every output element gathers a kernel window
            k = m.weight.shape[2] * m.weight.shape[3]
            macs = output.numel() * (m.in_channels // m.groups) * k
        else:  # nn.Linear
            macs = output.numel() * m.in_features
        total += 2 * macs

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    dtype = param.dtype if param is not None else None
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device, dtype=dtype))
    finally:
        for m, training in modes.items():
            m.training = training
        for h in handles:
            h.remove()
    return total
