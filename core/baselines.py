"""Reference colorizers without learning, evaluated exactly like trained models.

``gray``     predicts a = b = 0 everywhere: the grayscale picture itself.
``mean_ab``  predicts the mean a,b of the training split at every pixel: the best constant guess under L2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.colour import AB_SCALE, uint8_to_model

if TYPE_CHECKING:
    from core.data import PreparedData

BASELINES = ("gray", "mean_ab")


@dataclass
class Baseline:
    """A constant colorizer: ``ab_mean`` (model space, a/110 and b/110) at every pixel."""

    name: str
    ab_mean: tuple[float, float] = (0.0, 0.0)
    method: str = "baseline"
    info: dict = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, L: torch.Tensor) -> torch.Tensor:
        """Model-space ab (N, 2, H, W) for model-space L (N, 1, H, W): the constant at every pixel."""
        n, _, h, w = L.shape
        value = torch.tensor(self.ab_mean, dtype=torch.float32).view(1, 2, 1, 1)
        return value.expand(n, 2, h, w).contiguous()


def mean_ab(images: np.ndarray, chunk: int = 2048) -> tuple[float, float]:
    """Mean model-space (a, b) over every pixel of uint8 (N, H, W, 3) images, accumulated in float64."""
    if len(images) == 0:
        raise ValueError("cannot compute the mean a,b of an empty image set")
    total = torch.zeros(2, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), chunk):
        _, ab = uint8_to_model(images[start : start + chunk])
        total += ab.double().sum(dim=(0, 2, 3))
        count += ab.shape[0] * ab.shape[2] * ab.shape[3]
    a, b = (total / count).tolist()
    return float(a), float(b)


def make_baseline(name: str, prepared: PreparedData | None = None) -> Baseline:
    """Build baseline ``name``; ``mean_ab`` needs ``prepared`` (its training subset gives the mean)."""
    if name == "gray":
        return Baseline("gray", (0.0, 0.0), info={"description": "a = b = 0 (the grayscale input)"})
    if name == "mean_ab":
        if prepared is None:
            raise ValueError("the mean_ab baseline needs prepared data (the mean of its training subset)")
        ab = mean_ab(prepared.images("train"))
        return Baseline("mean_ab", ab, info={
            "description": "mean a,b of the training subset at every pixel",
            "ab_mean_lab": [ab[0] * AB_SCALE, ab[1] * AB_SCALE],
            "source": prepared.dataset.source,
        })
    raise ValueError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")
