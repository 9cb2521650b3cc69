"""LPIPS (Zhang et al. 2018) through the `lpips` package, AlexNet (e4e's choice) or VGG backbone.

The package ships its linear heads; the ImageNet backbone comes from torchvision's hub cache. Offline,
a missing backbone file is an error naming it (or `random_backbone=True` for tests and demos).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torchvision

from ..weights import MissingCheckpointError
from .frozen import FrozenNetwork

BACKBONE_WEIGHTS = {
    "alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
}


def backbone_file(net: str) -> Path:
    """Where torchvision keeps the ImageNet weights that lpips' `net` backbone loads."""
    url = BACKBONE_WEIGHTS[net].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


class LPIPSLoss(FrozenNetwork):
    """LPIPS distance of images in [-1, 1]: `forward` gives the batch mean, `distance` per sample."""

    def __init__(self, net: str = "alex", random_backbone: bool = False):
        super().__init__()
        if net not in BACKBONE_WEIGHTS:
            raise ValueError(f"LPIPS net must be one of {sorted(BACKBONE_WEIGHTS)}, got {net!r}")
        if random_backbone:
            warnings.warn(f"LPIPS({net}) with a random backbone: the distances are meaningless", stacklevel=2)
        else:
            path = backbone_file(net)
            if not path.is_file():
                raise MissingCheckpointError(
                    f"LPIPS({net}) needs torchvision's ImageNet backbone {path.name} in {path.parent} "
                    f"(download {BACKBONE_WEIGHTS[net].url} there, or set TORCH_HOME); "
                    "tests and demos can use random_backbone=True"
                )
        import lpips

        self.net = lpips.LPIPS(net=net, pnet_rand=random_backbone, verbose=False)
        self.freeze()

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample LPIPS, (N,)."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"LPIPS expects two (N, 3, H, W) images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        return self.net(x, y).flatten()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(x, y).mean()
