"""Distribution metrics of a set of edits against the real images: FID and FID_CLIP, as the hair
transfer literature computes them (HairFastGAN `scripts/fid_metric.py`; Stable-Hair Table 1).

Both are torchmetrics' `FrechetInceptionDistance` on uint8 images resized to 299 px with PIL's LANCZOS
(HairFastGAN's loading):
- FID: torch-fidelity's Inception v3 (2048 pool features), from its weights file
  `weights-inception-2015-12-05-6726825d.pth` (`metrics.inception_weights`);
- FID_CLIP: the same distance on CLIP ViT-B/32 image embeddings (adaptive average pooling to 224,
  CLIP's normalisation), through the project's one CLIP wrapper.
Images are read from files at the end of a run (the real images of the pairs file, the edits the run
wrote), so a resumed run and a run sharded over processes measure the same sets.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..io import open_rgb
from ..models.clip import CLIPModel
from ..sharing import borrow
from ..weights import require_file

FID_SIZE = 299


def fid_image(path: str | Path) -> torch.Tensor:
    """An image file as (3, 299, 299) uint8, resized with PIL's LANCZOS (HairFastGAN's loading)."""
    img = open_rgb(path).resize((FID_SIZE, FID_SIZE), Image.LANCZOS)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def readable_images(files: Sequence[str | Path]) -> list[tuple[str | Path, torch.Tensor]]:
    """(file, fid_image) of every file that reads; the others are named in one warning and left out
    (a pair whose source could not be read is a failed edit, not the end of the summary)."""
    out, skipped = [], []
    for f in files:
        try:
            out.append((f, fid_image(f)))
        except (ValueError, OSError) as exc:
            skipped.append(f"{f} ({exc})")
    if skipped:
        warnings.warn(f"FID leaves out {len(skipped)} unreadable image(s): {'; '.join(skipped)}", stacklevel=2)
    return out


class CLIPFeatures(nn.Module):
    """CLIP image embeddings of uint8 images (N, 3, H, W): the feature network of FID_CLIP."""

    def __init__(self, clip: CLIPModel):
        super().__init__()
        borrow(self, clip=clip)
        self.num_features = int(clip.encode_image(torch.zeros(1, 3, 224, 224)).shape[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(images.float() / 255, 224)
        return self.clip.encode_image(x.to(next(self.clip.parameters()).device)).double()


class RandomFeatures(nn.Module):
    """A small random convolutional feature network (demos and tests): a distance between sets, but
    not FID's Inception features (its values are not comparable with published ones)."""

    num_features = 64

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, 16, 5, stride=4), nn.ReLU(), nn.Conv2d(16, self.num_features, 5, stride=4), nn.ReLU()
            )
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 127.5 - 1).mean(dim=(2, 3)).double()


def frechet(feature: nn.Module | int = 2048, weights: str | Path | None = None):
    """torchmetrics' FrechetInceptionDistance on uint8 images; `feature`: a network with
    `num_features`, or 2048 for torch-fidelity's Inception read from `weights`. One process measures
    the whole set from files, so the metric does not sync its states across processes."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if isinstance(feature, int):
        path = require_file(weights, "inception", "metrics.inception_weights")
        return FrechetInceptionDistance(feature, feature_extractor_weights_path=str(path), sync_on_compute=False)
    return FrechetInceptionDistance(feature=feature, sync_on_compute=False)


def set_distances(
    metrics: dict[str, nn.Module], real: Sequence[str | Path], fake: Sequence[str | Path], batch_size: int = 16
) -> dict[str, float]:
    """Each metric (a FrechetInceptionDistance) of the fake image files against the real ones; files
    that cannot be read are left out, and a set of fewer than two images has no covariance, and no value."""
    sets = {True: [t for _, t in readable_images(real)], False: [t for _, t in readable_images(fake)]}
    if len(sets[True]) < 2 or len(sets[False]) < 2:
        return {}
    out = {}
    for name, metric in metrics.items():
        metric.reset()
        for is_real, images in sets.items():
            for chunk in batches(images, batch_size):
                metric.update(torch.stack(list(chunk)), real=is_real)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchmetrics warns about few samples
            out[name] = float(metric.compute())
    return out


def batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
