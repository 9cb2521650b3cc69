"""pSp's GradualStyleEncoder and e4e's Encoder4Editing: IR-SE body + feature pyramid -> W+ codes.

Both read the body outputs at the ends of its last three stages: units 6 (c1, 128 ch, 64x64), 20
(c2, 256 ch, 32x32) and 23 (c3, 512 ch, 16x16) of the 50-layer body on a 256 px input (the official size; `input_size` scales every head for small
demo models, e.g. 64 px), build the pyramid p2 = up(c3) + lat1(c2), p1 = up(p2) +
lat2(c1) (bilinear, align_corners=True), and map coarse codes (rows < 3) from c3, middle codes
(rows < 7) from p2 and fine codes from p1. Keys match the `encoder.*` entries of official checkpoints.

Two options make small encoders for small generators (the official files use neither): an 18- or
34-layer body (the official code taps units 6, 20 and 23 whatever the depth, which only the
50-layer body has at its stage ends) and `style_hidden`, the width of the style heads' convs
(the official heads are 512 wide: 70% of the 64 px demo encoder's parameters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..stylegan2.layers import EqualLinear
from .irse import check_images, make_body, make_input_layer, stage_ends

INPUT_SIZE = 256
COARSE_IND, MIDDLE_IND = 3, 7
INFERENCE_STAGE = 18  # e4e's ProgressiveStage.Inference: every delta on


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convs (LeakyReLU 0.01) from `spatial` down to 1x1, then an equal-lr linear.

    The convs are `hidden` channels wide (official: hidden = out_c)."""

    def __init__(self, in_c: int, out_c: int, spatial: int, hidden: int | None = None):
        super().__init__()
        self.hidden = hidden or out_c
        layers: list[nn.Module] = [nn.Conv2d(in_c, self.hidden, 3, 2, 1), nn.LeakyReLU()]
        for _ in range(int(math.log2(spatial)) - 1):
            layers += [nn.Conv2d(self.hidden, self.hidden, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(self.hidden, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.hidden))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners=True) upsampling of x to y's size, plus y."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class PyramidEncoderBase(nn.Module):
    """The shared IR-SE body, per-row style heads and lateral convs of pSp and e4e."""

    def __init__(
        self,
        num_layers: int = 50,
        mode: str = "ir_se",
        stylegan_size: int = 1024,
        input_size: int = INPUT_SIZE,
        zero_init_styles: bool = False,
        style_hidden: int | None = None,
    ):
        """`zero_init_styles`: start every style head's last layer at zero, so the first codes are
        exactly the offset (latent_avg) and training moves them from there (pSp and e4e draw it at
        random: their first codes lie far from any real code). `style_hidden`: the style heads'
        conv width (None: 512, the official)."""
        super().__init__()
        if input_size < 32 or input_size & (input_size - 1):
            raise ValueError(f"input_size must be a power of two >= 32, got {input_size}")
        self.input_size = input_size
        self.num_layers = num_layers
        self.taps = stage_ends(num_layers)[1:]  # the body units whose outputs are c1, c2, c3
        self.input_layer = make_input_layer()
        self.body = make_body(num_layers, mode)
        self.style_count = 2 * int(math.log2(stylegan_size)) - 2
        c3 = input_size // 16  # spatial size of c3; p2 and p1 are 2x and 4x
        spatial = lambda i: c3 if i < COARSE_IND else 2 * c3 if i < MIDDLE_IND else 4 * c3  # noqa: E731
        self.styles = nn.ModuleList(
            [GradualStyleBlock(512, 512, spatial(i), style_hidden) for i in range(self.style_count)]
        )
        if zero_init_styles:
            for block in self.styles:
                nn.init.zeros_(block.linear.weight)
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)

    def pyramid_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c1, c2, c3) body features of a (N, 3, input_size, input_size) image in [-1, 1]."""
        check_images(x, self.input_size, type(self).__name__)
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps.append(x)
        c1, c2, c3 = taps
        return c1, c2, c3


class GradualStyleEncoder(PyramidEncoderBase):
    """pSp's encoder: every W+ row predicted directly, (N, 3, 256, 256) -> (N, style_count, 512)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.pyramid_inputs(x)
        p2 = upsample_add(c3, self.latlayer1(c2))
        p1 = upsample_add(p2, self.latlayer2(c1))
        source = lambda i: c3 if i < COARSE_IND else p2 if i < MIDDLE_IND else p1  # noqa: E731
        return torch.stack([self.styles[i](source(i)) for i in range(self.style_count)], dim=1)


class Encoder4Editing(PyramidEncoderBase):
    """e4e's encoder: one base code w0 for every row plus per-row deltas for rows 1..stage.

    `progressive_stage` (0..style_count-1, or 18 = all, e4e's `ProgressiveStage.Inference`) is the
    number of delta rows switched on; row 0 never gets a delta. (N, 3, 256, 256) -> (N, style_count, 512).
    """

    progressive_stage: int = INFERENCE_STAGE  # every delta on until training sets a stage

    def set_progressive_stage(self, stage: int) -> None:
        stage = int(getattr(stage, "value", stage))  # also accepts e4e's ProgressiveStage enum
        if not 0 <= stage <= INFERENCE_STAGE:
            raise ValueError(f"progressive stage must be in [0, {INFERENCE_STAGE}], got {stage}")
        self.progressive_stage = stage

    @property
    def active_deltas(self) -> int:
        """How many delta rows (1..active_deltas) the current stage predicts."""
        return min(self.progressive_stage, self.style_count - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.pyramid_inputs(x)
        w0 = self.styles[0](c3)
        rows = [w0]
        features = c3
        for i in range(1, self.active_deltas + 1):
            if i == COARSE_IND:
                p2 = upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_IND:
                features = upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        rows.extend([w0] * (self.style_count - len(rows)))
        return torch.stack(rows, dim=1)
