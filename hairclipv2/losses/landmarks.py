"""HairCLIPv2's landmark loss: MSE between FAN heatmaps of the source and of a proxy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..sharing import borrow


class LandmarkLoss(nn.Module):
    """MSE between FAN landmark heatmaps of the source and of a proxy (HairCLIPv2's kp loss).

    `fan`: the 3D FAN-4 (`models.landmarks.load_fan`), or None to switch the term off (a variant: the
    proxies then keep the pose only through their other terms). HairCLIPv2 feeds
    `((interpolate(img, 256) + 1) / 2).clamp(0, 1)` (nearest) and compares all 68 heatmaps
    (reference proxy) or the jaw (0..16) and nose (27..35) groups, one MSE per group, summed (text proxy).
    """

    def __init__(self, fan: nn.Module | None, groups: Sequence[Sequence[int]] | None = None):
        super().__init__()
        self.groups = [list(g) for g in groups] if groups is not None else None  # one MSE per group, summed
        borrow(self, fan=fan)

    @property
    def available(self) -> bool:
        return self.fan is not None

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor | None:
        """FAN heatmaps (N, 68, 64, 64) of images in [-1, 1] (None without FAN)."""
        if self.fan is None:
            return None
        return self.fan(((F.interpolate(images, size=(256, 256)) + 1) / 2).clamp(0, 1))

    def forward(self, source_heatmaps: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
        if self.fan is None or source_heatmaps is None:
            return images.new_zeros(images.shape[0])
        gen = self.heatmaps(images)
        groups = self.groups or [list(range(gen.shape[1]))]
        return sum((gen[:, g] - source_heatmaps[:, g]).pow(2).mean(dim=(1, 2, 3)) for g in groups)
