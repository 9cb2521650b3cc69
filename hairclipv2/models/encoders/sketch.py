"""HairCLIPv2's sketch-proxy encoder (`BackboneEncoderFirstStage(50, "ir_se", opts)`).

Strokes (N, input_nc, 256, 256) -> W+ deltas (N, 18, 512), added to the mean code by the caller.
The IR-SE50 body is read at three depths, each through a head
`BatchNorm2d(C) -> AdaptiveAvgPool2d(7) -> Flatten -> Linear(C * 49, 512 * k)`:

    body[:3]   (64 ch)  -> output_layer_5, k = 4   -> rows 14..17
    body[3:7]  (128 ch) -> output_layer_4, k = 5   -> rows  9..13
    body[7:21] (256 ch) -> output_layer_3, k = 9   -> rows  0..8

The last three body units (the 512-channel stage) exist in the official checkpoint but are never run.
Key names match the `encoder_firststage.*` entries of HairCLIPv2's `sketch_proxy.pt` (prefix stripped).
For generators with other than 18 W+ rows (small demo models) the rows are shared out in the same
proportions (`head_rows`).
"""

from __future__ import annotations

import torch
from torch import nn

from .irse import make_body, make_input_layer

# (first body unit, last body unit + 1, channels) per head, in output order.
HEADS = {"output_layer_3": (7, 21, 256), "output_layer_4": (3, 7, 128), "output_layer_5": (0, 3, 64)}
OFFICIAL_ROWS = (9, 5, 4)


def head_rows(n_latent: int) -> tuple[int, int, int]:
    """W+ rows of the three heads: (9, 5, 4) for 18; the same shares for other sizes."""
    if n_latent == sum(OFFICIAL_ROWS):
        return OFFICIAL_ROWS
    r4, r5 = round(5 * n_latent / 18), round(4 * n_latent / 18)
    return n_latent - r4 - r5, r4, r5


def style_head(channels: int, rows: int, style_dim: int = 512) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(channels), nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(channels * 49, style_dim * rows)
    )


class SketchEncoder(nn.Module):
    """Stroke image -> (N, 18, 512) W+ offsets from the mean code."""

    def __init__(
        self, input_nc: int = 1, num_layers: int = 50, mode: str = "ir_se", style_dim: int = 512, n_latent: int = 18
    ):
        super().__init__()
        self.input_nc, self.style_dim, self.n_latent = input_nc, style_dim, n_latent
        self.rows = dict(zip(HEADS, head_rows(n_latent)))
        self.input_layer = make_input_layer(input_nc)
        self.body = make_body(num_layers, mode)
        for name, (_, _, channels) in HEADS.items():
            setattr(self, name, style_head(channels, self.rows[name], style_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.input_nc:
            raise ValueError(f"SketchEncoder expects (N, {self.input_nc}, H, W) strokes, got {tuple(x.shape)}")
        x = self.input_layer(x)
        rows: dict[str, torch.Tensor] = {}
        # Heads in the order their inputs become available: the 64, then 128, then 256-channel taps.
        for name in ("output_layer_5", "output_layer_4", "output_layer_3"):
            first, last, _ = HEADS[name]
            for unit in self.body[first:last]:
                x = unit(x)
            rows[name] = getattr(self, name)(x).view(-1, self.rows[name], self.style_dim)
        return torch.cat([rows[name] for name in HEADS], dim=1)
