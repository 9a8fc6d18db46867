"""U-Net trained alone on the mean squared error of a,b: the study's baseline colorizer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.config import TrainConfig
from core.methods.base import Method, register
from core.networks import UNet


@register
class UNetMethod(Method):
    name = "unet"
    label = "U-Net"
    help = "U-Net regression on a,b (MSE)"
    default_lr = 1e-3
    default_beta1 = 0.9

    @classmethod
    def build_generator(cls, cfg: TrainConfig) -> nn.Module:
        return UNet(width=cfg.width)

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.nets = {"generator": self.prepare_net(self.build_generator(cfg))}
        self.optimizers = {"generator": self.adam(self.nets["generator"].parameters())}

    def optimize(self) -> dict[str, float]:
        L, ab = self.batch["L"], self.batch["ab"]
        loss = F.mse_loss(self.net("generator")(L), ab)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"mse": loss.item()}
