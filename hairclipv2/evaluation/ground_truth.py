"""Ground-truth metrics: an edit against the exact picture the world says it should give.

On the world (`hairclipv2/world`) every edit has a known answer: the source's face with the
reference's hair, with the asked colour, or bald. These compare a result with that target, per image:

- `gt_psnr_hair`: PSNR (dB) inside the target's hair (what was asked for came out right);
- `gt_psnr_nonhair`: PSNR where neither the target's nor the source's hair covers any part of a
  pixel (what should not move);
- `gt_lpips`: LPIPS of the whole picture against the target (a distance network passed in);
- `gt_hair_iou`: IoU of the result's hair (as the parser sees it) with the target's exact hair;
- `gt_colour_de2000`: CIEDE2000 between the mean colour of the result's hair and the mean colour of
  the target's hair (colour edits; both means over the pixels the masks cover fully).

Images (N, 3, H, W) in [-1, 1]; hair masks (N, 1, H, W) in [0, 1]. PSNR over an empty region is
NaN (the metric does not apply), never a number that looks like a result.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import deltaE_ciede2000, rgb2lab

GT_METRICS = ("gt_psnr_hair", "gt_psnr_nonhair", "gt_lpips", "gt_hair_iou", "gt_colour_de2000")


def region_psnr(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, images in [-1, 1]) over the pixels where `region` (N, 1, H, W) is 1, per sample;
    NaN where the region is empty."""
    weight = region.expand_as(x)
    count = weight.sum(dim=(1, 2, 3))
    err = (((x - y) / 2) ** 2 * weight).sum(dim=(1, 2, 3)) / count.clamp_min(1)
    psnr = 10 * torch.log10(1 / err.clamp_min(1e-10))
    return torch.where(count > 0, psnr, torch.full_like(psnr, float("nan")))


def hair_overlap(
    result_hair: torch.Tensor, target_hair: torch.Tensor, dim: tuple[int, ...] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(intersection, union) pixel counts of two hair masks (coverage or bool) thresholded at 0.5:
    summed over `dim`, or over everything (pooled, as the training modules' IoU adds them up)."""
    a, b = result_hair > 0.5, target_hair > 0.5
    both, either = (a & b).float(), (a | b).float()
    return (both.sum(), either.sum()) if dim is None else (both.sum(dim=dim), either.sum(dim=dim))


def hair_iou(result_hair: torch.Tensor, target_hair: torch.Tensor) -> torch.Tensor:
    """IoU of two hair masks thresholded at 0.5, per sample; 1 when both are empty (bald and bald)."""
    inter, union = hair_overlap(result_hair, target_hair, dim=(1, 2, 3))
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mean_hair_colour(images: torch.Tensor, hair: torch.Tensor) -> torch.Tensor:
    """(N, 3) mean RGB in [0, 1] over the fully covered hair pixels (coverage >= 0.99); NaN if none."""
    full = (hair >= 0.99).float()
    count = full.sum(dim=(1, 2, 3))
    mean = ((images + 1) / 2 * full).sum(dim=(2, 3)) / count.clamp_min(1)[:, None]
    return torch.where(count[:, None] > 0, mean, torch.full_like(mean, float("nan")))


def ciede2000(rgb_a: torch.Tensor, rgb_b: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference of sRGB colours (N, 3) in [0, 1] (skimage's implementation)."""
    lab = [rgb2lab(c.detach().double().cpu().numpy().clip(0, 1).reshape(-1, 1, 3)) for c in (rgb_a, rgb_b)]
    de = deltaE_ciede2000(lab[0], lab[1]).reshape(-1)
    de[np.isnan(rgb_a.detach().cpu().numpy()).any(1) | np.isnan(rgb_b.detach().cpu().numpy()).any(1)] = np.nan
    return torch.from_numpy(de).float()


def ground_truth_metrics(
    result: torch.Tensor,
    target: torch.Tensor,
    source_hair: torch.Tensor,  # the source's exact hair coverage
    target_hair: torch.Tensor,
    result_hair: torch.Tensor,
    lpips=None,
    colour: bool = False,
) -> dict[str, torch.Tensor]:
    """Every ground-truth metric of a batch of results (see the module docstring); `lpips` a callable
    (x, y) -> per-sample distance, `colour` adds the hair colour error."""
    hair = (target_hair > 0.5).float()
    nonhair = 1 - ((target_hair > 0) | (source_hair > 0)).float()
    out = {
        "gt_psnr_hair": region_psnr(result, target, hair),
        "gt_psnr_nonhair": region_psnr(result, target, nonhair),
        "gt_hair_iou": hair_iou(result_hair, target_hair),
    }
    if lpips is not None:
        out["gt_lpips"] = lpips(result, target).reshape(-1).detach().float().cpu()
    if colour:
        out["gt_colour_de2000"] = ciede2000(
            mean_hair_colour(result, result_hair), mean_hair_colour(target, target_hair)
        )
    return {k: v.detach().float().cpu() for k, v in out.items()}
