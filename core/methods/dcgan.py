"""Conditional DCGAN in the pix2pix style (Nazeri et al. 2018): U-Net generator, patch discriminator on (L, ab).

Losses, exactly as the study writes them, with logits:
    generator:      -E[log D(G(x)|x)] + lambda * ||G(x) - y||_1
    discriminator:  -(E[log D(y|x)] + E[log(1 - D(G(x)|x))])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.config import Option, TrainConfig
from core.methods.base import Method, register
from core.networks import PatchDiscriminator, UNet


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    """-(E[log D(y|x)] + E[log(1 - D(G(x)|x))]); ``real_label`` < 1 gives one-sided label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log D(G(x)|x)], the non-saturating generator loss."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def generator_loss(fake_logits: torch.Tensor, fake_ab: torch.Tensor, true_ab: torch.Tensor,
                   l1_weight: float = 100.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total generator loss and its two terms (adversarial, L1)."""
    adv = generator_adversarial_loss(fake_logits)
    l1 = F.l1_loss(fake_ab, true_ab)
    return adv + l1_weight * l1, adv, l1


REAL_LABEL = Option("real_label", float, 1.0, "target of real pairs for the discriminator; 0.9 gives one-sided "
                    "label smoothing", label="Real label", above=0.0, max=1.0)


def set_requires_grad(net: torch.nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def discriminator_step(method: Method, L: torch.Tensor, real_ab: torch.Tensor,
                       fake_ab: torch.Tensor) -> dict[str, float]:
    """One optimisation step of the discriminator on real and (detached) generated a,b."""
    set_requires_grad(method.nets["discriminator"], True)
    d = method.net("discriminator")
    real_logits = d(torch.cat((L, real_ab), 1))
    fake_logits = d(torch.cat((L, fake_ab.detach()), 1))
    loss = discriminator_loss(real_logits, fake_logits, method.cfg.real_label)
    opt = method.optimizers["discriminator"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        acc = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
    return {"d_loss": loss.item(), "d_acc": acc.item()}


@register
class DCGANMethod(Method):
    name = "dcgan"
    label = "DCGAN"
    help = "Conditional DCGAN (pix2pix: adversarial + L1)"
    default_lr = 2e-4
    default_beta1 = 0.5
    options = (
        Option("l1_weight", float, 100.0, "lambda of the L1 term on a,b beside the adversarial loss",
               label="L1 weight (λ)", min=0.0, max=1e6),
        REAL_LABEL,
    )

    @classmethod
    def build_generator(cls, cfg: TrainConfig) -> nn.Module:
        return UNet(width=cfg.width)

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.nets = {
            "generator": self.prepare_net(self.build_generator(cfg)),
            "discriminator": self.prepare_net(PatchDiscriminator(width=cfg.disc_width)),
        }
        self.optimizers = {k: self.adam(n.parameters()) for k, n in self.nets.items()}

    def optimize(self) -> dict[str, float]:
        L, ab = self.batch["L"], self.batch["ab"]
        fake = self.net("generator")(L)
        losses = discriminator_step(self, L, ab, fake)
        d = self.nets["discriminator"]  # frozen for the generator's step: the plain network, nothing to average
        set_requires_grad(d, False)
        total, adv, l1 = generator_loss(d(torch.cat((L, fake), 1)), fake, ab, self.cfg.l1_weight)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return losses | {"g_loss": total.item(), "g_gan": adv.item(), "g_l1": l1.item()}
