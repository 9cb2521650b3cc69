"""e4e's delta regularisation (L_d-reg): keeps the W+ rows close to the first one."""
from __future__ import annotations

import torch


def delta_regularisation(codes: torch.Tensor, num_deltas: int, p: float = 2.0) -> torch.Tensor:
    """sum_{i=1..num_deltas} mean_n ||w_{n,i} - w_{n,0}||_p over W+ codes (N, n_latent, D).

    e4e applies it (weight delta_norm_lambda = 2e-4, p = delta_norm = 2) to the rows whose deltas the
    current progressive stage has switched on, and not at all at the Inference stage.
    """
    if codes.ndim != 3:
        raise ValueError(f"codes must be W+ of shape (N, n_latent, D), got {tuple(codes.shape)}")
    num_deltas = min(num_deltas, codes.shape[1] - 1)
    if num_deltas <= 0:
        return codes.new_zeros(())
    deltas = codes[:, 1 : num_deltas + 1] - codes[:, :1]
    return torch.linalg.vector_norm(deltas, ord=p, dim=2).mean(dim=0).sum()
