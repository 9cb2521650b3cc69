"""Image grids of (input | reconstruction) after each validation, saved as PNG and sent to the logger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from hairclipv2.io import save_image_grid


class ImageGridCallback(pl.Callback):
    """Takes the first validation batch's `{"input", "reconstruction"}` outputs (n_images rows),
    writes `<root>/images/val_step{step:06d}.png` on rank 0 and logs it to W&B or TensorBoard."""

    def __init__(self, n_images: int = 4, dirname: str = "images"):
        self.n_images, self.dirname = n_images, dirname
        self.last_path: Path | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        n = min(self.n_images, outputs["input"].shape[0])
        rows = torch.stack([outputs["input"][:n], outputs["reconstruction"][:n].clamp(-1, 1)], dim=1)
        path = save_image_grid(
            rows.float(), Path(trainer.default_root_dir) / self.dirname / f"val_step{trainer.global_step:06d}.png"
        )
        self.last_path = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    "val/reconstructions",
                    images=[str(path)],
                    caption=["input | reconstruction"],
                    step=trainer.global_step,
                )
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_images("val/reconstructions", (rows.flatten(0, 1) + 1) / 2, trainer.global_step)
