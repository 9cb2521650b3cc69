"""torchvision's VGG16 activations, the network of HairCLIPv2's style loss."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ..weights import MissingCheckpointError, backbone_file
from .frozen import FrozenNetwork


def random_vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 `features`, initialised as `vgg16(weights=None)` initialises them, without
    building the 120 M-parameter classifier (whose initialisation alone takes seconds on a CPU)."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"])
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


class VGG16Activations(FrozenNetwork):
    """torchvision VGG16 `features` at the given layer indices (3, 8, 15, 22: relu1_2..relu4_3).

    The whole `features` stack is kept so that torchvision's (and HairCLIPv2's) `features.*` state
    dict loads strictly; the forward stops after the deepest requested layer. Inputs go in as
    given: HairCLIPv2 feeds [-1, 1] images without ImageNet normalisation.
    """

    def __init__(self, layers: Sequence[int] = (3, 8, 15, 22), random_weights: bool = False):
        super().__init__()
        import torchvision

        if random_weights:
            warnings.warn("VGG16 with random weights: style losses are meaningless", stacklevel=2)
            self.features = random_vgg16_features()
        else:
            path = backbone_file("vgg")
            if not path.is_file():
                raise MissingCheckpointError(
                    f"the style loss needs torchvision's VGG16 ImageNet weights {path.name} in {path.parent} (set TORCH_HOME)"
                )
            vgg = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
            self.features = vgg.features
        if max(layers) >= len(self.features):
            raise ValueError(f"VGG16 features has {len(self.features)} layers, asked for layer {max(layers)}")
        self.layers = tuple(sorted(layers))
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features[: self.layers[-1] + 1]):
            x = layer(x)
            if i in self.layers:
                out.append(x)
        return out
