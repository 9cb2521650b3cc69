"""Fused bias + leaky ReLU with gain, StyleGAN2's `fused_leaky_relu`.

    y = leaky_relu(x + b, 0.2) * sqrt(2)

x (N, C, ...) and b (C,) broadcast along dim 1. The official CUDA kernel only fuses this into one
pass; in pure PyTorch the reference form is also the fast path (a separate code path would buy
nothing measurable, see benchmarks/generator.py), so there is one implementation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_GAIN = math.sqrt(2.0)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2, scale: float = DEFAULT_GAIN
) -> torch.Tensor:
    """leaky_relu(x + bias, negative_slope) * scale, with bias broadcast along dim 1."""
    if bias is not None:
        if bias.shape != (x.shape[1],):
            raise ValueError(
                f"bias must have shape ({x.shape[1]},) for x of shape {tuple(x.shape)}, got {tuple(bias.shape)}"
            )
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale
