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
from core.config import ConfigError, Option, TrainConfig
from core.methods.base import Method, Phase, register
from core.methods.dcgan import REAL_LABEL, discriminator_step, generator_adversarial_loss, set_requires_grad
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
    label = "NoGAN"
    help = "NoGAN: generator, then critic, then a short joint GAN phase"
    needs = ("L", "ab", "rgb")
    default_lr = 1e-3
    default_beta1 = 0.9
    epochs_label = "Generator epochs (phase 1)"
    min_epochs = 0  # with --init: only the critic and GAN phases, over an existing generator
    options = (
        Option("critic_epochs", float, 1.0, "length of phase 2 (the critic alone), in epochs",
               label="Critic epochs (phase 2)", above=0.0, max=1e4),
        Option("gan_fraction", float, 0.1, "length of phase 3 (the joint GAN phase), in epochs",
               label="GAN fraction (phase 3, epochs)", above=0.0, max=1e4),
        Option("gan_checkpoints", int, 10, "validations (and kept generators) during phase 3",
               label="GAN checkpoints", min=1, max=100_000),
        Option("gan_lr", float, 2e-4, "learning rate of both networks in phase 3 (lower: colour comes in more "
               "slowly, with finer steps between the kept checkpoints)", label="GAN learning rate (phase 3)",
               above=0.0, max=1.0),
        Option("gan_l1_weight", float, 0.0, "extra weight of the L1 term on a,b in the GAN phase, as pix2pix's "
               "lambda (0: none)", label="GAN-phase L1 anchor", min=0.0, max=1e6),
        Option("feature_weight", float, 1.0, "weight of the feature loss inside the GAN phase",
               label="Feature weight", min=0.0, max=1e6),
        Option("feature_net", str, "auto", "auto, vgg, or a classifier checkpoint (auto: VGG16-BN from the local "
               "torch cache, else the shipped classifier, else a small one trained first)", label="Feature network"),
        Option("feature_layers", int, [0, 1, 2], "feature-network stages compared by the feature loss",
               list_of=True, min=0, max=16),
        Option("feature_layer_weights", float, [20.0, 70.0, 10.0], "weight of each compared stage",
               list_of=True, min=0.0),
        REAL_LABEL,
    )

    @classmethod
    def build_generator(cls, cfg: TrainConfig) -> nn.Module:
        return UNet(width=cfg.width)

    @classmethod
    def check_config(cls, cfg: TrainConfig) -> None:
        super().check_config(cfg)
        if cfg.epochs == 0 and not cfg.init:
            raise ConfigError("--epochs 0 skips NoGAN's generator phase and needs --init CHECKPOINT (the generator "
                              "to start from); give --epochs 1 or more, or --init")
        if len(cfg.feature_layers) != len(cfg.feature_layer_weights):
            raise ConfigError("--feature-layers and --feature-layer-weights must have the same length")

    @classmethod
    def before_training(cls, cfg: TrainConfig, run_path: Path, progress: bool) -> str | None:
        """Without a feature network (``auto`` finds none), train a small classifier first, inside the run."""
        if cfg.feature_net != "auto":
            return None
        net, why = resolve_feature_net(cfg)
        if net is not None:
            return f"feature network: {why}"
        from core.runs import RunDir
        from core.train import train

        sub = run_path / "feature_net"
        print(f"{why}: training a small classifier first (1 epoch, width 16) in {sub}", flush=True)
        RunDir(run_path).write_status(phase="feature_net", message=f"{why}: training a small classifier first")
        sub_cfg = TrainConfig.from_dict({
            "model": "classifier", "source": cfg.source, "split": cfg.split, "val_fraction": cfg.val_fraction,
            "gray_threshold": cfg.gray_threshold, "seed": cfg.seed, "epochs": 1, "limit": cfg.limit,
            "val_limit": cfg.val_limit, "width": 16, "batch_size": cfg.batch_size, "device": cfg.device,
            "threads": cfg.threads, "size": cfg.size})
        final = train(sub_cfg, sub, resume=(sub / "config.json").is_file(), progress=progress)
        cfg.options["feature_net"] = str(sub / "checkpoints" / "best.pt")
        acc = final.get("best_score") or 0.0
        return f"feature network: classifier trained first in this run, validation accuracy {acc:.1f}%"

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
            "generator": self.prepare_net(self.build_generator(cfg)),
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
        fake = self.net("generator")(L)
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
