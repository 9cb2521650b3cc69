"""HairCLIPv2's style loss (`criteria/style`): Gram matrices of VGG16 relu1_2, relu2_2, relu3_3 and
relu4_3 of the hair-masked images at 256 px, L2, averaged over the layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.vgg import VGG16Activations
from ..sharing import borrow


def gram(x: torch.Tensor) -> torch.Tensor:
    """Per-sample Gram matrices (N, C, C) / (C H W) (HairCLIPv2's `gram_matrix` for each sample alone)."""
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def mask_like(feature: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HairCLIPv2's `prepare_mask`: the mask (N, 1, H, H) resized to the feature by NEAREST
    interpolation with scale factor h / H (the feature's size over the mask's)."""
    return F.interpolate(mask, scale_factor=feature.shape[-2] / mask.shape[-2], mode="nearest")


class StyleLoss(nn.Module):
    """HairCLIPv2's masked Gram-matrix style loss (`criteria/transfer_loss.py`, `criteria/style`).

    `forward(target, image, target_mask, image_mask)` multiplies each image by its mask, resizes
    both to 256 px (bilinear, align_corners=True: identity at 256), takes VGG16 activations (the
    target's without gradient), multiplies each activation by its mask resized with `mask_like`,
    and averages over the layers the MSE between the Gram matrices. Per sample (N,); for N = 1 it is
    the official value exactly (the official Gram matrix mixes the samples of a batch; this one does not).
    """

    size = 256

    def __init__(self, vgg: VGG16Activations):
        super().__init__()
        borrow(self, vgg=vgg)

    def to_size(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] == self.size:
            return images
        return F.interpolate(images, scale_factor=self.size / images.shape[-2], mode="bilinear", align_corners=True)

    def target_grams(self, target: torch.Tensor, target_mask: torch.Tensor) -> list[torch.Tensor]:
        """The target's masked Gram matrices, one per layer: fixed during an optimisation, so a caller
        can compute them once (HairCLIPv2 recomputes them at every step)."""
        with torch.no_grad():
            return [gram(f * mask_like(f, target_mask)) for f in self.vgg(self.to_size(target * target_mask))]

    def forward(
        self,
        target: torch.Tensor,
        image: torch.Tensor,
        target_mask: torch.Tensor,
        image_mask: torch.Tensor,
        target_grams: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """target/image (N, 3, H, H) in [-1, 1], masks (N, 1, H, H) in {0, 1} -> (N,);
        `target_grams`: `target_grams(target, target_mask)`, when already computed."""
        if (
            target.shape != image.shape
            or target_mask.shape != image_mask.shape
            or target_mask.shape[-2:] != target.shape[-2:]
        ):
            raise ValueError(
                f"StyleLoss: images {tuple(target.shape)}, {tuple(image.shape)} and masks {tuple(target_mask.shape)}, {tuple(image_mask.shape)} must match"
            )
        grams_t = self.target_grams(target, target_mask) if target_grams is None else target_grams
        feats_i = self.vgg(self.to_size(image * image_mask))
        loss = 0.0
        for gt, fi in zip(grams_t, feats_i):
            loss = loss + (gt - gram(fi * mask_like(fi, image_mask))).pow(2).mean(dim=(1, 2))
        return loss / len(grams_t)
