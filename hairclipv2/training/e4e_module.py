"""e4e training as a LightningModule (Tov et al. 2021; omertov/encoder4editing `training/coach.py`).

Each step, as the official coach:
1. (w_discriminator_lambda > 0) discriminator step: real codes w = mapping(z), fake codes
   encoder(x) + latent_avg (row 0, or a random switched-on row through the code pool),
   non-saturating loss; every `d_reg_every` steps an R1 step on the real codes (weight
   r1 / 2 * d_reg_every).
2. encoder step: L2 + LPIPS + ID on the reconstruction of the frozen generator, e4e's delta
   regularisation on rows 1..stage, and the adversarial loss over rows 0..stage
   (`objective.E4EObjective`, `objective.LatentAdversary`).
The progressive stage is a function of the step (`progressive.start`, `progressive.step_every`), so a
resumed run is at the same stage; it is also stored in checkpoints. `trainer.global_step` counts
encoder steps, as the official `global_step` does (the discriminator's raw optimiser steps bypass
Lightning's counter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric, MeanSquaredError, SumMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..losses import IDLoss, LPIPSLoss
from ..models.encoders.psp import INFERENCE_STAGE, INPUT_SIZE
from ..models.inversion import InversionModel, build_encoder
from ..models.stylegan2 import Generator
from ..weights import CheckpointError, frozen_generator, load_checkpoint_file
from .objective import DiscriminatorConfig, E4EObjective, LatentAdversary, LossConfig, discriminated_rows
from .progressive import progressive_steps, stage_at
from .ranger import Ranger


def _plain(values: Mapping[str, Any] | None) -> dict[str, Any]:
    if isinstance(values, DictConfig):
        return OmegaConf.to_container(values, resolve=True)  # type: ignore[return-value]
    return dict(values or {})


def _from_mapping(cls: type, values: Mapping[str, Any] | None, what: str) -> Any:
    """A config dataclass from a mapping, with an error naming unknown keys."""
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown}; expected some of {sorted(known)}")
    return cls(**values)


@dataclass
class OptimConfig:
    name: str = "ranger"  # or "adam"
    lr: float = 1e-4


@dataclass
class ProgressiveConfig:
    start: int | None = None  # None: every delta from step 0 (no progressive training)
    step_every: int = 2000


class E4EModule(pl.LightningModule):
    """Trains an e4e (or pSp) encoder against a frozen StyleGAN2 generator.

    Args:
        generator: the generator (from conf/generator); frozen.
        stylegan_weights: official generator file (paths.weights.stylegan2); None keeps the
            generator's own (random) weights and estimates latent_avg: demos and tests.
        encoder_type: "Encoder4Editing" or "GradualStyleEncoder".
        input_size: encoder input (256 officially).
        encoder_init: IR-SE50 file to initialise the encoder body with (pSp/e4e do), or None.
        id_weights: identity network file (paths.weights.ir_se50 or .facenet).
        random_loss_networks: LPIPS and ID with random weights (offline demos; numbers meaningless).
        randomize_noise: fresh noise in every decode, training and validation (official: pSp.forward's
            default); False uses the generator's stored noise buffers.
    """

    def __init__(
        self,
        generator: Generator,
        stylegan_weights: str | None = None,
        encoder_type: str = "Encoder4Editing",
        input_size: int = INPUT_SIZE,
        encoder_init: str | None = None,
        start_from_latent_avg: bool = True,
        randomize_noise: bool = True,
        id_weights: str | None = None,
        random_loss_networks: bool = False,
        loss: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
        progressive: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        # Plain containers (not OmegaConf nodes) in the hyperparameters: checkpoints stay loadable
        # with torch.load(weights_only=True), which Lightning uses to resume.
        loss, discriminator, optim, progressive = (_plain(v) for v in (loss, discriminator, optim, progressive))
        self.loss_cfg: LossConfig = _from_mapping(LossConfig, loss, "model.loss")
        self.disc_cfg: DiscriminatorConfig = _from_mapping(DiscriminatorConfig, discriminator, "model.discriminator")
        self.optim_cfg: OptimConfig = _from_mapping(OptimConfig, optim, "model.optim")
        self.prog_cfg: ProgressiveConfig = _from_mapping(ProgressiveConfig, progressive, "model.progressive")
        if self.optim_cfg.name not in ("ranger", "adam"):
            raise ValueError(f"model.optim.name must be 'ranger' or 'adam', got {self.optim_cfg.name!r}")
        self.save_hyperparameters(ignore=["generator"])
        self.randomize_noise = randomize_noise

        latent_avg = frozen_generator(generator, stylegan_weights)
        encoder = build_encoder(encoder_type, generator.size, input_size=input_size)
        if encoder_init is not None:
            init_encoder_from_ir_se50(encoder, encoder_init)
        self.model = InversionModel(encoder, generator, latent_avg, start_from_latent_avg)
        self.schedule = progressive_steps(generator.n_latent, self.prog_cfg.start, self.prog_cfg.step_every)

        self.lpips = LPIPSLoss(self.loss_cfg.lpips_type, random_backbone=random_loss_networks)
        self.id_loss = IDLoss(self.loss_cfg.id_backbone, weights=id_weights, random_weights=random_loss_networks)
        self.adversary = (
            LatentAdversary(generator.style_dim, self.disc_cfg) if self.disc_cfg.w_discriminator_lambda > 0 else None
        )
        self.objective = E4EObjective(self.loss_cfg, self.lpips, self.id_loss, self.adversary)

        self.val_mse = MeanSquaredError()
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_lpips, self.val_id_sim, self.val_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_latent_mse, self.val_count, self.val_d_loss = MeanMetric(), SumMetric(), MeanMetric()

    # ------------------------------------------------------------------------------ schedule
    @property
    def use_discriminator(self) -> bool:
        return self.adversary is not None

    @property
    def stage(self) -> int:
        return (
            self.model.encoder.progressive_stage
            if hasattr(self.model.encoder, "progressive_stage")
            else INFERENCE_STAGE
        )

    def apply_stage(self, step: int) -> None:
        if hasattr(self.model.encoder, "set_progressive_stage"):
            self.model.encoder.set_progressive_stage(stage_at(step, self.schedule, INFERENCE_STAGE))

    # -------------------------------------------------------------------------------- losses
    def encoder_losses(
        self,
        x: torch.Tensor,
        codes: torch.Tensor,
        y_hat: torch.Tensor,
        lpips: torch.Tensor | None = None,
        id_sim: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every term of the encoder objective at the current stage (target = source, as ffhq_encode)."""
        return self.objective(x, y_hat, codes, self.stage, lpips=lpips, id_sim=id_sim)

    def reconstruct(self, x: torch.Tensor, randomize_noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.model.encode(x)
        return codes, self.model.decode(codes, randomize_noise=randomize_noise)

    # ------------------------------------------------------------------------- discriminator
    def sample_real_and_fake(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e4e's `sample_real_and_fake_latents`: w = mapping(z) and the encoder's codes, no gradient."""
        decoder = self.model.decoder
        with torch.no_grad():
            real = decoder.mapping(torch.randn(x.shape[0], decoder.style_dim, device=x.device))
            latent_avg = self.model.latent_avg if self.model.start_from_latent_avg else None
            fake = self.adversary.fake_codes(
                self.model.encoder(x), latent_avg, discriminated_rows(self.stage, decoder.n_latent)
            )
            return self.adversary.sample(real, fake)

    def discriminator_step(self, x: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        d = self.adversary.discriminator
        d.requires_grad_(True)
        real, fake = self.sample_real_and_fake(x)
        terms = self.adversary.discriminator_loss(real, fake)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(terms["discriminator_loss"])
        optimizer.step()
        if self.adversary.is_r1_step(self.global_step):
            r1 = self.adversary.r1_loss(real)
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(r1["discriminator_r1_loss"])
            optimizer.step()
            terms.update(r1)
        d.requires_grad_(False)
        return {k: v.detach() for k, v in terms.items()}

    # ------------------------------------------------------------------------------ training
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.apply_stage(self.global_step)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        optimizers = self.optimizers()
        e_opt, d_opt = (optimizers[0], optimizers[1]) if isinstance(optimizers, (list, tuple)) else (optimizers, None)
        logs: dict[str, torch.Tensor] = {}
        if d_opt is not None:
            logs.update(self.discriminator_step(x, d_opt.optimizer))  # raw step: global_step counts encoder steps
        codes, y_hat = self.reconstruct(x, self.randomize_noise)
        terms = self.encoder_losses(x, codes, y_hat)
        e_opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        e_opt.step()
        logs.update({k: v.detach() for k, v in terms.items()})
        logs["progressive_stage"] = torch.tensor(float(self.stage))
        self.log_dict(
            {f"train/{k}": v for k, v in logs.items() if k != "loss"},
            on_step=True,
            on_epoch=False,
            batch_size=x.shape[0],
        )
        self.log("train/loss", logs["loss"], prog_bar=True, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return terms["loss"].detach()

    # ---------------------------------------------------------------------------- validation
    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        x = batch["image"]
        codes, y_hat = self.reconstruct(x, self.randomize_noise)  # official: psp.forward's fresh noise
        lpips, id_sim = self.lpips.distance(y_hat, x), self.id_loss.similarity(y_hat, x)
        terms = self.encoder_losses(x, codes, y_hat, lpips=lpips, id_sim=id_sim)
        x01, y01 = (x + 1) / 2, ((y_hat + 1) / 2).clamp(0, 1)
        self.val_mse(y01, x01)
        self.val_psnr(y01, x01)
        self.val_ssim(y01, x01)
        self.val_lpips.update(lpips)
        self.val_id_sim.update(id_sim)
        self.val_loss.update(terms["loss"], weight=x.shape[0])
        self.val_count.update(torch.tensor(float(x.shape[0]), device=x.device))
        metrics = {
            "val/mse": self.val_mse,
            "val/psnr": self.val_psnr,
            "val/ssim": self.val_ssim,
            "val/lpips": self.val_lpips,
            "val/id_similarity": self.val_id_sim,
            "val/loss": self.val_loss,
            "val/n_images": self.val_count,
        }
        if self.adversary is not None:  # e4e's validate_discriminator (without the training pools)
            with torch.no_grad():
                decoder, latent_avg = (
                    self.model.decoder,
                    self.model.latent_avg if self.model.start_from_latent_avg else None,
                )
                real = decoder.mapping(torch.randn(x.shape[0], decoder.style_dim, device=x.device))
                fake = self.adversary.fake_codes(
                    self.model.encoder(x), latent_avg, discriminated_rows(self.stage, decoder.n_latent)
                )[:, 0]
                self.val_d_loss.update(
                    self.adversary.discriminator_loss(real, fake)["discriminator_loss"], weight=x.shape[0]
                )
            metrics["val/discriminator_loss"] = self.val_d_loss
        if "w" in batch:
            self.val_latent_mse.update(((codes - batch["w"]) ** 2).mean(dim=(1, 2)))
            metrics["val/latent_mse"] = self.val_latent_mse
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=False)
        return {"input": x.detach(), "reconstruction": y_hat.detach()}

    # ----------------------------------------------------------------------- optimisers, I/O
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        params = list(self.model.encoder.parameters())
        cfg = self.optim_cfg
        opt = torch.optim.Adam(params, lr=cfg.lr) if cfg.name == "adam" else Ranger(params, lr=cfg.lr)
        if not self.use_discriminator:
            return [opt]
        return [opt, torch.optim.Adam(self.adversary.discriminator.parameters(), lr=self.disc_cfg.w_discriminator_lr)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["progressive_stage"] = self.stage

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "progressive_stage" in checkpoint and hasattr(self.model.encoder, "set_progressive_stage"):
            self.model.encoder.set_progressive_stage(int(checkpoint["progressive_stage"]))


def init_encoder_from_ir_se50(encoder: torch.nn.Module, path: str | Path) -> None:
    """Initialise the encoder's input layer and body from ArcFace IR-SE50 (as pSp/e4e do: the
    shared keys only); every input_layer/body key must be in the file."""
    state = load_checkpoint_file(path, "ir_se50")
    own = {k: v for k, v in encoder.state_dict().items() if k.startswith(("input_layer.", "body."))}
    missing = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    if missing:
        raise CheckpointError(
            f"{path} cannot initialise the encoder body: {len(missing)} keys missing or mis-shaped, e.g. {missing[:5]}"
        )
    encoder.load_state_dict({k: state[k] for k in own}, strict=False)
