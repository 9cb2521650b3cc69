"""The world's prior: a standard normal z -> the named attributes of one face with hair.

Each attribute reads one coordinate of z through the normal CDF, u = Phi(z_i) in (0, 1), and maps it
to its range; the coordinates past `N_PARAMS` are unused. So the generator's own z space is the
world's prior: `latent_avg` is the mean code of the world's faces, as in StyleGAN.

Attributes are tensors with a leading batch dimension, so a whole batch renders at once; an edit
is an attribute swap (`with_hair_of`, `with_hair_colour`, `bald`) followed by a render.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

# One name per z coordinate, in order.
PARAM_NAMES = (
    "skin_tone",
    "face_width",
    "face_height",
    "face_x",
    "face_y",
    "eye_size",
    "eye_spacing",
    "eye_height",
    "iris",
    "mouth_width",
    "smile",
    "background_hue",
    "background_light",
    "cloth_hue",
    "hair_length",
    "hair_volume",
    "bangs",
    "parting",
    "curl",
    "hair_colour",
    "hair_light",
)
N_PARAMS = len(PARAM_NAMES)
# The colours: what StyleGAN's fine rows hold. The others (shapes, places, the hairstyle) are the
# structure its coarse rows and the feature F hold; `mix_z` composes the two as style mixing does.
APPEARANCE_PARAMS = (
    "skin_tone",
    "iris",
    "background_hue",
    "background_light",
    "cloth_hue",
    "hair_colour",
    "hair_light",
)

BALD_FRACTION = 0.12  # hair_length's u below this: no hair at all

# Palettes, RGB in [0, 1]; an attribute's u moves along its palette with linear interpolation.
SKIN = ((0.98, 0.85, 0.74), (0.93, 0.76, 0.62), (0.80, 0.60, 0.45), (0.60, 0.42, 0.30), (0.38, 0.25, 0.18))
IRIS = ((0.25, 0.15, 0.08), (0.20, 0.35, 0.60), (0.25, 0.45, 0.25), (0.45, 0.30, 0.12))
# Natural colours first, dyes last, so that most of the prior is natural.
HAIR = (
    ("black", (0.08, 0.07, 0.07)),
    ("brown", (0.30, 0.18, 0.10)),
    ("auburn", (0.50, 0.22, 0.10)),
    ("red", (0.80, 0.30, 0.12)),
    ("blonde", (0.88, 0.74, 0.45)),
    ("grey", (0.72, 0.72, 0.72)),
    ("pink", (0.92, 0.45, 0.65)),
    ("blue", (0.20, 0.35, 0.85)),
)
HAIR_COLOURS = {name: rgb for name, rgb in HAIR}


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / 2**0.5))


def palette(u: torch.Tensor, colours: tuple[tuple[float, float, float], ...]) -> torch.Tensor:
    """u (N,) in [0, 1] -> (N, 3): piecewise linear along the palette."""
    table = torch.tensor(colours, dtype=u.dtype, device=u.device)
    pos = u.clamp(0, 1) * (len(colours) - 1)
    lo = pos.floor().long().clamp(max=len(colours) - 2)
    t = (pos - lo).unsqueeze(1)
    return table[lo] * (1 - t) + table[lo + 1] * t


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N,) each in [0, 1] -> (N, 3)."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    f = (torch.minimum(k, 4 - k)).clamp(0, 1)
    return v[:, None] - v[:, None] * s[:, None] * f


@dataclass(frozen=True)
class FaceAttributes:
    """Everything the renderer draws, in image coordinates x, y in [-1, 1] (y down). Shapes (N,) or
    (N, 3) for colours. `hair_amount` 0 is bald."""

    skin: torch.Tensor
    face_cx: torch.Tensor
    face_cy: torch.Tensor
    face_rx: torch.Tensor
    face_ry: torch.Tensor
    eye_size: torch.Tensor
    eye_spacing: torch.Tensor
    eye_y: torch.Tensor
    iris: torch.Tensor
    mouth_width: torch.Tensor
    smile: torch.Tensor
    background: torch.Tensor
    background_gradient: torch.Tensor
    cloth: torch.Tensor
    hair_amount: torch.Tensor
    hair_length: torch.Tensor
    hair_volume: torch.Tensor
    bangs: torch.Tensor
    parting: torch.Tensor
    curl: torch.Tensor
    hair_rgb: torch.Tensor

    HAIR_FIELDS = ("hair_amount", "hair_length", "hair_volume", "bangs", "parting", "curl", "hair_rgb")

    def __len__(self) -> int:
        return self.skin.shape[0]

    def index(self, i: int | slice | torch.Tensor) -> FaceAttributes:
        return FaceAttributes(**{f.name: getattr(self, f.name)[i] for f in fields(self)})

    def with_hair_of(self, other: FaceAttributes, colour: bool = True) -> FaceAttributes:
        """This face with `other`'s hairstyle (length, volume, bangs, parting, curl) and, with
        `colour`, its hair colour: the exact target of a hairstyle transfer."""
        names = [n for n in self.HAIR_FIELDS if colour or n != "hair_rgb"]
        return replace(self, **{n: getattr(other, n) for n in names})

    def with_hair_colour(self, rgb: torch.Tensor) -> FaceAttributes:
        """This face with its hair in `rgb` ((3,) or (N, 3) in [0, 1]): the target of a colour edit."""
        return replace(self, hair_rgb=rgb.to(self.hair_rgb).expand_as(self.hair_rgb).clone())

    def bald(self) -> FaceAttributes:
        """This face without hair: the target of the bald proxy."""
        zero = torch.zeros_like(self.hair_amount)
        return replace(self, hair_amount=zero, hair_volume=zero, hair_length=zero, bangs=zero)


def mix_z(structure: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
    """z (N, D) of the face with `structure`'s shapes and hairstyle and `appearance`'s colours
    (APPEARANCE_PARAMS): the world's answer to StyleGAN's style mixing of their codes."""
    if structure.shape != appearance.shape:
        raise ValueError(f"mix_z: shapes differ, {tuple(structure.shape)} and {tuple(appearance.shape)}")
    colour = torch.zeros(structure.shape[-1], dtype=torch.bool, device=structure.device)
    colour[[PARAM_NAMES.index(n) for n in APPEARANCE_PARAMS]] = True
    return torch.where(colour, appearance, structure)


def attributes_from_z(z: torch.Tensor) -> FaceAttributes:
    """z (N, D) with D >= N_PARAMS, standard normal -> the world's attributes."""
    if z.ndim != 2 or z.shape[1] < N_PARAMS:
        raise ValueError(f"z must have shape (N, >= {N_PARAMS}), got {tuple(z.shape)}")
    u = dict(zip(PARAM_NAMES, normal_cdf(z[:, :N_PARAMS]).unbind(1), strict=True))

    def span(name: str, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * u[name]

    amount = ((u["hair_length"] - BALD_FRACTION) / (1 - BALD_FRACTION)).clamp(min=0)
    # u**1.5: the dyes (the palette's end) are rarer than the natural colours
    hair_rgb = palette(u["hair_colour"] ** 1.5, tuple(rgb for _, rgb in HAIR)) * span("hair_light", 0.8, 1.15)[:, None]
    return FaceAttributes(
        skin=palette(u["skin_tone"], SKIN),
        face_cx=span("face_x", -0.06, 0.06),
        face_cy=span("face_y", 0.0, 0.1),
        face_rx=span("face_width", 0.30, 0.38),
        face_ry=span("face_height", 0.40, 0.48),
        eye_size=span("eye_size", 0.75, 1.25),
        eye_spacing=span("eye_spacing", 0.36, 0.48),
        eye_y=span("eye_height", -0.22, -0.08),
        iris=palette(u["iris"], IRIS),
        mouth_width=span("mouth_width", 0.22, 0.42),
        smile=span("smile", -0.4, 1.0),
        background=hsv_to_rgb(u["background_hue"], torch.full_like(amount, 0.35), span("background_light", 0.45, 0.95)),
        background_gradient=span("background_light", 0.25, -0.1),
        cloth=hsv_to_rgb(u["cloth_hue"], torch.full_like(amount, 0.6), torch.full_like(amount, 0.55)),
        hair_amount=amount,
        hair_length=amount,
        hair_volume=(amount * 4).clamp(max=1) * span("hair_volume", 0.02, 0.13),
        bangs=((u["bangs"] - 0.45) / 0.55).clamp(min=0) * (amount * 4).clamp(max=1),
        parting=span("parting", -1.0, 1.0),
        curl=u["curl"],
        hair_rgb=hair_rgb.clamp(0, 1),
    )
