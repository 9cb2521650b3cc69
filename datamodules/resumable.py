"""The training loader every data module of the project shares."""

from __future__ import annotations

import pytorch_lightning as pl

from hairclipv2.training.checkpointing import ResumableDataLoader, resumable_train_loader


class ResumableTrainData(pl.LightningDataModule):
    """A data module whose `train_set` is read by a resumable loader (shuffled by `hparams.seed`,
    continued from the trainer's step after a resume); needs hparams batch_size, seed, num_workers."""

    train_set = None

    def train_dataloader(self) -> ResumableDataLoader:
        workers = self.hparams.num_workers
        return resumable_train_loader(
            self.train_set,
            self.hparams.batch_size,
            self.hparams.seed,
            lambda: self.trainer.global_step,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
