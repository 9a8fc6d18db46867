"""NoGAN, as DeOldify trains it: three phases in one run.

1. ``generator``: the U-Net alone, on a feature loss (L1 on a,b plus weighted L1 distances between feature
   maps of a frozen feature network on the predicted and the true colour image);
2. ``critic``: the patch discriminator alone, as a classifier of real vs generated (L, ab) from the frozen
   phase-1 generator;
3. ``gan``: a short joint phase, generator loss = adversarial + feature_weight x feature loss
   (+ gan_l1_weight x L1 on a,b, an optional pix2pix-style anchor), validated
   often so that the best checkpoint before artefacts appear (the inflection point) is kept as best.pt.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import generator_state, load_checkpoint
from core.colour import model_to_rgb
from core.config import TrainConfig
from core.methods.base import Method, Phase, register
from core.methods.dcgan import discriminator_step, generator_adversarial_loss, set_requires_grad
from core.networks import Classifier, PatchDiscriminator, UNet, VGGFeatures, freeze

SHIPPED_CLASSIFIER = Path(__file__).resolve().parents[2] / "checkpoints" / "classifier.pt"
CRITIC_LR = 2e-4


def load_classifier_features(path: str | Path) -> Classifier:
    """A frozen classifier from one of this project's checkpoints (training or weights file)."""
    payload = load_checkpoint(path)
    if payload["method"] != "classifier":
        raise ValueError(f"{path} holds a {payload['method']} model, not a classifier; NoGAN needs a classifier")
    net = Classifier(width=int(payload["config"]["width"]))
    net.load_state_dict(generator_state(payload))
    return freeze(net.eval())


def resolve_feature_net(cfg: TrainConfig) -> tuple[nn.Module | None, str]:
    """The feature network ``cfg.feature_net`` asks for, with a description; (None, why) when there is none yet.

    ``auto`` takes ImageNet VGG16-BN if its weights are already in the local torch cache, else the shipped
    classifier, else nothing (the engine then trains a small classifier first).
    """
    choice = cfg.feature_net
    if choice in ("auto", "vgg"):
        vgg = VGGFeatures.from_local_cache(cfg.feature_layers)
        if vgg is not None:
            return vgg, "torchvision VGG16-BN (ImageNet weights from the local torch cache)"
        if choice == "vgg":
            raise ValueError(f"VGG16-BN weights are not in the local torch cache ({VGGFeatures.weights_path()})")
        if SHIPPED_CLASSIFIER.is_file():
            return load_classifier_features(SHIPPED_CLASSIFIER), f"shipped classifier {SHIPPED_CLASSIFIER.name}"
        return None, "no VGG weights in the local torch cache and no shipped classifier"
    return load_classifier_features(choice), f"classifier {choice}"


class FeatureLoss(nn.Module):
    """L1 on a,b plus weighted L1 distances between feature maps of predicted and true colour images."""

    def __init__(self, net: nn.Module, layers: list[int], weights: list[float]) -> None:
        super().__init__()
        if len(layers) != len(weights):
            raise ValueError("feature_layers and feature_layer_weights must have the same length")
        self.net, self.layers, self.weights = net, list(layers), list(weights)

    def forward(self, L: torch.Tensor, fake_ab: torch.Tensor, true_ab: torch.Tensor,
                true_rgb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pixel = F.l1_loss(fake_ab, true_ab)
        fake_feats = self.net.features(model_to_rgb(L, fake_ab), self.layers)
        with torch.no_grad():
            true_feats = self.net.features(true_rgb, self.layers)
        feat = sum(w * F.l1_loss(f, t) for w, f, t in zip(self.weights, fake_feats, true_feats))
        return pixel + feat, {"l1": pixel, "feat": feat}


@register
class NoGANMethod(Method):
    name = "nogan"
    needs = ("L", "ab", "rgb")
    default_lr = 1e-3
    default_beta1 = 0.9

    def __init__(self, cfg: TrainConfig, device: torch.device, feature_net: nn.Module | None = None) -> None:
        super().__init__(cfg, device)
        if feature_net is None:
            feature_net, self.feature_net_desc = resolve_feature_net(cfg)
            if feature_net is None:
                raise ValueError(f"NoGAN needs a feature network: {self.feature_net_desc}")
        else:
            self.feature_net_desc = "given"
        self.feature_loss = FeatureLoss(feature_net.to(device), cfg.feature_layers, cfg.feature_layer_weights)
        self.nets = {
            "generator": self.prepare_net(UNet(width=cfg.width)),
            "discriminator": self.prepare_net(PatchDiscriminator(width=cfg.disc_width)),
        }
        self.optimizers = {
            "generator": self.adam(self.nets["generator"].parameters()),
            "discriminator": self.adam(self.nets["discriminator"].parameters(), lr=CRITIC_LR),
        }

    def phases(self, steps_per_epoch: int) -> list[Phase]:
        critic = max(1, math.ceil(self.cfg.critic_epochs * steps_per_epoch))
        gan = max(1, math.ceil(self.cfg.gan_fraction * steps_per_epoch))
        return [
            Phase("generator", self.cfg.epochs * steps_per_epoch, steps_per_epoch, keep_best=False),
            Phase("critic", critic, critic, keep_best=False),
            Phase("gan", gan, max(1, gan // max(1, self.cfg.gan_checkpoints)), keep_best=True),
        ]

    def set_phase(self, name: str) -> None:
        super().set_phase(name)
        if name == "critic":  # the critic's own rate, whatever a learning-rate decay of phase 1 did to it
            for group in self.optimizers["discriminator"].param_groups:
                group["lr"] = CRITIC_LR
        if name == "gan":  # the joint phase runs at the GAN learning rate, with the adversarial beta1
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = self.cfg.gan_lr
                    group["betas"] = (0.5, 0.999)

    def optimize(self) -> dict[str, float]:
        L, ab, rgb = self.batch["L"], self.batch["ab"], self.batch["rgb"]
        g, d = self.nets["generator"], self.nets["discriminator"]
        if self.phase == "critic":
            g.eval()
            with torch.no_grad():
                fake = g(L)
            return discriminator_step(self, L, ab, fake)
        g.train()
        fake = g(L)
        out: dict[str, float] = {}
        if self.phase == "gan":
            out = discriminator_step(self, L, ab, fake)
            set_requires_grad(d, False)
            adv = generator_adversarial_loss(d(torch.cat((L, fake), 1)))
            feat_total, parts = self.feature_loss(L, fake, ab, rgb)
            loss = adv + self.cfg.feature_weight * feat_total + self.cfg.gan_l1_weight * parts["l1"]
            out["g_gan"] = adv.item()
        else:
            loss, parts = self.feature_loss(L, fake, ab, rgb)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return out | {"g_loss": loss.item(), "g_l1": parts["l1"].item(), "g_feat": parts["feat"].item()}
