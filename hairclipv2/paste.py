"""An edit of the aligned face pasted back into the original photograph.

The FFHQ crop maps the photo's oriented square `FaceQuad` (centre c, half-axes x, y) onto the aligned
image: a photo point p lands at ((u + 1) / 2, (v + 1) / 2) * S with u, v its coordinates along x and y.
Pasting goes the other way: every photo pixel inside the quad samples the edited image there
(bilinear) and is blended with the feathered edit region, sampled the same way. Pixels whose blend
weight is 0 (outside the region and its feather) keep the photo's values bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .align import FaceQuad


def feathered_region(hair: torch.Tensor, grow: int, feather: int) -> torch.Tensor:
    """The edit region of an aligned face: hair (1, 1, S, S) in {0, 1} (the source's and the result's,
    joined) grown by `grow` px, then softened over `feather` px (a box blur); values in [0, 1], exactly
    0 farther than grow + feather / 2 from the hair."""
    if hair.ndim != 4 or hair.shape[:2] != (1, 1):
        raise ValueError(f"hair must be (1, 1, S, S), got {tuple(hair.shape)}")
    region = F.max_pool2d(hair.float(), 2 * grow + 1, stride=1, padding=grow) if grow > 0 else hair.float()
    if feather > 1:
        k = feather | 1  # odd, so the blur stays centred
        region = F.avg_pool2d(region, k, stride=1, padding=k // 2, count_include_pad=False)
    return region.clamp(0, 1)


def paste_back(
    photo: np.ndarray, edited: torch.Tensor, region: torch.Tensor, quad: FaceQuad
) -> tuple[np.ndarray, np.ndarray]:
    """The photo (H, W, 3) uint8 with `edited` (3, S, S) in [-1, 1] blended in by `region` (1, 1, S, S);
    returns (the new photo, the blend weight in the photo (H, W) float32)."""
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"the photo must be (H, W, 3) uint8, got {photo.shape} {photo.dtype}")
    size = edited.shape[-1]
    h, w = photo.shape[:2]
    lo = np.clip(np.floor(quad.corners.min(0)).astype(int), 0, [w, h])
    hi = np.clip(np.ceil(quad.corners.max(0)).astype(int) + 1, 0, [w, h])
    out, alpha = photo.copy(), np.zeros((h, w), np.float32)
    if (hi <= lo).any():
        return out, alpha
    ys, xs = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    aligned = quad.to_output(centres, size)  # pixel coordinates in the aligned image
    grid = torch.from_numpy(aligned / size * 2 - 1).float().view(1, ys.shape[0], ys.shape[1], 2)
    sample = lambda t: F.grid_sample(t.float().cpu(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # noqa: E731
    colour = ((sample(edited[None]).squeeze(0).permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).numpy()
    weight = sample(region).squeeze(0).squeeze(0).clamp(0, 1).numpy()
    box = out[lo[1] : hi[1], lo[0] : hi[0]]
    blended = weight[..., None] * colour + (1 - weight[..., None]) * box.astype(np.float32)
    inside = weight > 0
    box[inside] = np.clip(np.rint(blended[inside]), 0, 255).astype(np.uint8)
    alpha[lo[1] : hi[1], lo[0] : hi[0]] = weight
    return out, alpha
