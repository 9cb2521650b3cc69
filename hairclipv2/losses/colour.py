"""HairCLIPv2's AvgLabLoss: L1 between the average Lab colours of two hair regions (or of a given colour)."""

from __future__ import annotations

import torch
from torch import nn

from ..models.parsing import HairSegmenter
from ..sharing import borrow

RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)


def rgb_to_lab(rgb01: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> CIE Lab (D65 white normalised as in HairCLIPv2's AvgLabLoss)."""
    m = RGB_TO_XYZ.to(rgb01)
    xyz = torch.einsum("nc,bchw->bnhw", m, rgb01) / m.sum(1).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12).pow(1 / 3), 7.787 * xyz + 0.137931)
    lightness = torch.where(xyz[:, 1] > 0.008856, 116 * f[:, 1] - 16, 903.3 * xyz[:, 1])
    return torch.stack([lightness, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (N, C, H, W) over mask (N, 1, H, W) -> (N, C); an empty mask gives the plain sum (0)."""
    return (x * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp_min(1)


def masked_spread(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Standard deviation (N, C) of x (N, C, H, W) over mask (N, 1, H, W)."""
    mean = masked_mean(x, mask)
    return (masked_mean((x - mean[..., None, None]).pow(2), mask) + 1e-6).sqrt()


class AvgLabLoss(nn.Module):
    """L1 between average Lab colours: of the target's hair (a reference image) or of a colour
    (N, 3, 1, 1) in [-1, 1], and of the result's hair."""

    def __init__(self, segmenter: HairSegmenter):
        super().__init__()
        borrow(self, segmenter=segmenter)

    def hair_lab(self, images: torch.Tensor, hair: torch.Tensor | None = None) -> torch.Tensor:
        """Average Lab colour (N, 3) of the hair of images (N, 3, H, W), or of 1x1 colour images;
        `hair`: the images' hair masks when already parsed."""
        lab = rgb_to_lab((images + 1) / 2)
        if images.shape[-1] == 1:
            return lab.flatten(1)
        return masked_mean(lab, self.segmenter.hair(images) if hair is None else hair)

    def forward(
        self, target: torch.Tensor | None, result: torch.Tensor, target_lab: torch.Tensor | None = None
    ) -> torch.Tensor:
        """HairCLIPv2's (target, result) call; `target_lab` replaces the target when already known."""
        if target_lab is None:
            if target is None:
                raise ValueError("AvgLabLoss needs a target image or its target_lab")
            target_lab = self.hair_lab(target)
        return (target_lab - self.hair_lab(result)).abs().mean(dim=1)
