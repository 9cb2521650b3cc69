"""IR / IR-SE ResNet body (ArcFace, TreB1eN's InsightFace_Pytorch) and the IR-SE50 identity network.

Module and parameter names match `model_ir_se50.pth` and the `encoder.*` keys of pSp / e4e
checkpoints, so the official files load with strict=True.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# units per stage: 50/100/152 as TreB1eN's get_blocks (the official files); 18/34 as InsightFace's
# iresnet18/34, for small encoders (no official pSp/e4e file uses them)
STAGE_UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
STAGE_DEPTHS = (64, 128, 256, 512)
MODES = ("ir", "ir_se")


class UnitSpec(NamedTuple):
    in_channel: int
    depth: int
    stride: int


def body_units(num_layers: int, depths: tuple[int, ...] = STAGE_DEPTHS) -> list[UnitSpec]:
    """The bottleneck units of an IR-`num_layers` body: 4 stages, each starting with stride 2.
    `depths`: the stages' widths (official: 64, 128, 256, 512); the stem is as wide as the first."""
    if num_layers not in STAGE_UNITS:
        raise ValueError(f"num_layers must be one of {sorted(STAGE_UNITS)}, got {num_layers}")
    if len(depths) != len(STAGE_DEPTHS):
        raise ValueError(f"depths must give {len(STAGE_DEPTHS)} stage widths, got {tuple(depths)}")
    units, in_channel = [], depths[0]
    for depth, count in zip(depths, STAGE_UNITS[num_layers]):
        units.append(UnitSpec(in_channel, depth, 2))
        units.extend(UnitSpec(depth, depth, 1) for _ in range(count - 1))
        in_channel = depth
    return units


def stage_ends(num_layers: int) -> tuple[int, ...]:
    """Index of the last unit of each stage of an IR-`num_layers` body ((2, 6, 20, 23) for 50)."""
    body_units(num_layers)  # the same error for an unknown depth
    ends, total = [], 0
    for count in STAGE_UNITS[num_layers]:
        total += count
        ends.append(total - 1)
    return tuple(ends)


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate


class BottleneckIR(nn.Module):
    """BN-conv-PReLU-conv-BN residual unit (+ SE), with a strided shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def make_input_layer(in_channels: int = 3, width: int = 64) -> nn.Sequential:
    """conv 3x3 (no bias) -> BN -> PReLU, `in_channels` -> `width` (`input_layer.{0,1,2}`)."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


def make_body(num_layers: int, mode: str, depths: tuple[int, ...] = STAGE_DEPTHS) -> nn.Sequential:
    """The residual body (`body.0` ... `body.23` for 50 layers)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    units = body_units(num_layers, tuple(depths))
    return nn.Sequential(*[BottleneckIR(u.in_channel, u.depth, u.stride, se=mode == "ir_se") for u in units])


def check_images(x: torch.Tensor, size: int | None, who: str) -> None:
    """ValueError unless x is (N, 3, size, size) (any square size if `size` is None)."""
    ok = x.ndim == 4 and x.shape[1] == 3 and x.shape[2] == x.shape[3] and (size is None or x.shape[2] == size)
    if not ok:
        want = f"(N, 3, {size}, {size})" if size else "(N, 3, H, H)"
        raise ValueError(f"{who} expects images of shape {want} in [-1, 1], got {tuple(x.shape)}")


class Backbone(nn.Module):
    """ArcFace IR / IR-SE network: 112 (or 224) px face -> L2-normalised 512-d embedding."""

    def __init__(
        self,
        input_size: int = 112,
        num_layers: int = 50,
        mode: str = "ir_se",
        drop_ratio: float = 0.6,
        affine: bool = True,
    ):
        super().__init__()
        if input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {input_size}")
        self.input_size = input_size
        self.input_layer = make_input_layer()
        self.body = make_body(num_layers, mode)
        spatial = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * spatial * spatial, 512),
            nn.BatchNorm1d(512, affine=affine),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding before L2 normalisation, (N, 512)."""
        check_images(x, self.input_size, type(self).__name__)
        return self.output_layer(self.body(self.input_layer(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, input_size, input_size) in [-1, 1] -> unit-length (N, 512)."""
        e = self.embed(x)
        return e / torch.linalg.vector_norm(e, dim=1, keepdim=True)
