"""Training the FS encoder (`models/encoders/fs.py`): HairCLIPv2's embedding in one forward pass.

The objective is the FS embedding's (`editing/embedding.py`): L2 and LPIPS between the image and the
generator resumed from (S, F) after the hairstyle block, optionally e4e's identity loss, plus a feature
regulariser ||F - F(S)||^2 that keeps F near the generator's own feature of S (HairCLIPv2's
`l_F_lambda`). On the synthetic world the true codes w and their F are known and supervise S and F
directly (`w_lambda`, `f_lambda`). The encoder starts from an e4e checkpoint's weights when given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio

from ..config import build, plain
from ..losses import IDLoss, LPIPSLoss
from ..models.encoders.fs import FSEncoder, save_fs_encoder
from ..models.inversion import InversionModel
from ..models.stylegan2 import Generator
from ..weights import frozen_generator


@dataclass
class FSLossConfig:
    l2_lambda: float = 1.0
    lpips_lambda: float = 0.8
    lpips_type: str = "alex"
    id_lambda: float = 0.0
    feature_lambda: float = 0.01  # ||F - F(S)||^2: the feature regulariser
    w_lambda: float = 1.0  # synthetic world: ||S - w||^2 against the true codes
    # synthetic world: ||F - F(w)||^2 against the true feature; a reconstruction only with the skip
    # (resume_with_skip=True): without it F(w) leaves out the RGB of blocks 0..k
    f_lambda: float = 1.0


class FSEncoderModule(pl.LightningModule):
    def __init__(
        self,
        generator: Generator,
        encoder: nn.Module | Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=1e-4),
        stylegan_weights: str | None = None,
        e4e_weights: str | None = None,
        hairstyle_block: int = 3,
        head_width: int = 64,
        resume_with_skip: bool = False,
        id_weights: str | None = None,
        random_loss_networks: bool = False,
        export: str | None = "fs_encoder.pt",
        loss: Mapping[str, Any] | None = None,
    ):
        """`encoder`: e4e's (or a pSp) encoder, or a partial `SketchEncoder` (a small world's image
        encoder, its layout) given the generator's style_dim and n_latent here;
        `e4e_weights`: an official e4e file whose encoder starts the training; `resume_with_skip`:
        the FS space (False: HairCLIPv2's, no RGB skip; True: the editor's `editing.resume_with_skip`
        variant); `export`: the file (in the run folder) the trained encoder is written to at the end."""
        super().__init__()
        loss = plain(loss)  # plain in the checkpoint's hyperparameters: a resume reads them with weights_only
        self.cfg: FSLossConfig = build(FSLossConfig, loss, "model.loss")
        self.save_hyperparameters(ignore=["generator", "encoder", "optimizer"])
        self.optimizer, self.export = optimizer, export
        latent_avg = frozen_generator(generator, stylegan_weights, "model.stylegan_weights")
        if not isinstance(encoder, nn.Module):
            encoder = encoder(style_dim=generator.style_dim, n_latent=generator.n_latent)
        if e4e_weights:
            e4e = InversionModel.from_official(e4e_weights, decoder=generator, load_decoder=False)
            encoder.load_state_dict(e4e.encoder.state_dict())
        self.decoder = generator
        self.fs = FSEncoder(encoder, generator, latent_avg, hairstyle_block, head_width, resume_with_skip)
        self.lpips = LPIPSLoss(self.cfg.lpips_type, random_backbone=random_loss_networks)
        self.id_loss = (
            IDLoss("ir_se50", weights=id_weights, random_weights=random_loss_networks)
            if self.cfg.id_lambda > 0
            else None
        )
        self.val_psnr, self.val_lpips, self.val_loss = PeakSignalNoiseRatio(data_range=1.0), MeanMetric(), MeanMetric()

    @property
    def generator(self) -> Generator:
        return self.decoder

    @property
    def latent_avg(self) -> torch.Tensor:
        return self.fs.latent_avg

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(image from (S, F), S, F, F(S)): the generator resumed after the hairstyle block, fixed noise."""
        codes, feature, base = self.fs(images)
        image = self.fs.image(codes, feature)
        if image.shape[-1] != images.shape[-1]:
            image = torch.nn.functional.interpolate(image, size=images.shape[-2:], mode="area")
        return image, codes, feature, base

    def losses(self, batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x, c = batch["image"], self.cfg
        y, codes, feature, base = self.reconstruct(x)
        terms = {
            "l2": c.l2_lambda * (y - x).pow(2).mean(),
            "lpips": c.lpips_lambda * self.lpips(y, x),
            "feature": c.feature_lambda * (feature - base).pow(2).mean(),
        }
        if self.id_loss is not None:
            terms["id"] = c.id_lambda * self.id_loss(y, x)
        if "w" in batch:  # the synthetic world: the true code and its feature are known
            w = batch["w"]
            with torch.no_grad():
                true_f = self.generator.features(w, self.fs.hairstyle_block)[0]
            terms["w"] = c.w_lambda * (codes - w).pow(2).mean()
            terms["f"] = c.f_lambda * (feature - true_f).pow(2).mean()
        return terms, y

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms, _ = self.losses(batch)
        loss = sum(terms.values())
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=False)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        terms, y = self.losses(batch)
        x = batch["image"]
        self.val_loss.update(sum(terms.values()))
        self.val_lpips.update(self.lpips.distance(y, x))
        self.val_psnr.update((y.clamp(-1, 1) + 1) / 2, (x + 1) / 2)
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/lpips", self.val_lpips)
        self.log("val/psnr", self.val_psnr)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.fs.parameters())

    def on_train_end(self) -> None:
        if self.export and self.trainer.is_global_zero:
            save_fs_encoder(self.fs, Path(self.trainer.default_root_dir) / self.export)
