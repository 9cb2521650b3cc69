"""HairCLIPv2's background loss: MSE outside the hair of both images (full-resolution parser labels)."""

from __future__ import annotations

import torch
from torch import nn

from ..models.parsing import HairSegmenter
from ..sharing import borrow


class BackgroundLoss(nn.Module):
    """MSE between x and x_hat where neither is hair, per sample."""

    def __init__(self, segmenter: HairSegmenter):
        super().__init__()
        borrow(self, segmenter=segmenter)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, x_hair: torch.Tensor | None = None) -> torch.Tensor:
        """`x_hair`: x's hair mask when already known (x is fixed during an optimisation)."""
        x_hair = self.segmenter.hair(x) if x_hair is None else x_hair
        keep = (1 - x_hair) * (1 - self.segmenter.hair(x_hat))
        return (x * keep - x_hat * keep).pow(2).mean(dim=(1, 2, 3))
