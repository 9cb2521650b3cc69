"""Hair-edit metrics as torchmetrics (reduced over DDP ranks) and the callback that attaches them.

Non-hair consistency between source x and result y is measured outside the union of both hair
masks dilated by the HairCLIPv2 kernel (30 px at 512 px, scaled with the image size):
    keep = 1 - dilate(hair(x) | hair(y))
- `nonhair_psnr`: PSNR of the pixels in `keep` (images in [0, 1]); identical pixels give
  PSNR_CAP = 100 dB instead of infinity.
- `nonhair_ssim`, `nonhair_lpips`: SSIM / LPIPS between x and y composited with x outside `keep`
  (y * keep + x * (1 - keep)), so that only non-hair pixels can differ.
  The three are NaN (n/a in the report, left out of the means) when neither x nor y has any hair:
  they would repeat the whole-image numbers.
- `identity`: identity cosine similarity (IR-SE50 or facenet) of x and y.
- `identity_dlib`, `identity_dlib_distance` (with `metrics.identity=dlib`): cosine similarity and
  Euclidean distance of dlib's face-recognition descriptors of x and y (a trained network that
  installs offline; a distance below 0.6 is dlib's "same person").
- `clip_score` (text edits): 100 * max(cos(CLIP(y), CLIP(text)), 0), as torchmetrics' CLIPScore.
- `hair_similarity` (reference edits): cosine of the CLIP embeddings of the hair regions of y and of
  the reference (image * hair mask); NaN when either has no hair (two black pictures agree: 1).
- whole-image `psnr`, `ssim`, `ms_ssim`, `lpips` and `l2` (MSE of images in [0, 1]) of y against x:
  the inversion table's metrics (SFE, CVPR'24, Table 1) and the hair-transfer table's (Stable-Hair,
  Table 1); MS-SSIM uses as many of its five scales as the image size allows (all five from 176 px).
- `clip_i` (reference edits): cosine of the CLIP embeddings of y and of the whole reference image.
- `seconds_per_edit`;
- with ground truth (the world's pairs: `target`, `target_hair`, `source_hair`), the gt_* metrics of
  `hairclipv2/evaluation/ground_truth.py` (NaN where one does not apply, left out of the means).
The callback reads edits from `outputs["output"]` (an EditOutput) and `outputs["batch"]` of
`predict_step` (or `validation_step`), stores the per-edit values in `outputs["metrics"]` for the
report writer, and logs the means.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional.image import structural_similarity_index_measure

from hairclipv2 import masks as M
from hairclipv2.evaluation.dlib_identity import DlibIdentity
from hairclipv2.evaluation.ground_truth import GT_METRICS, ground_truth_metrics

PSNR_CAP = 100.0
METRICS = (
    "nonhair_psnr",
    "nonhair_ssim",
    "nonhair_lpips",
    "identity",
    "identity_dlib",
    "identity_dlib_distance",
    "clip_score",
    "hair_similarity",
    "clip_i",
    "psnr",
    "ssim",
    "ms_ssim",
    "lpips",
    "l2",
    "seconds_per_edit",
    *GT_METRICS,
)
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # torchmetrics' (Wang et al. 2003)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, kernel_size: int = 11) -> torch.Tensor:
    """MS-SSIM per sample of images in [0, 1], with the scales the size allows (each halves it; the
    coarsest must exceed the kernel), the weights of the scales kept renormalised."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    scales = len(MS_SSIM_BETAS)
    while scales > 1 and x.shape[-1] <= (kernel_size - 1) * 2 ** (scales - 1):
        scales -= 1
    betas = torch.tensor(MS_SSIM_BETAS[:scales])
    return multiscale_structural_similarity_index_measure(
        x, y, data_range=1.0, kernel_size=kernel_size, betas=tuple((betas / betas.sum()).tolist()), reduction="none"
    )


def keep_mask(source_hair: torch.Tensor, result_hair: torch.Tensor) -> torch.Tensor:
    """1 outside the dilated union of both hair masks (N, 1, H, W)."""
    union = torch.maximum(source_hair, result_hair)
    k = M.dilate_kernel(union.shape[-1])
    return 1 - F.max_pool2d(F.pad(union, (k // 2, k - 1 - k // 2, k // 2, k - 1 - k // 2)), k, stride=1)


def has_pixels(mask: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the (N, 1, H, W) mask covers any pixel."""
    return mask.flatten(1).amax(1) > 0


def masked_psnr(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) over the kept pixels of images in [-1, 1], per sample, capped at PSNR_CAP."""
    err = (((x - y) / 2) ** 2 * keep).sum(dim=(1, 2, 3)) / (keep.sum(dim=(1, 2, 3)) * x.shape[1]).clamp_min(1)
    psnr = 10 * torch.log10(1 / err.clamp_min(1e-30))
    return torch.where(err > 0, psnr.clamp(max=PSNR_CAP), torch.full_like(psnr, PSNR_CAP))


def composite(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return y * keep + x * (1 - keep)


class HairEditMetrics(nn.Module):
    """Per-edit values and their running means (MeanMetric: synced over DDP ranks)."""

    def __init__(
        self,
        lpips: nn.Module,
        identity: nn.Module,
        clip: nn.Module | None = None,
        dlib_identity: DlibIdentity | None = None,
    ):
        super().__init__()
        self.lpips, self.identity, self.clip, self.dlib_identity = lpips, identity, clip, dlib_identity
        self.means = nn.ModuleDict({name: MeanMetric(nan_strategy="ignore") for name in METRICS})

    def clip_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings of images in [-1, 1], bilinearly resized to 224."""
        return self.clip.encode_image(F.interpolate((images + 1) / 2, size=224, mode="bilinear", align_corners=False))

    @torch.no_grad()
    def per_edit(
        self,
        source: torch.Tensor,
        result: torch.Tensor,
        source_hair: torch.Tensor,
        result_hair: torch.Tensor,
        texts: list[str] | None = None,
        reference: torch.Tensor | None = None,
        reference_hair: torch.Tensor | None = None,
        truth: dict[str, torch.Tensor] | None = None,
        colour: bool = False,
    ) -> dict[str, torch.Tensor]:
        """`truth`: {"target", "target_hair", "source_hair"} (the exact answer, its hair and the
        source's exact hair); `colour`: the edit asked for a colour (adds gt_colour_de2000)."""
        keep = keep_mask(source_hair, result_hair)
        mixed = composite(source, result, keep)
        values = {
            "nonhair_psnr": masked_psnr(source, result, keep),
            "nonhair_ssim": structural_similarity_index_measure(
                (mixed + 1) / 2, (source + 1) / 2, data_range=1.0, reduction="none"
            ),
            "nonhair_lpips": self.lpips.distance(mixed, source),
            "identity": self.identity.similarity(result, source),
            "psnr": masked_psnr(source, result, torch.ones_like(source_hair)),
            "ssim": structural_similarity_index_measure(
                (result + 1) / 2, (source + 1) / 2, data_range=1.0, reduction="none"
            ),
            "ms_ssim": ms_ssim((result + 1) / 2, (source + 1) / 2),
            "lpips": self.lpips.distance(result, source),
            "l2": ((result - source) / 2).pow(2).mean(dim=(1, 2, 3)),
        }
        if self.dlib_identity is not None:
            a, b = self.dlib_identity.descriptors(result), self.dlib_identity.descriptors(source)
            values["identity_dlib"] = F.cosine_similarity(a, b, dim=1)
            values["identity_dlib_distance"] = (a - b).norm(dim=1)
        if self.clip is not None and texts is not None:
            image = F.normalize(self.clip_embedding(result), dim=-1)
            text = F.normalize(self.clip.encode_text(texts), dim=-1)
            values["clip_score"] = 100 * (image * text).sum(-1).clamp_min(0)
        if self.clip is not None and reference is not None and reference_hair is not None:
            a, b = self.clip_embedding(result * result_hair), self.clip_embedding(reference * reference_hair)
            both = (has_pixels(result_hair) & has_pixels(reference_hair)).to(a.device)
            values["hair_similarity"] = F.cosine_similarity(a, b, dim=-1).where(both, torch.nan)
        if self.clip is not None and reference is not None:
            values["clip_i"] = F.cosine_similarity(self.clip_embedding(result), self.clip_embedding(reference), dim=-1)
        if truth is not None:
            gt = ground_truth_metrics(
                result,
                truth["target"],
                truth["source_hair"],
                truth["target_hair"],
                result_hair,
                lpips=self.lpips.distance,
                colour=colour,
            )
            values.update({k: v.to(result.device) for k, v in gt.items()})
        # no hair in the source nor in the result: "outside the hair" is the whole picture, and the
        # non-hair numbers would repeat the whole-image ones as if they measured consistency: n/a (NaN)
        found = (has_pixels(source_hair) | has_pixels(result_hair)).to(result.device)
        for name in ("nonhair_psnr", "nonhair_ssim", "nonhair_lpips"):
            values[name] = values[name].reshape(-1).where(found, torch.nan)
        for name, v in values.items():
            self.means[name].update(v)
        return values

    def compute(self) -> dict[str, float]:
        """Means of the metrics that received values (reduced over ranks)."""
        return {name: float(m.compute()) for name, m in self.means.items() if m.update_called}

    def reset(self) -> None:
        for m in self.means.values():
            m.reset()


class HairMetricsCallback(pl.Callback):
    """Attaches HairEditMetrics to any module whose predict (or validation) step returns
    {"output": EditOutput, "batch": {...}}."""

    def __init__(self, metrics: HairEditMetrics, hair_of: Any = None):
        self.metrics = metrics
        self.hair_of = hair_of  # images -> hair masks (the editor's parser), for reference images
        self.summary: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.metrics.to(pl_module.device)

    def _update(self, outputs: Any) -> None:
        out = outputs.get("output") if isinstance(outputs, dict) else None
        if out is None:
            return
        batch = outputs["batch"]
        reference = batch.get("reference")
        values = self.metrics.per_edit(
            batch["source"],
            out.result,
            out.source_hair,
            out.result_hair,
            texts=list(batch["text"]) if "text" in batch else None,
            reference=reference,
            reference_hair=self.hair_of(reference) if reference is not None and self.hair_of is not None else None,
            truth={k: batch[k] for k in ("target", "target_hair", "source_hair")} if "target" in batch else None,
            colour=batch.get("kind") == "colour",
        )
        n = out.result.shape[0]
        seconds = torch.full((n,), sum(out.seconds.values()) / n, device=out.result.device)
        self.metrics.means["seconds_per_edit"].update(seconds)
        values["seconds_per_edit"] = seconds
        outputs["metrics"] = {k: v.detach().cpu() for k, v in values.items()}

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs)

    def _finish(self, pl_module: pl.LightningModule) -> None:
        self.summary = self.metrics.compute()
        self.metrics.reset()

    def on_predict_end(self, trainer, pl_module) -> None:
        self._finish(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            summary = self.metrics.compute()
            self.metrics.reset()
            self.summary = summary
            for name, value in summary.items():
                pl_module.log(f"val/edit_{name}", value, sync_dist=False)
