"""HairCLIPv2's sketch-proxy encoder (`BackboneEncoderFirstStage(50, "ir_se", opts)`).

Strokes (N, input_nc, 256, 256) -> W+ deltas (N, 18, 512), added to the mean code by the caller.
The IR-SE50 body is read at the ends of its first three stages, each through a head
`BatchNorm2d(C) -> AdaptiveAvgPool2d(7) -> Flatten -> Linear(C * 49, 512 * k)`:

    body[:3]   (64 ch)  -> output_layer_5, k = 4   -> rows 14..17
    body[3:7]  (128 ch) -> output_layer_4, k = 5   -> rows  9..13
    body[7:21] (256 ch) -> output_layer_3, k = 9   -> rows  0..8

The last three body units (the 512-channel stage) exist in the official checkpoint but are never run
(`last_stage=False` leaves them out of a new layout).
Key names match the `encoder_firststage.*` entries of HairCLIPv2's `sketch_proxy.pt` (prefix stripped).
For generators with other than 18 W+ rows (small models) the rows are shared out in the same
proportions (`head_rows`). A small world needs a small encoder: `depths`, `num_layers`, `pool` and
`input_size` scale the same layout down (the official values are the defaults).
"""

from __future__ import annotations

import torch
from torch import nn

from .irse import STAGE_DEPTHS, make_body, make_input_layer, stage_ends

# The heads in output order, each with the body stage it reads (0-based).
HEADS = {"output_layer_3": 2, "output_layer_4": 1, "output_layer_5": 0}
OFFICIAL_ROWS = (9, 5, 4)
OFFICIAL_POOL = 7
OFFICIAL_INPUT = 256


def head_rows(n_latent: int) -> tuple[int, int, int]:
    """W+ rows of the three heads: (9, 5, 4) for 18; the same shares for other sizes."""
    if n_latent == sum(OFFICIAL_ROWS):
        return OFFICIAL_ROWS
    r4, r5 = round(5 * n_latent / 18), round(4 * n_latent / 18)
    return n_latent - r4 - r5, r4, r5


def style_head(channels: int, rows: int, style_dim: int = 512, pool: int = OFFICIAL_POOL) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.AdaptiveAvgPool2d(pool),
        nn.Flatten(),
        nn.Linear(channels * pool * pool, style_dim * rows),
    )


class SketchEncoder(nn.Module):
    """Stroke image -> (N, n_latent, style_dim) W+ offsets from the mean code."""

    def __init__(
        self,
        input_nc: int = 1,
        num_layers: int = 50,
        mode: str = "ir_se",
        style_dim: int = 512,
        n_latent: int = 18,
        depths: tuple[int, ...] = STAGE_DEPTHS,
        pool: int = OFFICIAL_POOL,
        input_size: int = OFFICIAL_INPUT,
        last_stage: bool = True,
    ):
        super().__init__()
        depths = tuple(depths)
        self.input_nc, self.style_dim, self.n_latent, self.input_size = input_nc, style_dim, n_latent, input_size
        self.layout = {
            "num_layers": num_layers,
            "depths": list(depths),
            "pool": pool,
            "input_size": input_size,
            "last_stage": last_stage,
        }
        self.rows = dict(zip(HEADS, head_rows(n_latent)))
        self.input_layer = make_input_layer(input_nc, depths[0])
        ends = stage_ends(num_layers)
        body = make_body(num_layers, mode, depths)
        self.body = body if last_stage else body[: ends[2] + 1]
        # Each head's slice of the body: from the previous tap to the end of its stage.
        self.spans = {name: (ends[stage - 1] + 1 if stage else 0, ends[stage] + 1) for name, stage in HEADS.items()}
        for name, stage in HEADS.items():
            setattr(self, name, style_head(depths[stage], self.rows[name], style_dim, pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.input_nc:
            raise ValueError(f"SketchEncoder expects (N, {self.input_nc}, H, W) strokes, got {tuple(x.shape)}")
        x = self.input_layer(x)
        rows: dict[str, torch.Tensor] = {}
        # Heads in the order their inputs become available: the first, second, then third stage's taps.
        for name in sorted(HEADS, key=HEADS.get):
            first, last = self.spans[name]
            for unit in self.body[first:last]:
                x = unit(x)
            rows[name] = getattr(self, name)(x).view(-1, self.rows[name], self.style_dim)
        return torch.cat([rows[name] for name in HEADS], dim=1)
