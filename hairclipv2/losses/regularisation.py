"""e4e's delta regularisation (L_d-reg): keeps the W+ rows close to the first one."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def delta_norms(codes: torch.Tensor, rows: Sequence[int], p: float = 2.0) -> torch.Tensor:
    """mean_n ||w_{n,i} - w_{n,0}||_p for each i in rows: (len(rows),), from W+ codes (N, n_latent, D)."""
    if codes.ndim != 3:
        raise ValueError(f"codes must be W+ of shape (N, n_latent, D), got {tuple(codes.shape)}")
    rows = list(rows)
    if not rows:
        return codes.new_zeros(0)
    return torch.linalg.vector_norm(codes[:, rows] - codes[:, :1], ord=p, dim=2).mean(dim=0)


def delta_regularisation(codes: torch.Tensor, num_deltas: int, p: float = 2.0) -> torch.Tensor:
    """sum_{i=1..num_deltas} mean_n ||w_{n,i} - w_{n,0}||_p over W+ codes (N, n_latent, D).

    e4e applies it (weight delta_norm_lambda = 2e-4, p = delta_norm = 2) to rows 1..stage of the
    current progressive stage (coach.py l.254), and not at all at the Inference stage.
    """
    return delta_norms(codes, range(1, min(num_deltas, codes.shape[1] - 1) + 1), p).sum()
