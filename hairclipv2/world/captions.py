"""Words for the world's hair: the captions its CLIP learns and the texts its edits take."""

from __future__ import annotations

import torch

from .prior import HAIR, FaceAttributes

LENGTHS = ("very short", "short", "medium-length", "long")
TEXTURES = ("straight", "wavy", "curly")


def hair_colour_name(rgb: torch.Tensor) -> list[str]:
    """The palette name nearest to each hair colour (N, 3) after removing its lightness scale."""
    table = torch.tensor([c for _, c in HAIR], dtype=rgb.dtype, device=rgb.device)
    scale = (rgb * table[:, None]).sum(-1) / table.pow(2).sum(-1, keepdim=True).clamp(min=1e-6)
    err = (rgb[None] - scale.clamp(0.8, 1.15)[..., None] * table[:, None]).pow(2).sum(-1)
    return [HAIR[i][0] for i in err.argmin(0).tolist()]


def length_word(amount: float) -> str:
    return LENGTHS[min(int(amount * len(LENGTHS) / 0.9), len(LENGTHS) - 1)]


def caption(faces: FaceAttributes) -> list[str]:
    """One caption per face: "bald", or "<length> <colour> <texture> hair[ with bangs]"."""
    names = hair_colour_name(faces.hair_rgb)
    out = []
    for i, colour in enumerate(names):
        amount = float(faces.hair_amount[i])
        if amount == 0:
            out.append("bald")
            continue
        texture = TEXTURES[min(int(float(faces.curl[i]) * 3), 2)]
        bangs = " with bangs" if float(faces.bangs[i]) > 0.3 else ""
        out.append(f"{length_word(amount)} {colour} {texture} hair{bangs}")
    return out


def phrasing(faces: FaceAttributes, generator: torch.Generator | None = None) -> list[str]:
    """One randomly worded caption per face, naming a random subset of its hair's traits (the colour,
    the length, the texture, the fringe), so that CLIP learns each word and not only whole captions."""
    names = hair_colour_name(faces.hair_rgb)
    draws = torch.rand(len(names), 6, generator=generator).tolist()
    out = []
    for i, (colour, d) in enumerate(zip(names, draws, strict=True)):
        if float(faces.hair_amount[i]) == 0:
            out.append(("bald", "a bald person", "a bald head", "no hair")[int(d[0] * 4)])
            continue
        words = [
            length_word(float(faces.hair_amount[i])) if d[1] < 0.6 else "",
            colour if d[2] < 0.75 else "",
            TEXTURES[min(int(float(faces.curl[i]) * 3), 2)] if d[3] < 0.5 else "",
        ]
        if not any(words):
            words[1] = colour
        bangs = " with bangs" if float(faces.bangs[i]) > 0.3 and d[4] < 0.5 else ""
        desc = " ".join(w for w in words if w) + " hair" + bangs
        out.append(("{}", "a person with {}", "a face with {}")[int(d[5] * 3)].format(desc))
    return out
