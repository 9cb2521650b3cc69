"""e4e's training objective, as `training/coach.py` of omertov/encoder4editing @ 99ea505 computes it.

Two parts, each usable on its own:
- `E4EObjective`: the encoder's loss (`calc_loss`): L2, LPIPS, ID, the delta regulariser over the
  rows the progressive stage has switched on, and the adversarial term of the latent discriminator.
- `LatentAdversary`: the latent discriminator and its training terms (`sample_real_and_fake_latents`,
  `discriminator_loss`, `discriminator_r1_loss`) with the two code pools.

Shapes: images (N, 3, H, W) in [-1, 1]; W+ codes (N, n_latent, D) *including* `latent_avg` (what
`pSp.forward(..., return_latents=True)` returns); single codes (N, D).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import IDLoss, LPIPSLoss
from ..losses.regularisation import delta_norms
from ..models.encoders.psp import INFERENCE_STAGE
from ..models.latent_discriminator import LatentCodesDiscriminator, LatentCodesPool


@dataclass
class LossConfig:
    """Weights of the encoder objective (defaults: e4e's options/train_options.py)."""

    l2_lambda: float = 1.0
    lpips_lambda: float = 0.8
    lpips_type: str = "alex"
    id_lambda: float = 0.1
    id_backbone: str = "ir_se50"
    delta_norm: float = 2.0
    delta_norm_lambda: float = 2e-4
    # Official (coach.py l.254, `range(1, progressive_stage.value + 1)`): rows 1..stage inclusive.
    # False regularises rows 1..stage-1 only, leaving the newest delta free for its first steps.
    delta_reg_current_row: bool = True
    # Not in e4e: L2 between the codes and the true codes, for data that knows them (the synthetic
    # data of a generator's own pictures). The image losses leave the directions of W that the
    # generator barely reads free; this pins them (docs/guides/world.md, "e4e on the world").
    w_lambda: float = 0.0


@dataclass
class DiscriminatorConfig:
    """The latent discriminator (defaults: train_options.py; off unless w_discriminator_lambda > 0).
    Its optimiser (official: Adam at w_discriminator_lr 2e-5) is the module's `discriminator_optimizer`."""

    w_discriminator_lambda: float = 0.0
    r1: float = 10.0
    d_reg_every: int = 16
    use_w_pool: bool = False
    w_pool_size: int = 50
    # Official (coach.py `sample_real_and_fake_latents`, upstream commit f0a8223): with
    # start_from_latent_avg the fake codes are encoder(x) + latent_avg. False gives the encoder's raw
    # output (the behaviour before that commit).
    fake_codes_with_latent_avg: bool = True


def progressive(stage: int) -> bool:
    return stage != INFERENCE_STAGE


def delta_rows(stage: int, n_latent: int, include_current: bool = True) -> list[int]:
    """The rows whose deltas the regulariser sees: 1..stage (official), none at the Inference stage."""
    if not progressive(stage):
        return []
    last = stage if include_current else stage - 1
    return list(range(1, min(last, n_latent - 1) + 1))


def discriminated_rows(stage: int, n_latent: int) -> list[int]:
    """e4e's `get_dims_to_discriminate`: rows 0..stage while progressive, else every row."""
    return list(range(min(stage + 1, n_latent))) if progressive(stage) else list(range(n_latent))


class LatentAdversary(nn.Module):
    """e4e's latent discriminator D(w) with its losses and pools of past codes."""

    def __init__(self, style_dim: int, config: DiscriminatorConfig, rng: random.Random | None = None):
        super().__init__()
        self.cfg = config
        self.discriminator = LatentCodesDiscriminator(style_dim, 4)
        size = config.w_pool_size if config.use_w_pool else 0
        rng = rng or random.Random(0)
        self.real_pool, self.fake_pool = LatentCodesPool(size, rng), LatentCodesPool(size, rng)

    def pool_state(self) -> dict[str, Any]:
        """The pools' contents and their generator's state (for exact resumes)."""
        real, fake = self.real_pool.state(), self.fake_pool.state()
        return {"rng": real["rng"], "real": real["codes"], "fake": fake["codes"]}

    def load_pool_state(self, state: dict[str, Any]) -> None:
        """The pools share one random generator: restoring it once restores both."""
        device = next(self.discriminator.parameters()).device
        self.real_pool.load_state({"rng": state["rng"], "codes": state["real"]}, device)
        self.fake_pool.load_state({"rng": state["rng"], "codes": state["fake"]}, device)

    def fake_codes(self, encoder_out: torch.Tensor, latent_avg: torch.Tensor | None, rows: list[int]) -> torch.Tensor:
        """The encoder's codes the discriminator judges, before the pool: (N, len(rows), D)."""
        if latent_avg is not None and self.cfg.fake_codes_with_latent_avg:
            encoder_out = encoder_out + latent_avg.expand_as(encoder_out)
        return encoder_out[:, rows]

    def sample(self, real_w: torch.Tensor, fake_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Through the pools (when on); the first row of a multi-row fake: (N, D), (N, D)."""
        real_w, fake_w = self.real_pool.query(real_w), self.fake_pool.query(fake_w)
        return real_w, fake_w[:, 0] if fake_w.ndim == 3 else fake_w

    def discriminator_loss(self, real_w: torch.Tensor, fake_w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Non-saturating: softplus(-D(real)).mean() + softplus(D(fake)).mean()."""
        real = F.softplus(-self.discriminator(real_w)).mean()
        fake = F.softplus(self.discriminator(fake_w)).mean()
        return {"d_real_loss": real, "d_fake_loss": fake, "discriminator_loss": real + fake}

    def is_r1_step(self, step: int) -> bool:
        return step % self.cfg.d_reg_every == 0

    def r1_loss(self, real_w: torch.Tensor) -> dict[str, torch.Tensor]:
        """R1 on real codes: penalty = mean_n sum |dD/dw|^2; loss = r1 / 2 * penalty * d_reg_every
        (+ 0 * D(real)[0], as the official code, so that every parameter is in the graph)."""
        real_w = real_w.detach().requires_grad_(True)
        pred = self.discriminator(real_w)
        (grad,) = torch.autograd.grad(pred.sum(), real_w, create_graph=True)
        penalty = grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
        loss = self.cfg.r1 / 2 * penalty * self.cfg.d_reg_every + 0 * pred[0, 0]
        return {"r1_penalty": penalty, "discriminator_r1_loss": loss}

    def encoder_term(self, codes: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The encoder's adversarial loss: mean over rows of softplus(-D(codes[:, i])).mean()."""
        return torch.stack([F.softplus(-self.discriminator(codes[:, i])).mean() for i in rows]).mean()


class E4EObjective(nn.Module):
    """e4e's `calc_loss`: every term unweighted, plus their weighted sum as "loss".

    lpips / id_loss may be None when their weight is 0; adversary None when the discriminator is off.
    """

    def __init__(
        self,
        config: LossConfig,
        lpips: LPIPSLoss | None,
        id_loss: IDLoss | None,
        adversary: LatentAdversary | None = None,
    ):
        super().__init__()
        if config.lpips_lambda > 0 and lpips is None:
            raise ValueError("lpips_lambda > 0 needs an LPIPS network")
        if config.id_lambda > 0 and id_loss is None:
            raise ValueError("id_lambda > 0 needs an identity network")
        self.cfg, self.lpips, self.id_loss, self.adversary = config, lpips, id_loss, adversary

    def forward(
        self,
        y: torch.Tensor,
        y_hat: torch.Tensor,
        codes: torch.Tensor,
        stage: int,
        lpips: torch.Tensor | None = None,
        id_sim: torch.Tensor | None = None,
        true_codes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """y, y_hat (N, 3, H, W); codes (N, n_latent, D) with latent_avg; `stage` the progressive
        stage (INFERENCE_STAGE without progressive training). `lpips` / `id_sim`: per-sample values
        already computed (validation reuses its metrics). `true_codes` (like codes): the codes that
        made y, needed when w_lambda > 0."""
        c = self.cfg
        terms: dict[str, torch.Tensor] = {}
        loss = y.new_zeros(())
        if self.adversary is not None and self.adversary.cfg.w_discriminator_lambda > 0:
            terms["encoder_discriminator_loss"] = self.adversary.encoder_term(
                codes, discriminated_rows(stage, codes.shape[1])
            )
            loss = loss + self.adversary.cfg.w_discriminator_lambda * terms["encoder_discriminator_loss"]
        rows = delta_rows(stage, codes.shape[1], c.delta_reg_current_row)
        if rows:
            deltas = delta_norms(codes, rows, c.delta_norm)
            terms.update({f"delta{i}_loss": d for i, d in zip(rows, deltas)})
            terms["total_delta_loss"] = deltas.sum()
            loss = loss + c.delta_norm_lambda * terms["total_delta_loss"]
        elif progressive(stage):
            terms["total_delta_loss"] = y.new_zeros(())
        if c.id_lambda > 0:
            sim = id_sim if id_sim is not None else self.id_loss.similarity(y_hat, y)
            terms["loss_id"] = (1 - sim).mean()
            # e4e's id_improve: sim(y_hat, y) - sim(y, x); its x is y for face inversion (sim 1).
            terms["id_improve"] = (sim - 1).mean().detach()
            loss = loss + c.id_lambda * terms["loss_id"]
        if c.l2_lambda > 0:
            terms["loss_l2"] = F.mse_loss(y_hat, y)
            loss = loss + c.l2_lambda * terms["loss_l2"]
        if c.lpips_lambda > 0:
            terms["loss_lpips"] = lpips.mean() if lpips is not None else self.lpips(y_hat, y)
            loss = loss + c.lpips_lambda * terms["loss_lpips"]
        if c.w_lambda > 0:
            if true_codes is None:
                raise ValueError("model.loss.w_lambda > 0 needs data with true codes (a batch 'w'), found none")
            terms["loss_w"] = F.mse_loss(codes, true_codes)
            loss = loss + c.w_lambda * terms["loss_w"]
        terms["loss"] = loss
        return terms
