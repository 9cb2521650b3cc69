"""FAN: stacked hourglasses from a 256 px face to 68 landmark heatmaps at 64 px.

The network HairCLIPv2 uses for its landmark loss (`face_alignment.FaceAlignment(THREE_D)
.face_alignment_net`, the "3DFAN-4" model: four hourglasses). Module names follow face_alignment's
`models/fan.py` (conv1, bn1, conv2..conv4, m{i}.b1_4 ..., top_m_{i}, conv_last{i}, bn_end{i}, l{i},
bl{i}, al{i}), so both official weight files load strictly: the state dict `3DFAN4-7835d9f11d.pth.tar`
(face_alignment <= 1.2) and the TorchScript archive `3DFAN4-4a694010b9.zip` (face_alignment >= 1.3,
the same module scripted). The face_alignment package itself is not needed (importing it pulls OpenCV
and numba); its face detector plays no part in the loss.

Input (N, 3, 256, 256) in [0, 1]; output: the last hourglass's heatmaps (N, 68, 64, 64), what the
TorchScript network returns and HairCLIPv2 compares.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...weights import CheckpointError, load_state_dict_strict, require_file

N_LANDMARKS = 68
HUB_FILE = "3DFAN4-4a694010b9.zip"  # where face_alignment >= 1.3 caches 3DFAN-4 (torch hub checkpoints)


class ConvBlock(nn.Module):
    """Pre-activation residual block whose output concatenates three 3x3 convs (C/2, C/4, C/4)."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, half, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.downsample: nn.Module | None = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_planes), nn.ReLU(), nn.Conv2d(in_planes, out_planes, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass of `depth` levels: b1 (skip), b2 (down), inner level, b3, nearest up x2."""

    def __init__(self, depth: int, features: int):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            if level == 1:
                self.add_module(f"b2_plus_{level}", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        low = self.level(level - 1, low) if level > 1 else self._modules[f"b2_plus_{level}"](low)
        low = self._modules[f"b3_{level}"](low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.level(self.depth, x)


class FAN(nn.Module):
    """`num_modules` stacked hourglasses (4 in the official 2D/3D FAN-4)."""

    def __init__(self, num_modules: int = 4):
        super().__init__()
        self.num_modules = num_modules
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(4, 256))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, N_LANDMARKS, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(N_LANDMARKS, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"FAN expects (N, 3, 256, 256) images in [0, 1], got {tuple(x.shape)}")
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        previous, heatmaps = x, x
        for i in range(self.num_modules):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heatmaps = self._modules[f"l{i}"](ll)
            if i < self.num_modules - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](heatmaps)
        return heatmaps


def default_fan_file() -> Path:
    """Where face_alignment >= 1.3 keeps 3DFAN-4 once downloaded: the torch hub checkpoints folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILE


def read_fan_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an official FAN file: a TorchScript archive or a plain (.pth.tar) state dict."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            scripted = any(name.endswith("constants.pkl") or "/code/" in name for name in z.namelist())
        if scripted:
            return {
                k: v.detach().clone() for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()
            }
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_fan(path: str | Path | None = None, random_weights: bool = False) -> FAN:
    """FAN-4 with the official 3D weights (`path`, else the torch hub cache), frozen, in eval mode;
    `random_weights=True` keeps the initialisation (offline demos: the loss is then meaningless)."""
    fan = FAN(4)
    if random_weights:
        warnings.warn("FAN with random weights: the landmark loss is meaningless", stacklevel=2)
    else:
        file = require_file(path if path is not None else default_fan_file(), "fan")
        try:
            state = read_fan_state(file)
        except Exception as exc:  # torch raises several types for corrupt files
            raise CheckpointError(f"cannot read {file} as FAN weights: {type(exc).__name__}: {exc}") from exc
        load_state_dict_strict(fan, state, f"FAN {file}")
    return fan.requires_grad_(False).eval()
