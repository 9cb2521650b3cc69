"""Barbershop's / HairCLIPv2's `BicubicDownSample`: separable bicubic (a = -0.5) antialiasing
downsampler by an integer factor, reflect padding, first along H then W.

Kernel: 4 * factor taps at (i - 2 * factor + 0.5) / factor, normalised to sum 1. Padding:
(4 * factor - factor) split as floor / ceil before / after. (torch's bicubic interpolate, even with
antialias=True, differs: 17 label changes on the golden photo.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bicubic_weight(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


class BicubicDownSample(nn.Module):
    def __init__(self, factor: int = 2, padding: str = "reflect"):
        super().__init__()
        self.factor, self.padding = factor, padding
        size = 4 * factor
        taps = torch.tensor([bicubic_weight((i - size // 2 + 0.5) / factor) for i in range(size)], dtype=torch.float32)
        self.register_buffer("taps", taps / taps.sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H / factor, W / factor)."""
        c, size, s = x.shape[1], self.taps.numel(), self.factor
        before, after = (size - s) // 2, (size - s) - (size - s) // 2
        k = self.taps.to(x.dtype)
        x = F.conv2d(
            F.pad(x, (0, 0, before, after), self.padding),
            k.view(1, 1, size, 1).expand(c, 1, size, 1),
            stride=(s, 1),
            groups=c,
        )
        return F.conv2d(
            F.pad(x, (before, after, 0, 0), self.padding),
            k.view(1, 1, 1, size).expand(c, 1, 1, size),
            stride=(1, s),
            groups=c,
        )
