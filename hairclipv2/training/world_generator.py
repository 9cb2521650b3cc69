"""The world's generator: the project's StyleGAN2 `Generator` trained so that G(z) is the world's face of z.

A supervised decoder (no discriminator): z is the world's own prior (`hairclipv2/world`), the target
is its rendered picture, the loss the mean squared error of the image (and optionally L1). As in
StyleGAN2, an exponential moving average of the weights (`g_ema`) is what validation measures and what
is exported: `<run>/world_generator.pt` in rosinality's container ({"g_ema", "latent_avg"}), so that
`load_generator` and every `*.stylegan_weights` key read it like the official FFHQ file. With the world
parser, validation also reports the world issue's second target: the IoU of the hair the parser
finds in G(z) with the face's exact hair (`val/parser_hair_iou`, pooled over the validation faces:
the hair pixels both hold over those either holds).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.image import PeakSignalNoiseRatio

from ..evaluation.ground_truth import hair_overlap
from ..models.parsing import HairSegmenter
from ..models.parsing.world_unet import load_world_parser
from ..models.stylegan2 import Generator
from ..sharing import borrow
from ..weights import atomic_torch_save, estimate_latent_avg, load_generator
from ..world import N_PARAMS


def early_rgb(generator: Generator, through: int) -> list[nn.Module]:
    """The ToRGB layers of blocks 0..through (block 0's is to_rgb1, block k's to_rgbs[k - 1])."""
    if not 0 <= through < generator.n_blocks:
        raise ValueError(f"zero_rgb_through must be a block 0..{generator.n_blocks - 1}, got {through}")
    return [generator.to_rgb1, *generator.to_rgbs[:through]]


class WorldGeneratorModule(pl.LightningModule):
    def __init__(
        self,
        generator: Generator,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=2e-3, betas=(0.9, 0.99)),
        scheduler: Callable[..., Any] | None = None,
        l1_lambda: float = 0.0,
        ema_decay: float = 0.999,
        mapping_lr_scale: float = 1.0,
        world_dims: int | None = N_PARAMS,
        init_weights: str | None = None,
        parser_weights: str | None = None,
        export: str | None = "world_generator.pt",
        mixing_row: int = 5,
        zero_rgb_through: int | None = None,
    ):
        """`scheduler`: an optional partial LR scheduler stepped every step (a decay to the end of
        training buys the last decibels); `ema_decay`: the weight of the running average per step;
        `mapping_lr_scale`: the mapping network's learning rate over the synthesis network's (its
        layers' lr_mlp already slows them; a larger scale undoes that without changing what the
        stored weights mean); `world_dims`: the coordinates of z the world reads (the mapping
        network's first layer starts blind to the others, which carry nothing; None keeps
        StyleGAN2's initialisation); `init_weights`: an exported generator file
        to continue from (both the live and the averaged weights start from it; the optimiser starts
        afresh); `parser_weights`: the world parser that validation reads G(z)'s hair with (None:
        no IoU; the validation items then need no "hair"); `export`: the file in the run folder the
        averaged generator is written to after every validation and at the end; `mixing_row`: with
        mixed items ("z_appearance", data.mixing), the first W+ row drawn from the appearance
        code (5 at 64 px: the rows after the 16x16 F of block 2, which the editor blends);
        `zero_rgb_through` k: the RGB outputs of blocks 0..k are zeroed and never trained, so the
        picture comes from the later blocks alone and HairCLIPv2's resume after block k, which
        leaves that RGB out, draws G's own picture (None: StyleGAN2's skips, all trained)."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "optimizer", "scheduler"])
        self.optimizer, self.scheduler, self.export = optimizer, scheduler, export
        if init_weights is not None:
            load_generator(generator, init_weights, "model.init_weights")
        elif world_dims is not None:
            with torch.no_grad():
                generator.style[1].weight[:, world_dims:] = 0
        if zero_rgb_through is not None:
            for layer in early_rgb(generator, zero_rgb_through):
                for p in layer.parameters():
                    p.detach().zero_()
                layer.requires_grad_(False)
        self.generator = generator.train()
        self.g_ema = copy.deepcopy(generator).requires_grad_(False).eval()
        self.val_psnr, self.val_loss = PeakSignalNoiseRatio(data_range=1.0), MeanMetric()
        # a measuring instrument, not part of the model: kept out of the checkpoints (so a run can
        # start or resume with or without it) and moved to the device when validation starts
        parser = HairSegmenter(load_world_parser(parser_weights)).requires_grad_(False) if parser_weights else None
        borrow(self, segmenter=parser)
        self.val_hair_both, self.val_hair_either = SumMetric(), SumMetric()

    @staticmethod
    def draw(
        generator: Generator, z: torch.Tensor, z_appearance: torch.Tensor | None = None, mixing_row: int = 5
    ) -> torch.Tensor:
        """G(z) with the stored noise: the picture the world's z stands for. With `z_appearance`,
        rows from `mixing_row` on are its codes (StyleGAN's style mixing at one crossover)."""
        w = generator.mapping(z).unsqueeze(1).expand(-1, generator.n_latent, -1)
        if z_appearance is not None:
            fine = generator.mapping(z_appearance).unsqueeze(1).expand_as(w)
            rows = torch.arange(generator.n_latent, device=w.device)[None, :, None]
            w = torch.where(rows < mixing_row, w, fine)
        return generator.synthesis(w)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mse = (pred - target).pow(2).mean()
        return mse + self.hparams.l1_lambda * (pred - target).abs().mean(), mse

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self.draw(self.generator, batch["z"], batch.get("z_appearance"), self.hparams.mixing_row)
        loss, mse = self.loss(pred, batch["image"])
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/psnr", 10 * torch.log10(4 / mse.detach()))
        return loss

    def on_train_batch_end(self, *args) -> None:
        decay = min(self.hparams.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        with torch.no_grad():
            for ema, live in zip(self.g_ema.parameters(), self.generator.parameters(), strict=True):
                ema.lerp_(live, 1 - decay)

    def on_validation_start(self) -> None:
        if self.segmenter is not None:
            self.segmenter.to(self.device)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        pred = self.draw(self.g_ema, batch["z"])
        loss, _ = self.loss(pred, batch["image"])
        self.val_loss.update(loss)
        image = pred.clamp(-1, 1)  # the picture as it is shown and parsed
        self.val_psnr.update((image + 1) / 2, (batch["image"] + 1) / 2)
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        if self.segmenter is not None:
            both, either = hair_overlap(self.segmenter.hair(image), batch["hair"])
            self.val_hair_both.update(both)
            self.val_hair_either.update(either)

    def parser_hair_iou(self) -> torch.Tensor:
        """The validation's pooled hair IoU so far (NaN before any hair)."""
        return self.val_hair_both.compute() / self.val_hair_either.compute()

    def configure_optimizers(self) -> Any:
        mapping = list(self.generator.style.parameters())
        known = {id(p) for p in mapping}
        rest = [p for p in self.generator.parameters() if id(p) not in known and p.requires_grad]
        optimizer = self.optimizer([{"params": rest}, {"params": mapping}])
        optimizer.param_groups[1]["lr"] *= self.hparams.mapping_lr_scale
        if self.scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler(optimizer), "interval": "step"}}

    def export_generator(self, path: str | Path) -> Path:
        """The averaged generator in rosinality's container, with latent_avg of 4096 of the world's z."""
        g = copy.deepcopy(self.g_ema).cpu()
        return atomic_torch_save({"g_ema": g.state_dict(), "latent_avg": estimate_latent_avg(g)}, path)

    def on_validation_epoch_end(self) -> None:
        if self.segmenter is not None:
            self.log("val/parser_hair_iou", self.parser_hair_iou(), prog_bar=True)
            self.val_hair_both.reset()
            self.val_hair_either.reset()
        if self.export and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.export_generator(Path(self.trainer.default_root_dir) / self.export)

    def on_train_end(self) -> None:
        if self.export and self.trainer.is_global_zero:
            self.export_generator(Path(self.trainer.default_root_dir) / self.export)
