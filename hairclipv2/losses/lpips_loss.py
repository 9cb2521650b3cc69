"""LPIPS (Zhang et al. 2018) through the `lpips` package, AlexNet (e4e's choice) or VGG backbone.

The package ships its linear heads; the ImageNet backbone comes from torchvision's hub cache. Offline,
a missing backbone file is an error naming it (or `random_backbone=True` for tests and demos).
"""

from __future__ import annotations

import warnings

import torch

from ..models.frozen import FrozenNetwork
from ..weights import BACKBONES, MissingCheckpointError, backbone_file, backbone_url


class LPIPSLoss(FrozenNetwork):
    """LPIPS distance of images in [-1, 1]: `forward` gives the batch mean, `distance` per sample."""

    def __init__(self, net: str = "alex", random_backbone: bool = False):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"LPIPS net must be one of {sorted(BACKBONES)}, got {net!r}")
        if random_backbone:
            warnings.warn(f"LPIPS({net}) with a random backbone: the distances are meaningless", stacklevel=2)
        else:
            path = backbone_file(net)
            if not path.is_file():
                raise MissingCheckpointError(
                    f"LPIPS({net}) needs torchvision's ImageNet backbone {path.name} in {path.parent} "
                    f"(download {backbone_url(net)} there, or set TORCH_HOME); "
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
