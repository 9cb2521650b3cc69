"""One object that answers "which pixels are hair": a face parser and its label map together."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ... import masks as M


class HairSegmenter(nn.Module):
    """A face parser (HairCLIPv2's interface: `parser(x) -> (logits_full, logits_half, ...)`) and the
    label map naming its classes. Every part of the editor asks it for labels and hair masks, so
    "parse, take the hair, resize" is written once.

    Images are (N, 3, S, S) in [-1, 1]; labels (N, 1, L, L) int64; masks (N, 1, H, W) float in {0, 1}.
    No method but `logits` carries gradient.
    """

    def __init__(self, parser: nn.Module, label_map: M.LabelMap = M.HAIRCLIPV2_16):
        super().__init__()
        self.parser, self.label_map = parser, label_map

    def logits(self, images: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The parser's logits (N, C, S, S) with `full`, else its half-resolution head (HairCLIPv2's
        `seg(x)[1]`), with gradient (the painted-mask loss)."""
        return self.parser(images)[0 if full else 1]

    def labels(self, images: torch.Tensor, full: bool = False) -> torch.Tensor:
        """Class ids (N, 1, L, L): `seg(x)[1]` (L = S / 2), or `seg(x)[0]` (L = S) with `full`."""
        with torch.no_grad():
            return self.logits(images, full).argmax(dim=1, keepdim=True)

    def hair_of_labels(self, labels: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Hair (N, 1, size, size) of labels, resized by nearest (no resize when size is None)."""
        hair = M.hair_mask(labels, self.label_map)
        return hair if size is None else M.resize_mask(hair, size, mode="nearest")

    def hair_and_ears(self, labels: torch.Tensor) -> torch.Tensor:
        """Hair and ears of labels: the region the bald proxy replaces."""
        return M.hair_and_ear_mask(labels, self.label_map)

    def hair(self, images: torch.Tensor, size: int | None = None, full: bool = True) -> torch.Tensor:
        """Hair of images at `size` (default: the images' size): from the full-resolution labels
        (HairCLIPv2's background and colour losses), or the half-resolution ones with `full=False`.

        Labels resized down by nearest are the labels of the pixels the resize picks, so those
        pixels' logits are picked before the argmax: the same mask as `hair_of_labels(labels(...))`
        without the argmax over the parser's 1024x1024 output (a quarter second a batch on a CPU)."""
        size = size or images.shape[-1]
        with torch.no_grad():
            logits = self.logits(images, full)
            if logits.shape[-1] > size:
                logits = F.interpolate(logits, size=(size, size), mode="nearest")
            return self.hair_of_labels(logits.argmax(dim=1, keepdim=True), size)

    def class_weights(self, names: tuple[str, ...], device: torch.device) -> torch.Tensor:
        """(C,) weights: 1 for the named classes this parser has, 0 elsewhere."""
        weight = torch.zeros(self.label_map.n_classes, device=device)
        for name in names:
            if name in self.label_map.classes:
                weight[self.label_map.classes[name]] = 1
        return weight
