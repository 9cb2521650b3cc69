"""e4e's latent-code discriminator and the pool of past codes it is trained on."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn


class LatentCodesDiscriminator(nn.Module):
    """MLP on single w codes: (n_mlp - 1) x [Linear, LeakyReLU(0.2)] + Linear -> one logit.

    Keys `mlp.{0,2,4,6}.*` as e4e's checkpoints' `discriminator_state_dict`.
    """

    def __init__(self, style_dim: int = 512, n_mlp: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_mlp - 1):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(style_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, style_dim) -> logits (N, 1)."""
        return self.mlp(w)


class LatentCodesPool:
    """History of codes (CycleGAN's image pool for latents), as e4e's `LatentCodesPool`.

    `query(ws)` takes (N, D) codes, or (N, K, D) where one random row of each sample is the
    candidate, and returns (N, D): until the pool is full each code is stored and returned; then with
    probability 1/2 a stored code is returned (and replaced by the new one), else the new code.
    """

    def __init__(self, pool_size: int, rng: random.Random | None = None):
        self.pool_size = pool_size
        self.codes: list[torch.Tensor] = []
        self.rng = rng or random.Random(0)

    def state(self) -> dict[str, Any]:
        """The stored codes (on the CPU) and the random generator's state: what an exact resume needs."""
        return {"rng": self.rng.getstate(), "codes": [c.detach().cpu() for c in self.codes]}

    def load_state(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        self.rng.setstate(state["rng"])
        self.codes = [c.to(device) for c in state["codes"]]

    def query(self, ws: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return ws
        out = []
        for w in ws:
            if w.ndim == 2:
                w = w[self.rng.randint(0, len(w) - 1)]
            if len(self.codes) < self.pool_size:
                self.codes.append(w)
                out.append(w)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.pool_size - 1)
                out.append(self.codes[i].clone())
                self.codes[i] = w
            else:
                out.append(w)
        return torch.stack(out, 0)
