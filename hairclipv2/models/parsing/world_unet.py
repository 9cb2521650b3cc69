"""The world's face parser: a small U-Net with HairCLIPv2's parser call, for the world's 16 classes.

`parser(x)` with x (N, 3, S, S) in [-1, 1] returns (logits at S, logits at S / 2), the two heads the
editor reads through `HairSegmenter` (BiSeNet's full-size and half-size outputs). Trained by
`python train.py experiment=world_parser` on the world's exact labels (`hairclipv2/world`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...weights import load_checkpoint_file, load_state_dict_strict


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(8, cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(8, cout),
        nn.SiLU(),
    )


class WorldUNet(nn.Module):
    def __init__(self, n_classes: int = 16, widths: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        self.n_classes = n_classes
        self.down = nn.ModuleList(_block(cin, cout) for cin, cout in zip((3, *widths[:-1]), widths, strict=True))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear"), skip], 1))
        full = self.head(x)
        return full, F.avg_pool2d(full, 2)


def load_world_parser(path: str | Path | None, widths: tuple[int, ...] = (32, 64, 96, 128)) -> WorldUNet:
    """The world's parser from its state dict (`world_parser.pt` of a world_parser run), in eval mode."""
    net = WorldUNet(16, widths)
    load_state_dict_strict(net, load_checkpoint_file(path, "world_parser"), f"world parser {path}")
    return net.eval()
