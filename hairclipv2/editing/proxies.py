"""HairCLIPv2's optimised proxies, batched: each sample has its own codes and its own loss, and the
summed loss gives every sample the updates it would get alone.

Defaults are HairCLIPv2's `utils/options.py`. Rows count from 0; the defaults fit the 1024 px
generator (18 rows) and are configurable for smaller ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..blending import FeatureBlender
from ..losses import (
    AvgLabLoss,
    BackgroundLoss,
    CLIPLoss,
    LandmarkLoss,
    LPIPSLoss,
    StyleLoss,
    hair_mask_loss,
    rgb_to_lab,
)
from ..losses.colour import masked_mean, masked_spread
from ..models.parsing import HairSegmenter
from ..sharing import borrow
from .optim import gauss_newton, run_adam

TEXT_LANDMARKS = (tuple(range(0, 17)), tuple(range(27, 36)))  # jaw line and nose (text proxy)
# official: each proxy's optimisation; encoder: an amortised proxy's answer (amortised.py), then
# `refinement` steps of that optimisation from it
METHODS = ("optimisation", "encoder")
# where a solved colour is blended: the parsed hair with HairCLIPv2's enlarged mask's ring at half
# weight, HairCLIPv2's enlarged hair, or the parsed hair
LAB_SOLVE_MASKS = ("soft", "enlarged", "hair")
COLOUR_CONDITION = 4  # the colour mapper's condition beside CLIP's text embedding: Lab (3) and a text flag
LAB_GAINS = 4  # a colour mapper with Lab gains: one offset per unit of L, a and b asked, one for a text


@dataclass
class ProxyResult:
    codes: torch.Tensor  # the proxy's W+ codes (N, n_latent, D)
    losses: list[torch.Tensor] = field(default_factory=list)  # per step, per sample (steps, N)

    @property
    def history(self) -> torch.Tensor:
        return torch.stack(self.losses) if self.losses else torch.empty(0)


def _split_codes(codes: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, nn.Parameter, torch.Tensor]:
    return codes[:, :start].detach(), nn.Parameter(codes[:, start:stop].detach().clone()), codes[:, stop:].detach()


def checked_mapper(
    method: str, mapper: nn.Module | None, mode: str, rows: int, condition: tuple[int, str] | None = None
) -> nn.Module | None:
    """A proxy's mapper, checked against its `method` (editing.<mode>.method), the `rows` its
    optimisation frees (a mapper trained for other settings answers other rows) and, when given,
    the width of the condition the proxy gives it (with what that width is made of)."""
    if method not in METHODS:
        raise ValueError(f"editing.{mode}.method: expected one of {METHODS}, found {method!r}")
    if method == "encoder" and mapper is None:
        raise ValueError(f"editing.{mode}.method=encoder needs a {mode} mapper (editing.{mode}_mapper_weights)")
    if mapper is not None and mapper.rows != rows:
        raise ValueError(
            f"editing.{mode}_mapper_weights: the mapper answers {mapper.rows} rows, editing.{mode} frees {rows}"
        )
    if mapper is not None and condition is not None and mapper.config["condition_dim"] != condition[0]:
        raise ValueError(
            f"editing.{mode}_mapper_weights: the mapper reads a condition of {mapper.config['condition_dim']} "
            f"values, this editor gives {condition[0]} ({condition[1]}); retrain it for this editor"
        )
    return mapper


# --------------------------------------------------------------------------------------- text
@dataclass
class TextProxyConfig:
    steps: int = 200
    lr: float = 0.01
    clip_lambda: float = 1.0
    landmark_lambda: float = 200.0
    hair_mask_lambda: float = 1.0
    rows: int = 7  # rows 0..6 are optimised, from the mean latent
    augment: bool = True  # AugCLIPLoss (HairCLIPv2's default for the text proxy)
    pre_step_codes: bool = True  # official: the codes before the last Adam step (text_proxy.py `latent_in`)
    method: str = "optimisation"  # official: `steps` from the mean code; encoder: a text mapper (amortised.py)
    refinement: int = 0  # with method=encoder: steps of the official optimisation from the mapper's answer
    mask_steps: int | None = None  # a painted mask alone (ours, no text): its steps (None: `steps`)
    mask_lr: float | None = None  # and its rate (None: `lr`)


class TextProxy(nn.Module):
    """Hairstyle from text: the first rows of the mean code, optimised under CLIP and landmarks; or,
    with `method=encoder`, a text mapper's answer for them (plus `refinement` optimisation steps)."""

    def __init__(
        self,
        generator: nn.Module,
        clip_loss: CLIPLoss,
        landmarks: LandmarkLoss,
        segmenter: HairSegmenter | None,
        config: TextProxyConfig | None = None,
        mapper: nn.Module | None = None,
    ):
        super().__init__()
        borrow(self, generator=generator, segmenter=segmenter)
        self.clip_loss, self.landmarks = clip_loss, landmarks
        self.cfg = config or TextProxyConfig()
        condition = None
        if mapper is not None and clip_loss is not None:  # a mapper trained with another CLIP misreads
            t = clip_loss.clip.embed_dim
            condition = (t, f"CLIP's text embedding {t}")
        self.mapper = checked_mapper(self.cfg.method, mapper, "text", self.cfg.rows, condition)

    def objective(
        self,
        image: torch.Tensor,
        texts: Sequence[str] | None,
        source_heatmaps: torch.Tensor | None,
        painted_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The proxy's loss (N,) of the images G(codes): CLIP, landmarks and the painted mask, with
        the official weights; what the optimisation minimises and the mapper is trained on."""
        c = self.cfg
        loss = c.landmark_lambda * self.landmarks(source_heatmaps, image)
        if texts is not None:
            loss = loss + c.clip_lambda * self.clip_loss(image, texts)
        if painted_labels is not None:
            loss = loss + c.hair_mask_lambda * hair_mask_loss(self.segmenter, image, painted_labels)
        return loss

    def codes_with_rows(self, rows: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
        """The proxy's codes (N, n_latent, D): `rows` (N, k, D) first, the mean code's rows after them
        (the rows the optimisation leaves fixed); k = 0 gives the official start."""
        g = self.generator
        mean = latent_avg.reshape(-1)[-g.style_dim :].expand(rows.shape[0], g.n_latent, -1)
        return torch.cat([rows.to(mean.dtype), mean[:, rows.shape[1] :]], dim=1)

    def start(
        self, n: int, texts: Sequence[str] | None, latent_avg: torch.Tensor, source_codes: torch.Tensor | None
    ) -> torch.Tensor:
        """Where the optimisation starts (N, n_latent, D): the mean code (official), or with
        method=encoder the mapper's rows on it (a mask alone has no text: the mean code)."""
        official = self.codes_with_rows(latent_avg.new_zeros(n, 0, self.generator.style_dim), latent_avg)
        if self.cfg.method != "encoder" or texts is None:
            return official
        if source_codes is None:
            raise ValueError("editing.text.method=encoder reads the source's codes: pass source_codes")
        with torch.no_grad():
            rows = self.mapper_rows(texts, source_codes, latent_avg)
        return self.codes_with_rows(rows, latent_avg)

    def mapper_rows(self, texts: Sequence[str], source_codes: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
        """The mapper's answer (N, rows, D) for these texts and sources."""
        k, d = self.mapper.rows, self.generator.style_dim
        condition = F.normalize(self.clip_loss.clip.encode_text(list(texts)).float(), dim=-1)
        start = latent_avg.reshape(-1)[-d:].expand(len(texts), k, d)
        return self.mapper(condition, source_codes[:, :k], start, latent_avg)

    def optimise(
        self,
        source_images: torch.Tensor,
        texts: Sequence[str] | None,
        latent_avg: torch.Tensor,
        painted_labels: torch.Tensor | None = None,
        source_codes: torch.Tensor | None = None,
    ) -> ProxyResult:
        """`texts` None: no CLIP term (a painted mask alone drives the proxy; painted_labels needed).
        `source_codes` (N, n_latent, D): the source's W+ (read by method=encoder)."""
        c, g = self.cfg, self.generator
        n = source_images.shape[0]
        if texts is None and painted_labels is None:
            raise ValueError("the text proxy needs texts, a painted mask, or both")
        if texts is not None and len(texts) != n:
            raise ValueError(f"one text per source image: {len(texts)} texts, {n} images")
        if texts is not None:
            self.clip_loss.prepare(texts)
        start = self.start(n, texts, latent_avg, source_codes)
        steps, lr = (c.refinement if c.method == "encoder" else c.steps), c.lr
        if texts is None:  # a painted mask alone
            steps = c.steps if c.mask_steps is None else c.mask_steps
            lr = c.lr if c.mask_lr is None else c.mask_lr
        if steps == 0:
            return ProxyResult(start.detach().clone())
        _, free, fixed = _split_codes(start, 0, c.rows)
        with torch.no_grad():
            src_kp = self.landmarks.heatmaps(source_images)

        def loss_fn() -> torch.Tensor:
            return self.objective(g.synthesis(torch.cat([free, fixed], dim=1)), texts, src_kp, painted_labels)

        run = run_adam([free], lr, steps, loss_fn)
        (codes,) = run.result([free], c.pre_step_codes)
        return ProxyResult(torch.cat([codes, fixed], dim=1), run.losses)


# ---------------------------------------------------------------------------------- reference
@dataclass
class RefProxyConfig:
    steps: int = 200
    lr: float = 0.01
    style_lambda: float = 40000.0
    delta_w_lambda: float = 1000.0
    landmark_lambda: float = 1000.0
    hair_mask_lambda: float = 1.0
    rows: int = 6  # rows 0..5 of the reference's codes are optimised
    pre_step_codes: bool = True  # official: the codes before the last Adam step (ref_proxy.py `latent_in`)
    style_size: int = 256
    method: str = "optimisation"  # official: `steps` from the reference's codes; encoder: a reference mapper
    refinement: int = 0  # with method=encoder: steps of the official optimisation from the mapper's answer


@dataclass
class RefTargets:
    """What stays fixed while a reference proxy is optimised: the reference's 256 px image, hair mask
    and Gram matrices, the source's landmark heatmaps."""

    small: torch.Tensor
    hair: torch.Tensor
    grams: list[torch.Tensor]
    heatmaps: torch.Tensor | None


class RefProxy(nn.Module):
    """Hairstyle from a reference: its first rows optimised under the masked Gram style loss, a
    step-to-step delta-w loss and landmarks; or, with `method=encoder`, a reference mapper's answer
    for them (plus `refinement` optimisation steps)."""

    def __init__(
        self,
        generator: nn.Module,
        style_loss: StyleLoss,
        landmarks: LandmarkLoss,
        segmenter: HairSegmenter,
        config: RefProxyConfig | None = None,
        mapper: nn.Module | None = None,
    ):
        super().__init__()
        borrow(self, generator=generator, segmenter=segmenter)
        self.style_loss, self.landmarks = style_loss, landmarks
        self.cfg = config or RefProxyConfig()
        self.mapper = checked_mapper(self.cfg.method, mapper, "reference", self.cfg.rows)

    def image_and_hair(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """HairCLIPv2's `gen_256_img_hairmask`: nearest 256 px image and hair mask of the parser's 1024 output."""
        s = self.cfg.style_size
        return F.interpolate(images, size=(s, s)), self.segmenter.hair(images, size=s)

    def targets(self, source_images: torch.Tensor, ref_images: torch.Tensor) -> RefTargets:
        with torch.no_grad():
            small, hair = self.image_and_hair(ref_images)
            grams = self.style_loss.target_grams(small, hair)
            heatmaps = self.landmarks.heatmaps(source_images)
        return RefTargets(small, hair, grams, heatmaps)

    def objective(
        self, image: torch.Tensor, targets: RefTargets, painted_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The proxy's loss (N,) of the images G(codes) without the step-to-step delta-w term: style,
        landmarks and the painted mask, with the official weights."""
        c = self.cfg
        small, hair = self.image_and_hair(image)
        loss = c.style_lambda * self.style_loss(targets.small, small, targets.hair, hair, targets.grams)
        loss = loss + c.landmark_lambda * self.landmarks(targets.heatmaps, image)
        if painted_labels is not None:
            loss = loss + c.hair_mask_lambda * hair_mask_loss(self.segmenter, image, painted_labels)
        return loss

    def start(
        self, ref_codes: torch.Tensor, source_codes: torch.Tensor | None, latent_avg: torch.Tensor
    ) -> torch.Tensor:
        """Where the optimisation starts: the reference's codes (official), or with method=encoder
        the mapper's rows in place of their first rows."""
        if self.cfg.method != "encoder":
            return ref_codes
        if source_codes is None:
            raise ValueError("editing.reference.method=encoder reads the source's codes: pass source_codes")
        with torch.no_grad():
            return self.with_rows(self.mapper_rows(ref_codes, source_codes, latent_avg), ref_codes)

    @staticmethod
    def with_rows(rows: torch.Tensor, ref_codes: torch.Tensor) -> torch.Tensor:
        """The reference's codes with `rows` (N, k, D) in place of their first k rows."""
        return torch.cat([rows.to(ref_codes.dtype), ref_codes[:, rows.shape[1] :]], dim=1)

    def mapper_rows(
        self, ref_codes: torch.Tensor, source_codes: torch.Tensor, latent_avg: torch.Tensor
    ) -> torch.Tensor:
        """The mapper's answer (N, rows, D): the reference's first rows moved to suit the source."""
        k = self.mapper.rows
        reads = torch.cat([ref_codes[:, :k], source_codes[:, :k]], dim=1)
        return self.mapper(ref_codes.new_zeros(len(ref_codes), 0), reads, ref_codes[:, :k], latent_avg)

    def optimise(
        self,
        source_images: torch.Tensor,
        ref_images: torch.Tensor,
        ref_codes: torch.Tensor,
        painted_labels: torch.Tensor | None = None,
        source_codes: torch.Tensor | None = None,
        latent_avg: torch.Tensor | None = None,
    ) -> ProxyResult:
        """`source_codes` (N, n_latent, D) and `latent_avg`: read by method=encoder."""
        c, g = self.cfg, self.generator
        if ref_images.shape[0] != source_images.shape[0] or ref_codes.shape[0] != source_images.shape[0]:
            raise ValueError("one reference image and code per source image")
        if c.method == "encoder" and latent_avg is None:
            raise ValueError("editing.reference.method=encoder needs the mean code: pass latent_avg")
        start = self.start(ref_codes, source_codes, latent_avg)
        steps = c.refinement if c.method == "encoder" else c.steps
        if steps == 0:
            return ProxyResult(start.detach().clone())
        targets = self.targets(source_images, ref_images)
        _, free, fixed = _split_codes(start, 0, c.rows)
        prev = free.detach().clone()

        def loss_fn() -> torch.Tensor:
            nonlocal prev
            loss = self.objective(g.synthesis(torch.cat([free, fixed], dim=1)), targets, painted_labels)
            loss = loss + c.delta_w_lambda * (free - prev).pow(2).mean(dim=(1, 2))
            prev = free.detach().clone()  # the delta-w loss compares with the previous step's codes
            return loss

        run = run_adam([free], c.lr, steps, loss_fn)
        (codes,) = run.result([free], c.pre_step_codes)
        return ProxyResult(torch.cat([codes, fixed], dim=1), run.losses)


# ------------------------------------------------------------------------------------- colour
@dataclass
class ColourProxyConfig:
    edit_steps: int = 100
    final_steps: int = 100
    lr: float = 0.01
    clip_lambda: float = 1.0
    bg_lambda: float = 10.0
    avg_color_lambda_ref: float = 0.01  # HairCLIPv2 sets 0.01 for a reference image
    avg_color_lambda_rgb: float = 0.003  # and 0.003 for an RGB value
    hair_mse_lambda: float = 500.0
    not_hair_mse_lambda: float = 10.0
    hair_lpips_lambda: float = 1.0
    edit_rows: tuple[int, int] = (9, 13)  # rows optimised in the colour edit
    final_rows: tuple[int, int] = (11, 18)  # rows optimised (with the colour feature) in the final step
    augment: bool = False  # HairCLIPv2's colour proxy uses the plain CLIP loss
    # Official (color_proxy.py): the colour codes, and the final codes, from before the last Adam step
    # (`color_latent_in`, `final_latent_in`); the final colour feature after it (`latent_F_final`).
    pre_step_codes: bool = True
    # official: the edit and final optimisations; encoder: a colour mapper answers the edit rows, then
    # `refinement` steps of each, the final ones blended and resumed with the RGB skip
    # (FeatureBlender.colour_with_skip: at 0 steps the source's picture outside the hair)
    method: str = "optimisation"
    refinement: int = 0
    # ours: the final phase's refinement steps (None: `refinement`) and the refinement's Adam rates
    # (edit rows, final rows, final feature; None: `lr` for each). The mapper's colour is the far part:
    # the edit rows gain from more steps at a higher rate, the final feature loses from one.
    refinement_final: int | None = None
    refinement_lr: tuple[float, float, float] | None = None
    # ours: Gauss-Newton steps (optim.gauss_newton) that solve an RGB or reference condition's average
    # Lab colour on the picture the edit returns (the RGB-skip blend), at the smallest move of the edit
    # rows, from the colour mapper's answer (method=encoder) or the source's own rows (method=
    # optimisation: no mapper file). Solved samples take no Adam step; text conditions are not solved.
    # 0: off (HairCLIPv2's edit).
    # `lab_solve_mask`: the solved samples' colour feature is blended with weight 1 in the parsed hair
    # and 1/2 in the ring that HairCLIPv2's enlarged mask adds ("soft"); as HairCLIPv2's, inside the
    # enlarged hair ("enlarged"), whose ring then takes the solved colour (HairCLIPv2's background
    # term and final steps keep it); or inside the parsed hair ("hair"), whose edge then keeps the
    # old colour.
    # `lab_solve_ring`: the enlarged mask's non-hair ring also keeps its mean colour (HairCLIPv2's
    # background term in three numbers); off, as a mean is kept by opposite colours: blotches.
    lab_solve: int = 0
    lab_solve_mask: str = "soft"
    lab_solve_ring: bool = False
    lab_solve_spread: bool = False  # also the hair's Lab spread at the source hair's (an even colour)
    lab_solve_damping: float = 1.0
    # then Adam steps of HairCLIPv2's final fit that keep the solved hair and bring the rest back to the
    # edited image (0: off)
    lab_solve_final: int = 0

    def __post_init__(self) -> None:
        if min(self.lab_solve, self.lab_solve_damping, self.lab_solve_final) < 0:
            raise ValueError(
                "editing.colour.lab_solve, lab_solve_damping and lab_solve_final must be >= 0, got "
                f"{self.lab_solve}, {self.lab_solve_damping}, {self.lab_solve_final}"
            )
        if self.lab_solve_ring and self.lab_solve_mask != "enlarged":
            raise ValueError(
                "editing.colour.lab_solve_ring keeps the enlarged mask's ring: set lab_solve_mask=enlarged"
            )
        if self.lab_solve_mask not in LAB_SOLVE_MASKS:
            raise ValueError(
                f"editing.colour.lab_solve_mask: expected one of {LAB_SOLVE_MASKS}, found {self.lab_solve_mask!r}"
            )
        lrs = self.refinement_lr
        if lrs is not None and (len(lrs) != 3 or min(lrs) <= 0):
            raise ValueError(f"editing.colour.refinement_lr must be three rates > 0, got {lrs}")
        if self.refinement_final is not None and self.refinement_final < 0:
            raise ValueError(f"editing.colour.refinement_final must be >= 0, got {self.refinement_final}")

    def schedule(self, encoder: bool) -> tuple[tuple[int, int], tuple[float, float, float]]:
        """((edit steps, final steps), (lr of the edit rows, of the final rows, of the final feature)):
        the official optimisations', or the refinement's after a colour mapper."""
        if not encoder:
            return (self.edit_steps, self.final_steps), (self.lr,) * 3
        final = self.refinement if self.refinement_final is None else self.refinement_final
        lrs = tuple(self.refinement_lr) if self.refinement_lr is not None else (self.lr,) * 3
        return (self.refinement, final), lrs


@dataclass
class ColourCondition:
    """One sample's colour target: a text, a reference image (3, H, W) in [-1, 1], or an RGB triple."""

    text: str | None = None
    image: torch.Tensor | None = None
    rgb: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.text, self.image, self.rgb)]
        if sum(given) != 1:
            raise ValueError("a colour condition is exactly one of: text, reference image, RGB value")
        if self.text is not None and not self.text.strip():
            raise ValueError("the colour text is empty")
        if self.rgb is not None:
            if len(self.rgb) != 3 or any(not isinstance(v, (int, float)) or not 0 <= v <= 255 for v in self.rgb):
                raise ValueError(f"an RGB colour must be three values in [0, 255], got {self.rgb!r}")

    @property
    def kind(self) -> str:
        return "text" if self.text is not None else "ref" if self.image is not None else "rgb"

    def target(self, size: int, device: torch.device) -> torch.Tensor:
        """The average-colour target: the reference image, or the RGB value as a 1x1 image, in [-1, 1]."""
        if self.image is not None:
            return F.interpolate(self.image[None].to(device), size=(size, size), mode="bilinear", align_corners=False)
        return (torch.tensor(self.rgb, dtype=torch.float32, device=device).view(1, 3, 1, 1) / 127.5) - 1


@dataclass
class ColourResult:
    image: torch.Tensor  # the final edited image
    codes: torch.Tensor  # final W+ codes
    feature: torch.Tensor  # final colour feature
    # the blend mask (N, 1, H, W): the enlarged hair (lab_solve_mask=hair or soft: the solved samples' own)
    hair_mask: torch.Tensor
    colour_codes: torch.Tensor | None = None  # after the colour edit, before blending
    colour_image: torch.Tensor | None = None
    edit_losses: list[torch.Tensor] = field(default_factory=list)
    final_losses: list[torch.Tensor] = field(default_factory=list)
    # editing.colour.lab_solve: the solved samples' residuals (N_solved, 3 or 6) before each step and after
    solve_residuals: list[torch.Tensor] = field(default_factory=list)
    # editing.colour.lab_solve_final: the solved samples' refit losses (N_solved,) per step
    refit_losses: list[torch.Tensor] = field(default_factory=list)


class ColourProxy(nn.Module):
    """Hair colour: rows of the source's codes optimised (CLIP text, or average Lab colour) with a
    background loss, the colour feature blended inside the edited hair, then the later rows and the
    feature optimised to keep hair (MSE + LPIPS) and the rest (MSE)."""

    def __init__(
        self,
        blender: FeatureBlender,
        segmenter: HairSegmenter,
        clip_loss: CLIPLoss | None,
        avg_lab: AvgLabLoss,
        background: BackgroundLoss,
        lpips: LPIPSLoss,
        config: ColourProxyConfig | None = None,
        mapper: nn.Module | None = None,
    ):
        super().__init__()
        borrow(self, blender=blender, segmenter=segmenter, lpips=lpips)
        self.clip_loss, self.avg_lab, self.background = clip_loss, avg_lab, background
        self.cfg = config or ColourProxyConfig()
        lo, hi = self.edit_span
        condition = None
        if mapper is not None and clip_loss is not None:  # a mapper trained with another CLIP misreads
            t = clip_loss.clip.embed_dim
            condition = (t + COLOUR_CONDITION, f"CLIP's text embedding {t}, a Lab colour 3, a text flag")
        self.mapper = checked_mapper(self.cfg.method, mapper, "colour", hi - lo, condition)

    @property
    def edit_span(self) -> tuple[int, int]:
        """The rows [lo, hi) the colour edit frees, within the generator's."""
        lo, hi = self.cfg.edit_rows
        return lo, min(hi, self.blender.generator.n_latent)

    def target_labs(
        self, conditions: Sequence[ColourCondition], size: int, device: torch.device
    ) -> torch.Tensor | None:
        """Average Lab colours (K, 3) of the reference / RGB conditions, in order; None if all are text."""
        targets = [self.avg_lab.hair_lab(cond.target(size, device)) for cond in conditions if cond.kind != "text"]
        return torch.cat(targets) if targets else None

    def condition_loss(
        self, conditions: Sequence[ColourCondition], images: torch.Tensor, target_labs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample colour term: CLIP for text conditions, average Lab for the others."""
        c = self.cfg
        loss = images.new_zeros(images.shape[0])
        kinds = [cond.kind for cond in conditions]
        text_idx = [i for i, k in enumerate(kinds) if k == "text"]
        if text_idx:
            if self.clip_loss is None:
                raise ValueError("a text colour condition needs a CLIP loss")
            loss = loss.index_add(
                0,
                torch.tensor(text_idx, device=images.device),
                c.clip_lambda * self.clip_loss(images[text_idx], [conditions[i].text for i in text_idx]),
            )
        lab_idx = [i for i, k in enumerate(kinds) if k != "text"]
        if lab_idx:
            if target_labs is None:
                target_labs = self.target_labs(conditions, images.shape[-1], images.device)
            lam = torch.tensor(
                [c.avg_color_lambda_ref if kinds[i] == "ref" else c.avg_color_lambda_rgb for i in lab_idx],
                device=images.device,
            )
            idx = torch.tensor(lab_idx, device=images.device)
            loss = loss.index_add(0, idx, lam * self.avg_lab(None, images[lab_idx], target_lab=target_labs))
        return loss

    def edit_objective(
        self,
        conditions: Sequence[ColourCondition],
        image: torch.Tensor,
        edited_image: torch.Tensor,
        edited_hair: torch.Tensor,
        target_labs: torch.Tensor | None,
    ) -> torch.Tensor:
        """The colour edit's loss (N,) of the images resumed from its codes: the background kept
        outside the edited image's hair, and the colour condition, with the official weights."""
        background = self.background(edited_image.detach(), image, edited_hair)
        return self.cfg.bg_lambda * background + self.condition_loss(conditions, image, target_labs)

    @property
    def lab_gains(self) -> bool:
        """Whether the mapper answers Lab gains: the source hair's Lab in, the Lab change asked as gains."""
        return self.mapper is not None and self.mapper.n_gains == LAB_GAINS

    def mapper_condition(
        self,
        conditions: Sequence[ColourCondition],
        target_labs: torch.Tensor | None,
        device: torch.device,
        source_labs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The colour mapper's condition (N, T + 4): CLIP's normalised text embedding (T) for a text,
        a Lab colour / 100 (3) and a text flag. The Lab is the target's for a reference or an RGB
        value, or with Lab gains the source hair's (`source_labs` (N, 3)) for every condition."""
        t = self.mapper.config["condition_dim"] - COLOUR_CONDITION
        out = torch.zeros(len(conditions), t + COLOUR_CONDITION, device=device)
        text_idx = [i for i, cond in enumerate(conditions) if cond.kind == "text"]
        lab_idx = [i for i, cond in enumerate(conditions) if cond.kind != "text"]
        if text_idx:
            texts = [conditions[i].text for i in text_idx]
            out[text_idx, :t] = F.normalize(self.clip_loss.clip.encode_text(texts).float(), dim=-1)
            out[text_idx, -1] = 1
        if self.lab_gains:
            out[:, t : t + 3] = source_labs.float() / 100
        elif lab_idx:
            out[lab_idx, t : t + 3] = target_labs.float() / 100
        return out

    def mapper_gains(
        self, conditions: Sequence[ColourCondition], target_labs: torch.Tensor | None, source_labs: torch.Tensor
    ) -> torch.Tensor:
        """The Lab gains (N, 4): (target - source hair) Lab / 100 for a reference or an RGB value,
        (0, 0, 0, 1) for a text."""
        gains = torch.zeros(len(conditions), LAB_GAINS, device=source_labs.device)
        lab_idx = [i for i, cond in enumerate(conditions) if cond.kind != "text"]
        text_idx = [i for i, cond in enumerate(conditions) if cond.kind == "text"]
        if lab_idx:
            gains[lab_idx, :3] = (target_labs.float() - source_labs[lab_idx].float()) / 100
        gains[text_idx, 3] = 1
        return gains

    def mapper_rows(
        self,
        conditions: Sequence[ColourCondition],
        target_labs: torch.Tensor | None,
        src_codes: torch.Tensor,
        latent_avg: torch.Tensor,
        source_labs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The mapper's answer for the edit rows (N, hi - lo, D), from the source's own rows;
        `source_labs` (N, 3): the average Lab of the edited image's hair (needed with Lab gains)."""
        lo, hi = self.edit_span
        rows = src_codes[:, lo:hi]
        if self.lab_gains and source_labs is None:
            raise ValueError("a colour mapper with Lab gains needs the source hair's Lab (source_labs)")
        condition = self.mapper_condition(conditions, target_labs, src_codes.device, source_labs)
        gains = self.mapper_gains(conditions, target_labs, source_labs) if self.lab_gains else None
        return self.mapper(condition, rows, rows, latent_avg, gains)

    def solve_lab(
        self,
        rows: torch.Tensor,
        edited_image: torch.Tensor,
        src_codes: torch.Tensor,
        feature: torch.Tensor,
        target_labs: torch.Tensor,
        hair_mask: torch.Tensor,
        hair: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(edit rows, residuals per step) that give the returned picture's hair the target Lab colours
        (`lab_solve`), the colour feature blended inside `hair_mask` (the enlarged one when the ring is
        held); `hair`: the edited image's parsed hair. Every argument is the solved samples' own."""
        b, c = self.blender, self.cfg
        lo, hi = self.edit_span
        head, tail = src_codes[:, :lo], src_codes[:, hi:]
        with torch.no_grad():  # what the steps do not change: the masks, the source's colour parts
            source = b.colour_parts(src_codes, feature)
            ring = (hair_mask - hair).clamp(0, 1)
            lab = rgb_to_lab((edited_image + 1) / 2)
            ring_lab = masked_mean(lab, ring)
            spread = masked_spread(lab, hair)

        def residuals(free: torch.Tensor) -> torch.Tensor:
            parts = b.colour_parts(torch.cat([head, free, tail], dim=1), feature)
            image = b.colour_resume(src_codes, *b.blend_colour(parts, source, hair_mask))
            r = self.avg_lab.hair_lab(image) - target_labs.float()
            if c.lab_solve_ring:
                r = torch.cat([r, masked_mean(rgb_to_lab((image + 1) / 2), ring) - ring_lab], dim=1)
            if c.lab_solve_spread:
                result_hair = self.segmenter.hair(image)
                r = torch.cat([r, masked_spread(rgb_to_lab((image + 1) / 2), result_hair) - spread], dim=1)
            return r

        return gauss_newton(residuals, rows, c.lab_solve, c.lab_solve_damping)

    def fit_final(
        self,
        src_codes: torch.Tensor,
        colour_feature: torch.Tensor,
        skip: torch.Tensor | None,
        hair_target: torch.Tensor,
        hair_mask: torch.Tensor,
        edited_image: torch.Tensor,
        steps: int,
        lrs: tuple[float, float],
        weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """HairCLIPv2's final colour step: the final rows and the colour feature fitted to `hair_target`
        inside `hair_mask` (MSE and LPIPS) and to the edited image outside it (MSE). Returns (codes,
        feature, losses per step); `weight` (N,) scales each sample's loss (0: the sample stays)."""
        c, b = self.cfg, self.blender
        lo, hi = c.final_rows
        n = self.blender.generator.n_latent
        head, free, tail = _split_codes(src_codes, min(lo, n), min(hi, n))
        feature = colour_feature.float().clone().requires_grad_(True)
        inside, outside = hair_target.detach() * hair_mask, edited_image.detach() * (1 - hair_mask)

        def loss_fn() -> torch.Tensor:
            image = b.colour_resume(torch.cat([head, free, tail], dim=1), feature, skip)
            hair_mse = (image * hair_mask - inside).pow(2).mean(dim=(1, 2, 3))
            rest_mse = (image * (1 - hair_mask) - outside).pow(2).mean(dim=(1, 2, 3))
            hair_lpips = self.lpips.distance(image * hair_mask, inside)
            loss = c.hair_mse_lambda * hair_mse + c.not_hair_mse_lambda * rest_mse + c.hair_lpips_lambda * hair_lpips
            return loss if weight is None else loss * weight

        run = run_adam([free, feature], lrs, steps, loss_fn)
        final, _ = run.result([free, feature], c.pre_step_codes)
        return torch.cat([head, final, tail], dim=1), feature.detach(), run.losses

    def refit_solved(
        self,
        idx: torch.Tensor,
        codes: torch.Tensor,
        feature: torch.Tensor,
        skip: torch.Tensor,
        edited_hair: torch.Tensor,
        edited_image: torch.Tensor,
        lrs: tuple[float, float],
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """`lab_solve_final` steps of the final fit for the solved samples `idx`: their returned picture
        kept inside the edited image's own hair (the solved colour), the edited image outside it (where
        the blend's ring took some of the solved colour and the embedding has its own errors).
        `codes`, `feature`: the batch's after the final fit, which leaves the solved samples as the
        solve gave them. Returns them with the solved samples' refitted, and the refit's losses."""
        with torch.no_grad():
            solved_image = self.blender.colour_resume(codes[idx], feature[idx], skip[idx])
        refit_codes, refit_feature, losses = self.fit_final(
            codes[idx],
            feature[idx],
            skip[idx],
            solved_image,
            edited_hair[idx],
            edited_image[idx],
            self.cfg.lab_solve_final,
            lrs,
        )
        return codes.index_copy(0, idx, refit_codes), feature.index_copy(0, idx, refit_feature), losses

    def edit(
        self,
        conditions: Sequence[ColourCondition],
        edited_image: torch.Tensor,
        src_codes: torch.Tensor,
        feature: torch.Tensor,
        latent_avg: torch.Tensor | None = None,
    ) -> ColourResult:
        """`latent_avg`: the mean code, read by method=encoder."""
        c, b = self.cfg, self.blender
        if len(conditions) != edited_image.shape[0]:
            raise ValueError(f"one colour condition per image: {len(conditions)} for {edited_image.shape[0]}")
        encoder = c.method == "encoder"
        (edit_steps, final_steps), (edit_lr, final_lr, feature_lr) = c.schedule(encoder)
        if encoder and latent_avg is None:
            raise ValueError("editing.colour.method=encoder needs the mean code: pass latent_avg")
        head, free, tail = _split_codes(src_codes, *self.edit_span)
        feature = feature.detach()

        # What stays fixed during the edit is computed once: the edited image's hair, the targets' colours.
        edited_hair = self.segmenter.hair(edited_image)
        target_labs = self.target_labs(conditions, edited_image.shape[-1], edited_image.device)
        if encoder:
            with torch.no_grad():
                source_labs = self.avg_lab.hair_lab(edited_image, edited_hair)
                rows = self.mapper_rows(conditions, target_labs, src_codes, latent_avg, source_labs)
                free = nn.Parameter(rows.to(free.dtype))
        solved = [i for i, cond in enumerate(conditions) if cond.kind != "text"] if c.lab_solve else []
        idx = torch.tensor(solved, dtype=torch.long, device=src_codes.device)
        with torch.no_grad():
            parsed, hair_mask = b.colour_hair_masks(edited_image)
            if solved and c.lab_solve_mask != "enlarged":
                own = parsed if c.lab_solve_mask == "hair" else (parsed + hair_mask) / 2
                hair_mask = hair_mask.index_copy(0, idx, own[idx])
        residuals: list[torch.Tensor] = []
        if solved:
            rows, residuals = self.solve_lab(
                free[idx],
                edited_image[idx],
                src_codes[idx],
                feature[idx],
                target_labs,
                hair_mask[idx],
                edited_hair[idx],
            )
            free = nn.Parameter(free.detach().index_copy(0, idx, rows.to(free.dtype)))
            if len(solved) == len(conditions):
                edit_steps = final_steps = 0
        # zero losses, zero gradients: Adam leaves the solved samples' rows and feature as they are
        unsolved = torch.ones(len(conditions), device=src_codes.device).index_fill(0, idx, 0)

        def edit_loss() -> torch.Tensor:
            image = b.resume(torch.cat([head, free, tail], dim=1), feature)
            loss = self.edit_objective(conditions, image, edited_image, edited_hair, target_labs)
            return loss * unsolved if solved else loss

        edit_run = run_adam([free], edit_lr, edit_steps, edit_loss)
        (edited,) = edit_run.result([free], c.pre_step_codes)
        colour_codes = torch.cat([head, edited, tail], dim=1)
        with torch.no_grad():
            colour_image = b.resume(colour_codes, feature)
            # blended with the RGB skip: the source outside the hair, before any final step. The
            # official samples resume without it (HairCLIPv2's final steps repair it): a zero skip.
            colour_feature, skip, _ = b.colour_with_skip(edited_image, src_codes, colour_codes, feature, hair_mask)
            if not encoder:
                skip = skip * (1 - unsolved).view(-1, 1, 1, 1) if solved else None
        lrs = (final_lr, feature_lr)
        weight = unsolved if solved else None
        codes, final_feature, final_losses = self.fit_final(
            src_codes, colour_feature, skip, colour_image, hair_mask, edited_image, final_steps, lrs, weight
        )
        refit_losses: list[torch.Tensor] = []
        if solved and c.lab_solve_final:  # the final fit left them as they were: the solve's answer
            codes, final_feature, refit_losses = self.refit_solved(
                idx, codes, final_feature, skip, edited_hair, edited_image, lrs
            )
        with torch.no_grad():
            image = b.colour_resume(codes, final_feature, skip)
        return ColourResult(
            image,
            codes,
            final_feature,
            hair_mask,
            colour_codes,
            colour_image,
            edit_run.losses,
            final_losses,
            residuals,
            refit_losses,
        )
