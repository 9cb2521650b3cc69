"""Checkpoints that survive a kill and runs that resume exactly.

- `AtomicCheckpointIO`: each checkpoint is written to a hidden temporary file beside its target and
  renamed over it, so a process killed mid-write leaves the previous checkpoint intact; temporary
  files of an earlier killed write are removed at the next save.
- `ResumableRandomSampler` / `ResumableDataLoader`: the data order of epoch e is a permutation seeded
  by (seed, e); the loader's state (the batches consumed, read from the trainer's global step) goes
  into Lightning's checkpoint, and a resumed run starts its epoch at the next unseen batch.
- `SafeExceptionCheckpoint`: the checkpoint written on Ctrl-C, SIGTERM or an error, only once the
  run's state was restored and training began: a run whose restore failed never overwrites the
  checkpoint it could not read. `check_checkpoint_file` finds a truncated or damaged file first.
- `AppendingCSVLogger`: a resumed run's metrics are appended to its `metrics.csv`, whose rows from
  the resumed step on (they will be logged again) are dropped when training restarts.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.loggers.csv_logs import _ExperimentWriter
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from torch.utils.data import DataLoader, Sampler

from ..weights import CheckpointError

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


def check_checkpoint_file(path: str | Path) -> Path:
    """`path` if it is a whole torch checkpoint (a zip archive whose every member reads back with
    its checksum), else a CheckpointError in one line. Nothing is unpickled."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc}); it was left as it is") from None
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint (member {bad} fails its checksum); it was left as it is")
    return path


def checkpoint_step(path: str | Path) -> int | None:
    """The global step a Lightning checkpoint was written at (tensors memory-mapped, not read)."""
    try:
        return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"])
    except Exception:  # another format, or objects weights_only refuses: unknown
        return None


def holds_training_state(path: str | Path) -> bool:
    """False for a weights-only checkpoint (no optimiser state: it cannot be resumed from)."""
    try:
        return "optimizer_states" in torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:
        return True  # not readable this way: Lightning's restore gives its own error


def link_best_to_last(best: str | Path, last: str | Path) -> bool:
    """Make the weights-only best checkpoint a hard link to last.ckpt when both hold the same step
    (the same weights: one copy on disk instead of two). False where nothing was linked."""
    best, last = Path(best), Path(last)
    if not (best.is_file() and last.is_file()) or best.samefile(last):
        return False
    step = checkpoint_step(best)
    if step is None or step != checkpoint_step(last):
        return False
    tmp = best.with_name(f".{best.stem}{TMP_SUFFIX}")
    try:
        tmp.unlink(missing_ok=True)
        os.link(last, tmp)
        os.replace(tmp, best)
    except OSError:  # a filesystem without hard links: both files stay
        tmp.unlink(missing_ok=True)
        return False
    return True


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint for last.ckpt, which also keeps fast_dev_run's promise of no
    checkpoint at the end of training (Lightning's on_train_end saves `last` regardless)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)


class SafeExceptionCheckpoint(OnExceptionCheckpoint):
    """Lightning's on-exception checkpoint, written only after `on_train_start` (the checkpoint being
    resumed was restored) and never deleted at teardown (it is the run's `last.ckpt`)."""

    def __init__(self, dirpath: str | Path, filename: str = "last"):
        super().__init__(dirpath, filename)
        self.training_started = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training_started = True

    def on_exception(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.training_started:  # a whole checkpoint (optimiser state included): what a resume reads
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)

    def teardown(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        pass


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps an existing metrics.csv (its header and rows)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))

    def drop_rows_from(self, step: int) -> None:
        """Remove the rows logged at `step` or later (a resumed run logs them again)."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            header, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < step]
        tmp = Path(self.metrics_file_path).with_name(f".{Path(self.metrics_file_path).name}.tmp")
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.metrics_file_path)


class AppendingCSVLogger(CSVLogger):
    """CSVLogger whose run folder may already hold a metrics.csv: a resumed run continues it."""

    @property
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class ResumedLogs(Callback):
    """When training starts from a restored step, the CSV logs drop their rows from that step on."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step > 0 and trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, AppendingCSVLogger):
                    logger.experiment.drop_rows_from(trainer.global_step)
