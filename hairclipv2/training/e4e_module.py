"""e4e training as a LightningModule (Tov et al. 2021; omertov/encoder4editing `training/coach.py`).

Each step, as the official coach:
1. (w_discriminator_lambda > 0) discriminator step: real codes w = mapping(z), fake codes from the
   encoder (row 0, or a random switched-on row through the code pool), non-saturating loss; every
   `d_reg_every` steps an R1 step on the real codes (weight r1 / 2 * d_reg_every).
2. encoder step: L2 + LPIPS + ID on the reconstruction of the frozen generator, e4e's delta
   regularisation on the switched-on rows, and the adversarial loss over rows 0..stage.
The progressive stage is a function of the step (`progressive.start`, `progressive.step_every`), so a
resumed run is at the same stage; it is also stored in checkpoints. `trainer.global_step` counts
encoder steps, as the official `global_step` does (the discriminator's raw optimiser steps bypass
Lightning's counter).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric, MeanSquaredError, SumMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..losses import IDLoss, LPIPSLoss, delta_regularisation
from ..models.encoders.psp import INFERENCE_STAGE, INPUT_SIZE
from ..models.inversion import InversionModel, build_encoder
from ..models.latent_discriminator import LatentCodesDiscriminator, LatentCodesPool
from ..models.stylegan2 import Generator
from ..weights import CheckpointError, frozen_generator, load_checkpoint_file
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
class LossConfig:
    """e4e's objective (defaults: options/train_options.py; id_lambda 0.5 in the FFHQ command)."""

    l2_lambda: float = 1.0
    lpips_lambda: float = 0.8
    lpips_type: str = "alex"
    id_lambda: float = 0.1
    id_backbone: str = "ir_se50"
    delta_norm: float = 2.0
    delta_norm_lambda: float = 2e-4
    # Official: rows 1..stage-1 (coach.py `range(1, stage)`); True also regularises row `stage`.
    delta_reg_current_row: bool = False


@dataclass
class DiscriminatorConfig:
    w_discriminator_lambda: float = 0.0
    w_discriminator_lr: float = 2e-5
    r1: float = 10.0
    d_reg_every: int = 16
    use_w_pool: bool = False
    w_pool_size: int = 50
    # Official: the discriminator sees encoder(x), i.e. codes without latent_avg; True adds it.
    fake_codes_with_latent_avg: bool = False


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
        export_official: bool = True,
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
        self.randomize_noise, self.export_official = randomize_noise, export_official

        latent_avg = frozen_generator(generator, stylegan_weights)
        encoder = build_encoder(encoder_type, generator.size, input_size=input_size)
        if encoder_init is not None:
            init_encoder_from_ir_se50(encoder, encoder_init)
        self.model = InversionModel(encoder, generator, latent_avg, start_from_latent_avg)
        self.schedule = progressive_steps(generator.n_latent, self.prog_cfg.start, self.prog_cfg.step_every)

        self.lpips = LPIPSLoss(self.loss_cfg.lpips_type, random_backbone=random_loss_networks)
        self.id_loss = IDLoss(self.loss_cfg.id_backbone, weights=id_weights, random_weights=random_loss_networks)
        if self.disc_cfg.w_discriminator_lambda > 0:
            self.discriminator = LatentCodesDiscriminator(generator.style_dim, 4)
            self.real_pool = LatentCodesPool(self.disc_cfg.w_pool_size if self.disc_cfg.use_w_pool else 0)
            self.fake_pool = LatentCodesPool(self.disc_cfg.w_pool_size if self.disc_cfg.use_w_pool else 0)

        self.val_mse = MeanSquaredError()
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_lpips, self.val_id_sim, self.val_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_latent_mse, self.val_count = MeanMetric(), SumMetric()

    # ------------------------------------------------------------------------------ schedule
    @property
    def use_discriminator(self) -> bool:
        return self.disc_cfg.w_discriminator_lambda > 0

    @property
    def stage(self) -> int:
        return self.model.encoder.progressive_stage if hasattr(self.model.encoder, "progressive_stage") else INFERENCE_STAGE

    def apply_stage(self, step: int) -> None:
        if hasattr(self.model.encoder, "set_progressive_stage"):
            self.model.encoder.set_progressive_stage(stage_at(step, self.schedule, INFERENCE_STAGE))

    def discriminated_rows(self) -> list[int]:
        """Rows 0..stage while progressive (e4e's get_dims_to_discriminate), else every row."""
        n = self.model.decoder.n_latent
        return list(range(min(self.stage + 1, n))) if self.schedule is not None else list(range(n))

    # -------------------------------------------------------------------------------- losses
    def encoder_losses(self, x: torch.Tensor, codes: torch.Tensor, y_hat: torch.Tensor, lpips: torch.Tensor | None = None, id_sim: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every term of the encoder objective, unweighted, plus their weighted sum as "loss".

        `lpips` / `id_sim`: per-sample LPIPS distances and identity similarities already computed
        (validation reuses its metric values instead of running those networks twice).
        """
        c = self.loss_cfg
        y = x  # e4e's ffhq_encode: target = source
        terms: dict[str, torch.Tensor] = {"loss_l2": F.mse_loss(y_hat, y)}
        weighted = c.l2_lambda * terms["loss_l2"]
        if c.lpips_lambda > 0:
            terms["loss_lpips"] = lpips.mean() if lpips is not None else self.lpips(y_hat, y)
            weighted = weighted + c.lpips_lambda * terms["loss_lpips"]
        if c.id_lambda > 0:
            terms["loss_id"] = (1 - id_sim).mean() if id_sim is not None else self.id_loss(y_hat, y)
            weighted = weighted + c.id_lambda * terms["loss_id"]
        if self.schedule is not None and self.stage != INFERENCE_STAGE:
            rows = self.stage if c.delta_reg_current_row else self.stage - 1
            terms["loss_delta"] = delta_regularisation(codes, rows, c.delta_norm)
            weighted = weighted + c.delta_norm_lambda * terms["loss_delta"]
        if self.use_discriminator:
            rows = self.discriminated_rows()
            terms["loss_adv"] = torch.stack([F.softplus(-self.discriminator(codes[:, i])).mean() for i in rows]).mean()
            weighted = weighted + self.disc_cfg.w_discriminator_lambda * terms["loss_adv"]
        terms["loss"] = weighted
        return terms

    def reconstruct(self, x: torch.Tensor, randomize_noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.model.encode(x)
        return codes, self.model.decode(codes, randomize_noise=randomize_noise)

    # ------------------------------------------------------------------------- discriminator
    def sample_real_and_fake(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            real = self.model.decoder.mapping(torch.randn(x.shape[0], self.model.decoder.style_dim, device=x.device))
            fake = self.model.encode(x) if self.disc_cfg.fake_codes_with_latent_avg else self.model.encoder(x)
            if self.schedule is not None:
                fake = fake[:, self.discriminated_rows()]
            real, fake = self.real_pool.query(real), self.fake_pool.query(fake)
            return real, fake[:, 0] if fake.ndim == 3 else fake

    def discriminator_step(self, x: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        d, cfg = self.discriminator, self.disc_cfg
        d.requires_grad_(True)
        real, fake = self.sample_real_and_fake(x)
        real_loss, fake_loss = F.softplus(-d(real)).mean(), F.softplus(d(fake)).mean()
        logs = {"d_real_loss": real_loss.detach(), "d_fake_loss": fake_loss.detach()}
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(real_loss + fake_loss)
        optimizer.step()
        if self.global_step % cfg.d_reg_every == 0:
            real = real.detach().requires_grad_(True)
            pred = d(real)
            (grad,) = torch.autograd.grad(pred.sum(), real, create_graph=True)
            r1 = grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(cfg.r1 / 2 * r1 * cfg.d_reg_every + 0 * pred[0, 0])
            optimizer.step()
            logs["d_r1"] = r1.detach()
        d.requires_grad_(False)
        return logs

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
        self.log_dict({f"train/{k}": v for k, v in logs.items() if k != "loss"}, on_step=True, on_epoch=False, batch_size=x.shape[0])
        self.log("train/loss", logs["loss"], prog_bar=True, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return terms["loss"].detach()

    # ---------------------------------------------------------------------------- validation
    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        x = batch["image"]
        codes, y_hat = self.reconstruct(x, randomize_noise=False)
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
        metrics = {"val/mse": self.val_mse, "val/psnr": self.val_psnr, "val/ssim": self.val_ssim, "val/lpips": self.val_lpips, "val/id_similarity": self.val_id_sim, "val/loss": self.val_loss, "val/n_images": self.val_count}
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
        return [opt, torch.optim.Adam(self.discriminator.parameters(), lr=self.disc_cfg.w_discriminator_lr)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["progressive_stage"] = self.stage

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "progressive_stage" in checkpoint and hasattr(self.model.encoder, "set_progressive_stage"):
            self.model.encoder.set_progressive_stage(int(checkpoint["progressive_stage"]))

    def on_train_end(self) -> None:
        if self.export_official and self.trainer.is_global_zero:
            path = Path(self.trainer.default_root_dir) / "e4e_official.pt"
            self.model.save_official(path, progressive_stage=self.stage, **{f"loss_{k}": v for k, v in asdict(self.loss_cfg).items()})


def init_encoder_from_ir_se50(encoder: torch.nn.Module, path: str | Path) -> None:
    """Initialise the encoder's input layer and body from ArcFace IR-SE50 (as pSp/e4e do: the
    shared keys only); every input_layer/body key must be in the file."""
    state = load_checkpoint_file(path, "ir_se50")
    own = {k: v for k, v in encoder.state_dict().items() if k.startswith(("input_layer.", "body."))}
    missing = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    if missing:
        raise CheckpointError(f"{path} cannot initialise the encoder body: {len(missing)} keys missing or mis-shaped, e.g. {missing[:5]}")
    encoder.load_state_dict({k: state[k] for k in own}, strict=False)


