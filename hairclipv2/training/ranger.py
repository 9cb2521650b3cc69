"""Ranger (Wright 2019): RAdam + Lookahead + gradient centralisation, the optimiser of pSp and e4e.

Per parameter p with gradient g (gradient centralisation subtracts g's mean over all but the first
dim for weights with ndim > 1):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    rho_t > 5:  p -= lr * r_t / (1 - b1^t) * m / (sqrt(v) + eps),  r_t the RAdam rectifier
    else:       p -= lr / (1 - b1^t) * m
    every k steps: slow += alpha (p - slow); p = slow          (Lookahead)
Defaults are those of the official `training/ranger.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class Ranger(Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        alpha: float = 0.5,
        k: int = 6,
        n_sma_threshold: float = 5.0,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        use_gc: bool = True,
        gc_conv_only: bool = False,
    ):
        if not 0.0 < lr:
            raise ValueError(f"Ranger lr must be positive, got {lr}")
        if not 0.0 <= alpha <= 1.0 or k < 1:
            raise ValueError(f"Ranger needs 0 <= alpha <= 1 and k >= 1, got alpha={alpha}, k={k}")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            k=k,
            n_sma_threshold=n_sma_threshold,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            use_gc=use_gc,
            gc_min_ndim=3 if gc_conv_only else 1,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                    state["slow_buffer"] = p.detach().clone()
                if group["use_gc"] and grad.ndim > group["gc_min_ndim"]:
                    grad = grad - grad.mean(dim=tuple(range(1, grad.ndim)), keepdim=True)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                beta2_t = beta2**t
                n_sma_max = 2 / (1 - beta2) - 1
                n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
                p32 = p.float()
                if group["weight_decay"] != 0:
                    p32.add_(p32, alpha=-group["weight_decay"] * group["lr"])
                if n_sma > group["n_sma_threshold"]:
                    rect = math.sqrt(
                        (1 - beta2_t)
                        * (n_sma - 4)
                        / (n_sma_max - 4)
                        * (n_sma - 2)
                        / n_sma
                        * n_sma_max
                        / (n_sma_max - 2)
                    )
                    step_size = rect / (1 - beta1**t)
                    p32.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-step_size * group["lr"])
                else:
                    p32.add_(exp_avg, alpha=-group["lr"] / (1 - beta1**t))
                p.copy_(p32)
                if t % group["k"] == 0:
                    slow = state["slow_buffer"]
                    slow.add_(p - slow, alpha=group["alpha"])
                    p.copy_(slow)
        return loss
