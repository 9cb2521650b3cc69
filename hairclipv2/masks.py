"""Label maps of the two face parsers as named classes, and the masks HairCLIPv2 builds from them.

Masks are float tensors (N, 1, H, W) with values in {0, 1} unless resized. HairCLIPv2's recipes:
- bald blending: `dilate_erode(hair | ear, 30)` on the 512 px labels, bicubic to 32x32 (F);
- hairstyle proxy: `hair` bicubic to 32x32; colour blending: `dilate_erode(hair, 30)` nearest to 1024,
  bicubic to 256; background loss: `not hair` at 1024.
`dilate_erode` reproduces OpenCV's `dilate(30x30)` then `erode(15x15)` exactly, including OpenCV's
anchor of an even kernel. Bicubic resizing is not clamped (values overshoot [0, 1] by up to ~0.16),
as in HairCLIPv2; pass `clamp=True` for the cleaner variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

DILATE_KERNEL_AT_512 = 30  # HairCLIPv2's `dliate_erode(mask, 30)` on the parser's 512 px labels


@dataclass(frozen=True)
class LabelMap:
    """A parser's class ids by name, and which of them make up hair, ears and background."""

    name: str
    n_classes: int
    classes: dict[str, int]
    hair: tuple[str, ...]
    ears: tuple[str, ...]
    background: tuple[str, ...] = ("background",)
    checkpoint: str = field(default="")

    def ids(self, names: tuple[str, ...]) -> list[int]:
        return [self.classes[n] for n in names]


# HairCLIPv2 / Barbershop seg.pth: only the ids HairCLIPv2 itself names are known (utils/seg_utils.py).
HAIRCLIPV2_16 = LabelMap(
    "hairclipv2_16",
    16,
    {"background": 0, "face": 1, "ear": 6, "hair": 10, "cloth": 15},
    hair=("hair",),
    ears=("ear",),
    checkpoint="seg.pth",
)

# face-parsing.PyTorch 79999_iter.pth (CelebAMask-HQ order).
CELEBAMASK_19 = LabelMap(
    "celebamask_19",
    19,
    {
        name: i
        for i, name in enumerate(
            [
                "background",
                "skin",
                "l_brow",
                "r_brow",
                "l_eye",
                "r_eye",
                "eye_g",
                "l_ear",
                "r_ear",
                "ear_r",
                "nose",
                "mouth",
                "u_lip",
                "l_lip",
                "neck",
                "neck_l",
                "cloth",
                "hair",
                "hat",
            ]
        )
    },
    hair=("hair",),
    ears=("l_ear", "r_ear"),
    checkpoint="79999_iter.pth",
)

LABEL_MAPS = {16: HAIRCLIPV2_16, 19: CELEBAMASK_19}

# HairCLIPv2's painting classes and their colours on screen, RGB (utils/seg_utils.py `vis_seg`; the
# BGR tuples of utils/mask_ui.py drawn on OpenCV's BGR canvas): background, face, ear, hair.
PAINT_COLOURS = {0: (0, 0, 0), 1: (102, 204, 255), 6: (51, 255, 51), 10: (204, 102, 255)}


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, 1, H, W) integer labels -> (N, 1, H, W)."""
    if labels.ndim == 3:
        labels = labels[:, None]
    if labels.ndim != 4 or labels.shape[1] != 1 or labels.is_floating_point():
        raise ValueError(
            f"labels must be an integer tensor (N, H, W) or (N, 1, H, W), got {tuple(labels.shape)} {labels.dtype}"
        )
    return labels


def class_mask(labels: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """1 where the label is one of `ids`, (N, 1, H, W) float."""
    labels = _check_labels(labels)
    return torch.isin(labels, torch.tensor(ids, device=labels.device)).float()


def hair_mask(labels: torch.Tensor, label_map: LabelMap = HAIRCLIPV2_16) -> torch.Tensor:
    return class_mask(labels, label_map.ids(label_map.hair))


def hair_and_ear_mask(labels: torch.Tensor, label_map: LabelMap = HAIRCLIPV2_16) -> torch.Tensor:
    """Hair + ears: the region the bald proxy replaces (ears are often hidden under hair)."""
    return class_mask(labels, label_map.ids(label_map.hair + label_map.ears))


def non_hair_mask(labels: torch.Tensor, label_map: LabelMap = HAIRCLIPV2_16) -> torch.Tensor:
    """Everything but hair: where HairCLIPv2's background loss compares images."""
    return 1 - hair_mask(labels, label_map)


def background_mask(labels: torch.Tensor, label_map: LabelMap = HAIRCLIPV2_16) -> torch.Tensor:
    """The parser's background class(es) only."""
    return class_mask(labels, label_map.ids(label_map.background))


def dilate_kernel(resolution: int) -> int:
    """HairCLIPv2's dilation kernel (30 at the 512 px label maps) scaled to another resolution."""
    return max(2, round(DILATE_KERNEL_AT_512 * resolution / 512))


def dilate_erode(mask: torch.Tensor, kernel: int = DILATE_KERNEL_AT_512) -> torch.Tensor:
    """HairCLIPv2's `dliate_erode`: dilate with a kernel x kernel box, then erode with (kernel // 2)^2.

    Box windows are anchored as OpenCV anchors them (centre at k // 2; for an even kernel the window
    covers k // 2 pixels before and k // 2 - 1 after); pixels outside the image are ignored.
    mask: (N, 1, H, W) in {0, 1}.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must have shape (N, 1, H, W), got {tuple(mask.shape)}")
    m = mask.float()
    before, after = kernel // 2, kernel - 1 - kernel // 2
    dilated = F.max_pool2d(F.pad(m, (before, after, before, after), value=0.0), kernel, stride=1)
    k2 = kernel // 2
    b2, a2 = k2 // 2, k2 - 1 - k2 // 2
    return -F.max_pool2d(F.pad(-dilated, (b2, a2, b2, a2), value=-1.0), k2, stride=1)


def resize_mask(mask: torch.Tensor, size: int, mode: str = "bicubic", clamp: bool = False) -> torch.Tensor:
    """Resize a (N, 1, H, W) mask to size x size as HairCLIPv2 does (bicubic, align_corners=False,
    no antialias, no clamp); `mode="nearest"` for its nearest resizes."""
    out = F.interpolate(
        mask.float(), size=(size, size), mode=mode, **({"align_corners": False} if mode == "bicubic" else {})
    )
    return out.clamp(0, 1) if clamp else out
