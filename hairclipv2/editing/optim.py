"""The optimisation loop every proxy and the embedding share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch


@dataclass
class AdamRun:
    losses: list[torch.Tensor] = field(default_factory=list)  # per step, the (N,) losses
    # The parameters as they were before the last step: what HairCLIPv2's loops return (they stack
    # `latent_in` at the top of each iteration, then step). The parameters themselves hold the last step.
    before_last_step: list[torch.Tensor] = field(default_factory=list)

    def result(self, params: Sequence[torch.Tensor], pre_step: bool) -> list[torch.Tensor]:
        """The values to return: before the last step (official) or after it."""
        return self.before_last_step if pre_step else [p.detach() for p in params]


ADAM_BETAS = (0.9, 0.999)  # torch's defaults, which every HairCLIPv2 loop keeps

# called as step_observer(done, total) after each step of every run_adam in the context
_STEP_OBSERVER: ContextVar[Callable[[int, int], None] | None] = ContextVar("step_observer", default=None)


@contextmanager
def observe_steps(observer: Callable[[int, int], None]) -> Iterator[None]:
    """Within the context, every optimisation loop reports `observer(done, total)` after each step
    (a progress bar), without the proxies passing a callback down."""
    token = _STEP_OBSERVER.set(observer)
    try:
        yield
    finally:
        _STEP_OBSERVER.reset(token)


def check_finite(losses: list[torch.Tensor]) -> None:
    """A NaN or infinite loss makes its samples' parameters NaN for good (Adam's moments keep it):
    stop with the first such step and its samples instead of returning empty pictures. Checked once
    after the loop, so the steps themselves never wait for the device."""
    if not losses:
        return
    finite = torch.isfinite(torch.stack(losses).reshape(len(losses), -1))
    if not bool(finite.all()):
        step = int((~finite).any(1).nonzero()[0])
        bad = (~finite[step]).nonzero().flatten().tolist()
        raise FloatingPointError(f"the loss is not finite at step {step + 1} of {len(losses)} for samples {bad}")


def run_adam(
    params: Sequence[torch.Tensor],
    lr: float | Sequence[float],
    steps: int,
    loss_fn: Callable[[], torch.Tensor],
    betas: tuple[float, float] = ADAM_BETAS,
) -> AdamRun:
    """`steps` Adam steps on the summed per-sample loss `loss_fn()` (N,); each sample's loss is its own,
    so a sample gets the same updates alone or in a batch. `lr`: one rate, or one per parameter."""
    params = list(params)
    rates = [float(lr)] * len(params) if isinstance(lr, (int, float)) else [float(r) for r in lr]
    if len(rates) != len(params):
        raise ValueError(f"run_adam: {len(rates)} learning rates for {len(params)} parameters")
    opt = torch.optim.Adam([{"params": [p], "lr": r} for p, r in zip(params, rates)], betas=betas)
    run = AdamRun(before_last_step=[p.detach().clone() for p in params])
    observer = _STEP_OBSERVER.get()
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.sum().backward()
        if step == steps - 1:
            run.before_last_step = [p.detach().clone() for p in params]
        opt.step()
        run.losses.append(loss.detach())
        if observer is not None:
            observer(step + 1, steps)
    check_finite(run.losses)
    return run


def gauss_newton(
    residuals: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int, damping: float = 1.0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Damped minimum-norm Gauss-Newton (Levenberg-Marquardt) on a few residuals per sample:
    `residuals(x)` (N, K) of x (N, ...), each sample's from its own x. A step is
    x - J^T (J J^T + damping I)^-1 r, the smallest move that zeroes the linearised residuals (K
    backward passes, K << x's size). A step that does not lower a sample's residual norm is taken
    back and that sample's damping grows tenfold (it falls back tenfold, to `damping`, after a step
    that does), so no sample ends worse than it started. Returns (x, the residuals (N, K) of the
    kept x before each step and after the last)."""
    n = x.shape[0]
    x = x.detach().clone()
    lam = torch.full((n, 1, 1), float(damping), device=x.device, dtype=torch.float64)

    def evaluate(at: torch.Tensor, jacobian: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        free = at.clone().requires_grad_(jacobian)
        with torch.enable_grad() if jacobian else torch.no_grad():
            r = residuals(free)
            if not jacobian:
                return r.detach(), None
            k = r.shape[1]
            rows = [torch.autograd.grad(r[:, i].sum(), free, retain_graph=i < k - 1)[0].flatten(1) for i in range(k)]
        return r.detach(), torch.stack(rows, 1).double()  # (N, K), (N, K, P)

    r, jac = evaluate(x, steps > 0)
    history = [r]
    for step in range(steps):
        eye = torch.eye(r.shape[1], device=x.device, dtype=torch.float64)
        gram = jac @ jac.transpose(1, 2) + lam * eye
        move = (jac.transpose(1, 2) @ torch.linalg.solve(gram, r.double()[..., None]))[..., 0]
        trial = x - move.view_as(x).to(x.dtype)
        r_trial, jac_trial = evaluate(trial, step < steps - 1)
        better = r_trial.norm(dim=1) <= r.norm(dim=1)  # (N,)
        keep = better.view(n, *([1] * (x.dim() - 1)))
        x, r = torch.where(keep, trial, x), torch.where(better[:, None], r_trial, r)
        if jac_trial is not None:
            jac = torch.where(better[:, None, None], jac_trial, jac)
        lam = torch.where(better[:, None, None], (lam / 10).clamp_min(damping), lam * 10)
        history.append(r)
    return x, history
