"""Source embedding in (F, S): HairCLIPv2's `Embedding` (after Barbershop / II2S), batched.

1. W+ step: codes start from the mean latent (officially) or from the e4e encoder's codes; Adam
   (lr 0.01) on every row for `w_steps` (1100) steps.
2. FS step: F = features(codes, hairstyle_block); rows >= 7 of S and F are optimised for `fs_steps`
   (250) steps, the image resumed from F without the RGB skip (`resume_with_skip=True`: with the
   skip of S). Rows 0..6 drive only blocks 0..3, which F replaces (row 7 drives block 3's ToRGB
   and block 4's first convolution); for another hairstyle block k the frozen rows are 0..2k
   (`fs_frozen_rows=None`).
Loss per sample: l2 * MSE(image, target) + percept * LPIPS-VGG(down4(image), target at 256, PIL Lanczos) +
p_norm * P-norm(codes). HairCLIPv2 defines an F-regulariser (l_F 0.1 * |F - F_init|^2) but its FS step
does not apply it; `f_regularisation=True` does. Each sample's loss is summed, not averaged, so a
sample gets the same updates alone or in a batch. Noise: fresh each step (official) or fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import LPIPSLoss
from ..models.parsing.bicubic import BicubicDownSample
from ..models.stylegan2 import Generator
from ..sharing import borrow
from .optim import ADAM_BETAS, run_adam
from .prior import PNormPrior


@dataclass
class EmbeddingConfig:
    """HairCLIPv2 `utils/options.py` defaults."""

    w_steps: int = 1100
    fs_steps: int = 250
    lr: float = 0.01
    l2_lambda: float = 1.0
    percept_lambda: float = 1.0
    p_norm_lambda: float = 0.001
    l_f_lambda: float = 0.1
    f_regularisation: bool = False  # official: defined, not applied
    # Rows 0..fs_frozen_rows-1 of S stay fixed in the FS step: 7 officially (hairstyle block 3);
    # None: 2k + 1 for hairstyle block k, the rows of the blocks up to F.
    fs_frozen_rows: int | None = None
    randomize_noise: bool = True  # official: the embedding's generator calls draw fresh noise
    # Official (Embedding.py): W+ and S as they were before the last Adam step (`latent_in`), F after it.
    pre_step_codes: bool = True
    # The 256 px target of the perceptual loss: "lanczos" (official: PIL LANCZOS of the uint8 photo,
    # Embedding.py l.72) or "area" (torch, differentiable, no uint8 round trip).
    low_res_resize: str = "lanczos"
    # ours (#15): "optimisation" (official: the W+ and FS steps) or "encoder" (the FS encoder's (S, F)
    # in one forward pass, then `refinement` FS steps from it; needs editing.fs_encoder_weights).
    method: str = "optimisation"
    refinement: int = 0
    # ours (#15): Adam of those refinement steps, (lr of the free rows of S, lr of F) and betas; None
    # keeps the official FS step's (`lr` for both, betas (0.9, 0.999)). F's elements move about lr per
    # step, far less than their spread: on the demo world (0.005, 0.1) and (0.85, 0.95) gain about
    # 3 dB after 50 steps, 0.26 dB short of the official embedding (docs/research/fs-encoder.md).
    refinement_lr: tuple[float, float] | None = None
    refinement_betas: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in ("optimisation", "encoder"):
            raise ValueError(f"editing.embedding.method must be 'optimisation' or 'encoder', got {self.method!r}")
        lrs, betas = self.refinement_lr, self.refinement_betas
        if lrs is not None and (len(lrs) != 2 or min(lrs) <= 0):
            raise ValueError(f"editing.embedding.refinement_lr must be two rates > 0, got {lrs}")
        if betas is not None and (len(betas) != 2 or not all(0 <= b < 1 for b in betas)):
            raise ValueError(f"editing.embedding.refinement_betas must be two values in [0, 1), got {betas}")

    def fs_adam(self, refining: bool) -> tuple[tuple[float, float], tuple[float, float]]:
        """((lr of S's free rows, lr of F), betas) of an FS step: the official one, or the encoder's
        refinement."""
        official = ((self.lr, self.lr), ADAM_BETAS)
        if not refining:
            return official
        return self.refinement_lr or official[0], self.refinement_betas or official[1]


def lanczos_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """PIL's LANCZOS resize of images (N, 3, H, W) in [-1, 1] through uint8, as HairCLIPv2 prepares
    its 256 px target from the photo file (exact for images read from 8-bit files)."""
    from PIL import Image

    out = []
    for img in images.detach():
        u8 = ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        small = np.asarray(Image.fromarray(u8).resize((size, size), Image.LANCZOS))
        out.append(torch.from_numpy(small.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(out).to(images.device)


@dataclass
class FSCode:
    codes: torch.Tensor  # S: W+ (N, n_latent, D)
    feature: torch.Tensor  # F after hairstyle_block
    image: torch.Tensor  # the reconstruction from (F, S), fixed noise (no skip, as HairCLIPv2, by default)


class FSEmbedding(nn.Module):
    def __init__(
        self,
        generator: Generator,
        lpips: LPIPSLoss,
        prior: PNormPrior | Callable[[], PNormPrior],
        latent_avg: torch.Tensor,
        hairstyle_block: int = 3,
        config: EmbeddingConfig | None = None,
        encoder: nn.Module | None = None,
        resume_with_skip: bool = False,
    ):
        """`prior`: the P-norm statistics, or a function that computes them, called the first time the
        P-norm term has a weight (`from_mapping` costs a second, wasted when `p_norm_lambda` is 0);
        `encoder`: the FS encoder (`models/encoders/fs.py`) for `method="encoder"`;
        `resume_with_skip`: the FS space of the editor (`editing.resume_with_skip`): False, as
        HairCLIPv2, resumes from F without the RGB skip; True adds the skip of S."""
        super().__init__()
        borrow(self, generator=generator, lpips=lpips)
        self.encoder, self.resume_with_skip = encoder, resume_with_skip
        if config is not None and config.method == "encoder" and encoder is None:
            raise ValueError("editing.embedding.method=encoder needs the FS encoder (editing.fs_encoder_weights)")
        trained_with_skip = getattr(encoder, "resume_with_skip", resume_with_skip)
        if trained_with_skip != resume_with_skip:
            raise ValueError(
                f"the FS encoder was trained with resume_with_skip={trained_with_skip}, the editor has "
                f"editing.resume_with_skip={resume_with_skip}: its F belongs to the other FS space"
            )
        self._prior, self.make_prior = (prior, None) if isinstance(prior, PNormPrior) else (None, prior)
        self.register_buffer("latent_avg", latent_avg.reshape(-1)[-generator.style_dim :].clone())
        self.hairstyle_block, self.cfg = hairstyle_block, config or EmbeddingConfig()
        self.low_res = 256 if generator.size >= 256 else generator.size
        self.downsample = (
            BicubicDownSample(generator.size // self.low_res) if generator.size > self.low_res else nn.Identity()
        )

    def low(self, target: torch.Tensor) -> torch.Tensor:
        """The target at the perceptual loss's resolution (256 px, as HairCLIPv2's ref_im_L)."""
        if target.shape[-1] == self.low_res:
            return target
        if self.cfg.low_res_resize == "lanczos":
            return lanczos_resize(target, self.low_res)
        return F.interpolate(target, size=self.low_res, mode="area")

    def per_sample_loss(
        self, image: torch.Tensor, target: torch.Tensor, codes: torch.Tensor, low_target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N,) embedding loss of each sample (`low_target`: `low(target)`, computed once by callers)."""
        c = self.cfg
        l2 = (image - target).pow(2).mean(dim=(1, 2, 3))
        percept = self.lpips.distance(self.downsample(image), self.low(target) if low_target is None else low_target)
        loss = c.l2_lambda * l2 + c.percept_lambda * percept
        return loss + c.p_norm_lambda * self.prior(codes) if c.p_norm_lambda else loss

    @property
    def prior(self) -> PNormPrior:
        """The P-norm statistics, computed the first time they are asked for."""
        if self._prior is None:
            self._prior = self.make_prior().to(self.latent_avg.device)
        return self._prior

    def check_target(self, target: torch.Tensor) -> None:
        s = self.generator.size
        if target.ndim != 4 or target.shape[1:] != (3, s, s):
            raise ValueError(f"embedding targets must be (N, 3, {s}, {s}) in [-1, 1], got {tuple(target.shape)}")

    def invert_w(
        self, target: torch.Tensor, init_codes: torch.Tensor | None = None, steps: int | None = None
    ) -> torch.Tensor:
        """W+ codes (N, n_latent, D) reconstructing target (N, 3, size, size)."""
        self.check_target(target)
        g = self.generator
        if init_codes is None:  # HairCLIPv2 starts every row from the mean latent
            init_codes = self.latent_avg.expand(target.shape[0], g.n_latent, -1)
        codes = init_codes.detach().float().clone().requires_grad_(True)
        low = self.low(target)
        run = run_adam(
            [codes],
            self.cfg.lr,
            self.cfg.w_steps if steps is None else steps,
            lambda: self.per_sample_loss(
                g.synthesis(codes, randomize_noise=self.cfg.randomize_noise), target, codes, low
            ),
        )
        return run.result([codes], self.cfg.pre_step_codes)[0]

    def reference_codes(
        self, target: torch.Tensor, initial: Callable[[], torch.Tensor | None] = lambda: None
    ) -> torch.Tensor:
        """A reference's W+ codes (HairCLIPv2's `ref_latent`): the W+ step from `initial()`, or with
        method="encoder" the FS encoder's codes S of it, in one pass (the fast path has no step)."""
        if self.cfg.method == "encoder":
            self.check_target(target)
            with torch.no_grad():
                return self.encoder(target)[0].float()
        return self.invert_w(target, initial())

    def invert_fs(
        self,
        target: torch.Tensor,
        init_codes: torch.Tensor | None = None,
        w_steps: int | None = None,
        fs_steps: int | None = None,
    ) -> FSCode:
        """(S, F) of target: the W+ step, then the FS step (with method="encoder": the FS encoder's
        (S, F), then `refinement` FS steps)."""
        c, g, k = self.cfg, self.generator, self.hairstyle_block
        if c.method == "encoder":
            self.check_target(target)
            with torch.no_grad():
                codes, f_init, _ = self.encoder(target)
            return self.fs_step(target, codes, f_init, c.refinement, refining=True)
        codes = self.invert_w(target, init_codes, w_steps)
        with torch.no_grad():
            f_init = g.features(codes, k, randomize_noise=c.randomize_noise)[0]
        return self.fs_step(target, codes, f_init, c.fs_steps if fs_steps is None else fs_steps)

    def fs_step(
        self, target: torch.Tensor, codes: torch.Tensor, f_init: torch.Tensor, steps: int, refining: bool = False
    ) -> FSCode:
        """The FS step from (S, F_init): the rows of S after F's block, and F, optimised for `steps` steps
        (`refining`: with the encoder's refinement optimiser, `refinement_lr` / `refinement_betas`)."""
        c, g, k = self.cfg, self.generator, self.hairstyle_block
        n_frozen = 2 * k + 1 if c.fs_frozen_rows is None else c.fs_frozen_rows
        frozen = codes[:, :n_frozen].float()
        free = codes[:, n_frozen:].float().clone().requires_grad_(True)
        feature = f_init.float().clone().requires_grad_(True)
        low = self.low(target)

        def fs_loss() -> torch.Tensor:
            s = torch.cat([frozen, free], dim=1)
            image = g.resume_from_feature(s, k, feature, self.resume_with_skip, c.randomize_noise)
            loss = self.per_sample_loss(image, target, s, low)
            if c.f_regularisation:
                loss = loss + c.l_f_lambda * (feature - f_init).pow(2).mean(dim=(1, 2, 3))
            return loss

        lrs, betas = c.fs_adam(refining)
        run = run_adam([free, feature], lrs, steps, fs_loss, betas)
        s = torch.cat([frozen, run.result([free], c.pre_step_codes)[0]], dim=1)
        with torch.no_grad():
            image = g.resume_from_feature(s, k, feature.detach(), self.resume_with_skip)
        return FSCode(s, feature.detach(), image)
