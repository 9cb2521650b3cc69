"""The world's parser (`models/parsing/world_unet.py`) trained on the world's exact labels.

Cross-entropy of the full-size head against the labels of each rendered face; the images are lightly
degraded (a random blur and noise) so that the parser also reads the generator's slightly softer
pictures. Validation reports the pixel accuracy and the hair IoU; the run writes
`<run>/world_parser.pt` (the state dict) after every validation and at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from ..evaluation.ground_truth import hair_overlap
from ..models.parsing.world_unet import WorldUNet
from ..weights import atomic_torch_save
from ..world import WORLD_16


def degrade(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random Gaussian blur (sigma 0..1 px) and noise (std 0..0.03) per image."""
    n = images.shape[0]
    sigma = torch.rand(n, generator=generator) * 1.0 + 1e-3
    taps = torch.arange(-2, 3, dtype=images.dtype)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(images.device)
    x = images.reshape(1, n * 3, *images.shape[-2:])
    k = kernel.repeat_interleave(3, 0)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * 3)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k[:, None, :, None], groups=n * 3)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    std = (torch.rand(n, generator=generator) * 0.03).to(images.device)
    return x.reshape(images.shape) + noise * std[:, None, None, None]


def hair_iou(labels: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(intersection, union) pixel counts of the hair class."""
    hair = WORLD_16.classes["hair"]
    return hair_overlap(labels == hair, target == hair)


class WorldParserModule(pl.LightningModule):
    def __init__(
        self,
        parser: WorldUNet,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=1e-3),
        export: str | None = "world_parser.pt",
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["parser", "optimizer"])
        self.parser, self.optimizer, self.export = parser, optimizer, export
        self.val_accuracy, self.val_loss = MeanMetric(), MeanMetric()
        self.register_buffer("iou_counts", torch.zeros(2), persistent=False)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.parser(degrade(batch["image"]))[0]
        loss = F.cross_entropy(logits, batch["labels"][:, 0])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.parser(batch["image"])[0]
        target = batch["labels"][:, 0]
        self.val_loss.update(F.cross_entropy(logits, target))
        labels = logits.argmax(1)
        self.val_accuracy.update((labels == target).float().mean())
        self.iou_counts += torch.stack(hair_iou(labels, target))
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/accuracy", self.val_accuracy)

    def on_validation_epoch_end(self) -> None:
        counts = self.trainer.strategy.reduce(self.iou_counts, reduce_op="sum")
        self.log("val/hair_iou", counts[0] / counts[1].clamp(min=1), prog_bar=True)
        self.iou_counts.zero_()
        if self.export and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            atomic_torch_save(self.parser.state_dict(), Path(self.trainer.default_root_dir) / self.export)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parser.parameters())
