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

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection, SumMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..config import build, plain
from ..losses import IDLoss, LPIPSLoss
from ..models.encoders.psp import INFERENCE_STAGE
from ..models.inversion import InversionModel
from ..models.stylegan2 import Generator
from ..weights import CheckpointError, frozen_generator, load_checkpoint_file
from .objective import DiscriminatorConfig, E4EObjective, LatentAdversary, LossConfig, discriminated_rows
from .progressive import progressive_steps, stage_at
from .ranger import Ranger


@dataclass
class ProgressiveConfig:
    start: int | None = None  # None: every delta from step 0 (no progressive training)
    step_every: int = 2000


class E4EModule(pl.LightningModule):
    """Trains an e4e (or pSp) encoder against a frozen StyleGAN2 generator.

    Args:
        generator: the generator (from conf/generator); frozen.
        encoder: the encoder to train (`Encoder4Editing`, or pSp's `GradualStyleEncoder`), built by Hydra.
        optimizer / discriminator_optimizer: partial optimisers (`_partial_: true`) for the encoder's and
            the latent discriminator's parameters (official: Ranger 1e-4 and Adam 2e-5).
        scheduler: an optional partial LR scheduler for the encoder's optimiser, stepped every
            training step (e4e uses none).
        stylegan_weights: official generator file (paths.weights.stylegan2); None keeps the
            generator's own (random) weights and estimates latent_avg: demos and tests.
        encoder_init: IR-SE50 file to initialise the encoder body with (pSp/e4e do), or None.
        id_weights: identity network file (paths.weights.ir_se50 or .facenet).
        random_loss_networks: LPIPS and ID with random weights (offline demos; numbers meaningless).
        randomize_noise: fresh noise in every decode, training and validation (official: pSp.forward's
            default); False uses the generator's stored noise buffers.
    """

    def __init__(
        self,
        generator: Generator,
        encoder: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(Ranger, lr=1e-4),
        discriminator_optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=2e-5),
        scheduler: Callable[..., Any] | None = None,
        stylegan_weights: str | None = None,
        encoder_init: str | None = None,
        start_from_latent_avg: bool = True,
        randomize_noise: bool = True,
        id_weights: str | None = None,
        random_loss_networks: bool = False,
        loss: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        progressive: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        # Plain containers (not OmegaConf nodes) in the hyperparameters: checkpoints stay loadable
        # with torch.load(weights_only=True), which Lightning uses to resume.
        loss, discriminator, progressive = (plain(v) for v in (loss, discriminator, progressive))
        self.loss_cfg: LossConfig = build(LossConfig, loss, "model.loss")
        self.disc_cfg: DiscriminatorConfig = build(DiscriminatorConfig, discriminator, "model.discriminator")
        self.prog_cfg: ProgressiveConfig = build(ProgressiveConfig, progressive, "model.progressive")
        # The networks and the partial optimisers stay out of the hyperparameters (checkpoints load with
        # weights_only); they are rebuilt from the config.
        self.save_hyperparameters(ignore=["generator", "encoder", "optimizer", "discriminator_optimizer", "scheduler"])
        self.optimizer, self.discriminator_optimizer, self.scheduler = optimizer, discriminator_optimizer, scheduler
        self.randomize_noise = randomize_noise

        latent_avg = frozen_generator(generator, stylegan_weights, "model.stylegan_weights")
        if encoder_init is not None:
            init_encoder_from_ir_se50(encoder, encoder_init)
        self.model = InversionModel(encoder, generator, latent_avg, start_from_latent_avg)
        self.schedule = progressive_steps(generator.n_latent, self.prog_cfg.start, self.prog_cfg.step_every)

        self.lpips = LPIPSLoss(self.loss_cfg.lpips_type, random_backbone=random_loss_networks)
        # The identity network (175 MB, frozen) only when its loss is on: not built, not checkpointed otherwise.
        self.id_loss = (
            IDLoss(self.loss_cfg.id_backbone, weights=id_weights, random_weights=random_loss_networks)
            if self.loss_cfg.id_lambda > 0
            else None
        )
        self.adversary = (
            LatentAdversary(generator.style_dim, self.disc_cfg) if self.disc_cfg.w_discriminator_lambda > 0 else None
        )
        self.objective = E4EObjective(self.loss_cfg, self.lpips, self.id_loss, self.adversary)

        # Image metrics on [0, 1] images, updated together (one MetricCollection).
        self.val_images = MetricCollection(
            {
                "mse": MeanSquaredError(),
                "psnr": PeakSignalNoiseRatio(data_range=1.0),
                "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
            },
            prefix="val/",
        )
        self.val_lpips, self.val_id_sim, self.val_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_latent_mse, self.val_count, self.val_d_loss = MeanMetric(), SumMetric(), MeanMetric()
        self.val_latent_avg_mse = MeanMetric()  # the same error for answering latent_avg: the bar to beat

    @property
    def generator(self) -> Generator:
        """The frozen generator being inverted."""
        return self.model.decoder

    @property
    def latent_avg(self) -> torch.Tensor:
        """Its average code (style_dim,)."""
        return self.model.latent_avg[0]

    # ------------------------------------------------------------------------------ schedule
    @property
    def use_discriminator(self) -> bool:
        return self.adversary is not None

    @property
    def stage(self) -> int:
        return self.model.progressive_stage

    def apply_stage(self, step: int) -> None:
        self.model.set_progressive_stage(stage_at(step, self.schedule, INFERENCE_STAGE))

    # -------------------------------------------------------------------------------- losses
    def encoder_losses(
        self,
        x: torch.Tensor,
        codes: torch.Tensor,
        y_hat: torch.Tensor,
        lpips: torch.Tensor | None = None,
        id_sim: torch.Tensor | None = None,
        true_codes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every term of the encoder objective at the current stage (target = source, as ffhq_encode)."""
        return self.objective(x, y_hat, codes, self.stage, lpips=lpips, id_sim=id_sim, true_codes=true_codes)

    def reconstruct(self, x: torch.Tensor, randomize_noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.model.encode(x)
        return codes, self.model.decode(codes, randomize_noise=randomize_noise)

    # ------------------------------------------------------------------------- discriminator
    @torch.no_grad()
    def real_and_fake_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """w = mapping(z) (N, D) and the encoder's codes of the discriminated rows (N, K, D), no gradient."""
        g = self.generator
        real = g.mapping(torch.randn(x.shape[0], g.style_dim, device=x.device))
        rows = discriminated_rows(self.stage, g.n_latent)
        return real, self.adversary.fake_codes(self.model.encoder(x), self.model.code_offset, rows)

    def sample_real_and_fake(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e4e's `sample_real_and_fake_latents`: the codes above through the pools."""
        return self.adversary.sample(*self.real_and_fake_codes(x))

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
        terms = self.encoder_losses(x, codes, y_hat, true_codes=batch.get("w"))
        e_opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        e_opt.step()
        if self.scheduler is not None:  # manual optimisation: the scheduler is stepped here
            self.lr_schedulers().step()
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
        """Validation draws its noise and latent samples from its own seeded stream (step, batch), so
        that it leaves training's random sequence as it found it: a resumed run then matches an
        uninterrupted one whether or not validation ran in between."""
        x = batch["image"]
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(1_000_003 * self.global_step + batch_idx)
            return self.validate_batch(batch, x)

    def validate_batch(self, batch: Mapping[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
        codes, y_hat = self.reconstruct(x, self.randomize_noise)  # official: psp.forward's fresh noise
        lpips = self.lpips.distance(y_hat, x)
        id_sim = self.id_loss.similarity(y_hat, x) if self.id_loss is not None else None
        terms = self.encoder_losses(x, codes, y_hat, lpips=lpips, id_sim=id_sim, true_codes=batch.get("w"))
        x01, y01 = (x + 1) / 2, ((y_hat + 1) / 2).clamp(0, 1)
        self.val_images.update(y01, x01)
        self.val_lpips.update(lpips)
        self.val_loss.update(terms["loss"], weight=x.shape[0])
        self.val_count.update(torch.tensor(float(x.shape[0]), device=x.device))
        self.log_dict(self.val_images, on_step=False, on_epoch=True, batch_size=x.shape[0])
        metrics = {
            "val/lpips": self.val_lpips,
            "val/loss": self.val_loss,
            "val/n_images": self.val_count,
        }
        if self.adversary is not None:  # e4e's validate_discriminator (without the training pools)
            real, fake = self.real_and_fake_codes(x)
            with torch.no_grad():
                d_loss = self.adversary.discriminator_loss(real, fake[:, 0])["discriminator_loss"]
            self.val_d_loss.update(d_loss, weight=x.shape[0])
            metrics["val/discriminator_loss"] = self.val_d_loss
        if id_sim is not None:
            self.val_id_sim.update(id_sim)
            metrics["val/id_similarity"] = self.val_id_sim
        if "w" in batch:
            self.val_latent_mse.update(((codes - batch["w"]) ** 2).mean(dim=(1, 2)))
            average = self.model.latent_avg[None].to(codes)
            self.val_latent_avg_mse.update(((average - batch["w"]) ** 2).mean(dim=(1, 2)))
            metrics["val/latent_mse"] = self.val_latent_mse
            metrics["val/latent_avg_mse"] = self.val_latent_avg_mse
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=False)
        return {"input": x.detach(), "reconstruction": y_hat.detach()}

    # ----------------------------------------------------------------------- optimisers, I/O
    def configure_optimizers(self) -> Any:
        """The encoder's optimiser (official: the encoder only; the generator is frozen), the
        discriminator's when it is on, and the encoder's LR scheduler when one is configured."""
        optimizers = [self.optimizer(self.model.encoder_parameters())]
        if self.use_discriminator:
            optimizers.append(self.discriminator_optimizer(self.adversary.parameters()))
        if self.scheduler is None:
            return optimizers
        return optimizers, [{"scheduler": self.scheduler(optimizers[0]), "interval": "step"}]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The stage, and the random state a resumed run needs to continue the same sequence: torch's
        and Python's generators, the code pools' generator and contents."""
        checkpoint["progressive_stage"] = self.stage
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.adversary is not None:
            rng["pools"] = self.adversary.pool_state()
        checkpoint["random_state"] = rng

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "progressive_stage" in checkpoint:
            self.model.set_progressive_stage(int(checkpoint["progressive_stage"]))
        rng = checkpoint.get("random_state")
        if rng:
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            if "pools" in rng and self.adversary is not None:
                self.adversary.load_pool_state(rng["pools"])


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
