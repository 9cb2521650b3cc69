"""Checkpoints that survive a kill and runs that resume exactly.

- `AtomicCheckpointIO`: each checkpoint is written to a hidden temporary file beside its target and
  renamed over it, so a process killed mid-write leaves the previous checkpoint intact; temporary
  files of an earlier killed write are removed at the next save.
- `ResumableRandomSampler` / `ResumableDataLoader`: the data order of epoch e is a permutation seeded
  by (seed, e); the loader's state (the batches consumed, read from the trainer's global step) goes
  into Lightning's checkpoint, and a resumed run starts its epoch at the next unseen batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch.utils.data import DataLoader, Sampler

TMP_SUFFIX = ".ckpt.tmp"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to `.<name>.ckpt.tmp` in the checkpoint's folder, then os.replace onto the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".*{TMP_SUFFIX}"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.stem}{TMP_SUFFIX}")
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class ResumableRandomSampler(Sampler[int]):
    """Indices 0..n-1 in the order torch.randperm(n) gives under seed `seed + epoch`, one epoch per
    iteration; `start` skips the first indices of the next epoch (a resumed run's position)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        start, self.start = self.start, 0
        self.epoch += 1
        return iter(order[start:])


class ResumableDataLoader(DataLoader):
    """A DataLoader over a ResumableRandomSampler whose position Lightning saves and restores.

    `steps_done` returns the batches consumed so far (the trainer's global step: one batch a step).
    A resumed run continues the interrupted epoch with its unseen batches, in the same order, so
    that it ends as an uninterrupted run would.
    """

    def __init__(self, *args: Any, steps_done: Callable[[], int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.steps_done = steps_done

    def resumable_sampler(self) -> ResumableRandomSampler | None:
        return self.sampler if isinstance(self.sampler, ResumableRandomSampler) else None

    def state_dict(self) -> dict[str, int]:
        return {"batches_done": int(self.steps_done()) if self.steps_done is not None else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.resumable_sampler()
        if sampler is None:  # e.g. wrapped for DDP: the interrupted epoch restarts from its beginning
            return
        per_epoch = len(self)
        epoch, batch = divmod(int(state.get("batches_done", 0)), per_epoch)
        sampler.epoch, sampler.start = epoch, batch * self.batch_size


def resumable_train_loader(
    dataset: Any, batch_size: int, seed: int, steps_done: Callable[[], int], **kwargs: Any
) -> ResumableDataLoader:
    """The training loader of the data modules: shuffled by seed and epoch, drop_last, resumable.
    It draws its workers' base seed from its own generator, not from torch's global one, so that a
    resumed run's random draws (noise, latent samples) match the uninterrupted run's."""
    return ResumableDataLoader(
        dataset,
        batch_size,
        sampler=ResumableRandomSampler(len(dataset), seed),
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        steps_done=steps_done,
        **kwargs,
    )
