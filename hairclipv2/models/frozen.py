"""A base for loss networks that are never trained and must stay in eval mode."""

from __future__ import annotations

from torch import nn


class FrozenNetwork(nn.Module):
    """Parameters frozen; `train()` leaves it in eval mode (BatchNorm statistics and dropout off),
    as the official losses are, even when Lightning puts the whole module into training mode."""

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenNetwork:
        return super().train(False)
