"""Networks shared by several parts of a pipeline, owned once.

The generator, the parser, CLIP, the VGG / LPIPS backbones and FAN serve many parts of the editor. A
part keeps a plain reference to each network it uses (`borrow`), outside its registered submodules;
the pipeline that builds the parts registers each network once. So the pipeline's `state_dict()`,
`parameters()` and `.to(device)` see every weight once, and moving the pipeline moves the networks
every part refers to.
"""

from __future__ import annotations

from torch import nn


def borrow(owner: nn.Module, **networks: nn.Module | None) -> None:
    """Set `owner.<name> = network` for each, without registering it as a submodule of `owner`."""
    for name, network in networks.items():
        object.__setattr__(owner, name, network)
