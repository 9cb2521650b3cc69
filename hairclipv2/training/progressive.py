"""e4e's progressive training schedule: which delta rows are switched on at a given step."""

from __future__ import annotations


def progressive_steps(n_latent: int, start: int | None, every: int) -> list[int] | None:
    """Steps at which stages 0, 1, ..., n_latent - 1 begin (e4e's `update_progressive_steps`):
    stage 0 at step 0, stage 1 at `start`, then one more delta row every `every` steps.
    None (no progressive training: every delta from the start) when `start` is None."""
    if start is None:
        return None
    if start < 0 or every <= 0:
        raise ValueError(f"progressive_start must be >= 0 and progressive_step_every > 0, got {start}, {every}")
    return [0] + [start + i * every for i in range(n_latent - 1)]


def stage_at(step: int, steps: list[int] | None, inference_stage: int = 18) -> int:
    """The progressive stage in force at `step` (the last stage whose start is <= step)."""
    if steps is None:
        return inference_stage
    return max(i for i, s in enumerate(steps) if s <= step)
