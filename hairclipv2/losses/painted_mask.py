"""HairCLIPv2's painted-mask loss: the parser's labels of an image against labels a user painted."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.parsing import HairSegmenter


def hair_mask_loss(segmenter: HairSegmenter, images: torch.Tensor, painted_labels: torch.Tensor) -> torch.Tensor:
    """HairCLIPv2's painted-mask loss: cross-entropy of the parser's H/2 logits against painted labels,
    weighted 1 on background, face, ear and hair and 0 elsewhere; per sample (N,)."""
    logits = segmenter.logits(images)
    weight = segmenter.class_weights(("background", "face", "ear", "hair"), images.device)
    if painted_labels.shape[-1] != logits.shape[-1]:
        painted_labels = F.interpolate(painted_labels[:, None].float(), size=logits.shape[-2:], mode="nearest")[
            :, 0
        ].long()
    ce = F.cross_entropy(logits, painted_labels, weight=weight, reduction="none")
    w = weight[painted_labels]
    return (ce * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp_min(1)
