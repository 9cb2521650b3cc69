"""HairCLIPv2's CLIP losses (`criteria/clip_loss.py`): 1 - cos(image, text) of CLIP ViT-B/32 on the
image upsampled x7 and average-pooled to 224; AugCLIPLoss: the spherical distance, averaged over the
image and 7 augmented copies (kornia RandomAffine(15, 0.1) and RandomPerspective(0.7), p = 0.7).

Kornia's perspective warp leaves a NaN pixel now and then (3 copies in 109,000 at 224 px, kornia 0.9:
where the warp's horizon crosses a pixel centre). The official loss then turns NaN and Adam makes
that sample's codes NaN for good: about one text edit in 25 (200 steps, 7 copies each) would come
back empty. Here such pixels (and any infinite one) read 0, mid-grey, and carry no gradient."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.clip import CLIPModel, clip_input
from ..sharing import borrow


class CLIPLoss(nn.Module):
    """1 - cos(CLIP(image), CLIP(text)) per sample; `augment` switches to AugCLIPLoss."""

    def __init__(self, clip: CLIPModel, augment: bool = False, n_augmentations: int = 8, p: float = 0.7):
        super().__init__()
        borrow(self, clip=clip)
        self.augment, self.n = augment, n_augmentations
        if augment:
            import kornia.augmentation as K

            self.augmentations = nn.Sequential(
                K.RandomAffine(degrees=15, translate=0.1, p=p, padding_mode="border"), K.RandomPerspective(0.7, p=p)
            )

    def prepare(self, texts: Sequence[str]) -> None:
        """Check the texts (non-empty strings) and embed them once, before an optimisation starts."""
        self.clip.encode_text(list(texts))

    def forward(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """images (N, 3, H, W) in [-1, 1], one text per image -> (N,)."""
        if len(texts) != images.shape[0]:
            raise ValueError(f"one text per image: got {len(texts)} texts for {images.shape[0]} images")
        text = F.normalize(self.clip.encode_text(list(texts)), dim=-1)
        if not self.augment:
            image = F.normalize(self.clip.encode_image(clip_input((images + 1) / 2)), dim=-1)
            return 1 - (image * text).sum(-1)
        small = F.adaptive_avg_pool2d(images, 224)
        augmented = torch.nan_to_num(self.augmentations(small.repeat(self.n - 1, 1, 1, 1)), 0.0, 0.0, 0.0)
        copies = torch.cat([small, augmented])  # the first copy is not augmented
        emb = F.normalize(self.clip.encode_image((copies + 1) / 2), dim=-1).view(self.n, images.shape[0], -1)
        dist = (emb - text.unsqueeze(0)).norm(dim=-1).div(2).arcsin().pow(2).mul(2)
        return dist.mean(0)
