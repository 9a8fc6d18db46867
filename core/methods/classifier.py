"""A small CIFAR-10 classifier on colour images; NoGAN uses it, frozen, as its feature network."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.config import TrainConfig
from core.methods.base import Method, register
from core.networks import Classifier


@register
class ClassifierMethod(Method):
    name = "classifier"
    label = "Classifier"
    help = "CIFAR-10 classifier (feature network for NoGAN)"
    needs = ("rgb", "label")
    key_metric = "accuracy"
    default_lr = 1e-3
    default_beta1 = 0.9
    is_colorizer = False

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.nets = {"generator": self.prepare_net(Classifier(width=cfg.width))}
        self.optimizers = {"generator": self.adam(self.nets["generator"].parameters())}

    def optimize(self) -> dict[str, float]:
        logits = self.net("generator")(self.batch["rgb"])
        loss = F.cross_entropy(logits, self.batch["label"])
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (logits.argmax(1) == self.batch["label"]).float().mean()
        return {"ce": loss.item(), "acc": acc.item()}

    @torch.no_grad()
    def logits(self, rgb: torch.Tensor) -> torch.Tensor:
        g = self.generator
        was_training = g.training
        g.eval()
        out = g(rgb.to(self.device)).float()
        g.train(was_training)
        return out
