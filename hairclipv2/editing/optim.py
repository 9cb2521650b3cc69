"""The optimisation loop every proxy and the embedding share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def run_adam(
    params: Sequence[torch.Tensor], lr: float, steps: int, loss_fn: Callable[[], torch.Tensor]
) -> list[torch.Tensor]:
    """`steps` Adam steps on the summed per-sample loss `loss_fn()` (N,); returns the (N,) losses."""
    opt = torch.optim.Adam(list(params), lr=lr)
    history = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.sum().backward()
        opt.step()
        history.append(loss.detach())
    return history
