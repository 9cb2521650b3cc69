"""The project's own world: procedural 64 px faces with hair, with exact ground truth for every edit.

    world = World()
    z = world.z(8, seed=0)                      # the prior: standard normal codes
    faces = world.attributes(z)                 # named attributes (prior.py)
    shot = world.render(faces)                  # image, labels, hair coverage, sketch (render.py)
    bald = world.render(faces.bald())           # the exact bald picture of the same faces
    target = world.render(faces.with_hair_of(reference))   # the exact hairstyle transfer
    mixed = world.attributes(mix_z(z, z_other))           # z's shapes in z_other's colours (style mixing)
    caption(faces)                              # "long red curly hair with bangs", ...

The networks trained on it (generator, parser, bald mapper, sketch encoder, CLIP) learn this world;
its pictures mean something, and every edit has a known answer.
"""

from __future__ import annotations

import torch

from .captions import caption, hair_colour_name
from .prior import APPEARANCE_PARAMS, HAIR_COLOURS, N_PARAMS, PARAM_NAMES, FaceAttributes, attributes_from_z, mix_z
from .render import STROKE_VALUE, WORLD_16, WorldImages, render

__all__ = [
    "APPEARANCE_PARAMS",
    "HAIR_COLOURS",
    "N_PARAMS",
    "PARAM_NAMES",
    "STROKE_VALUE",
    "WORLD_16",
    "FaceAttributes",
    "World",
    "WorldImages",
    "attributes_from_z",
    "caption",
    "hair_colour_name",
    "mix_z",
    "render",
]


class World:
    """The world at one size: z from a seed, attributes from z, pictures from attributes."""

    def __init__(self, size: int = 64, z_dim: int = 512, supersample: int = 4):
        if z_dim < N_PARAMS:
            raise ValueError(f"the world reads {N_PARAMS} coordinates of z; z_dim={z_dim} is too small")
        self.size, self.z_dim, self.supersample = size, z_dim, supersample

    def z(self, n: int, seed: int) -> torch.Tensor:
        """(n, z_dim) standard normal codes drawn from `seed` alone."""
        return torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed))

    def attributes(self, z: torch.Tensor) -> FaceAttributes:
        return attributes_from_z(z)

    @torch.no_grad()
    def render(self, faces: FaceAttributes, batch: int = 64) -> WorldImages:
        parts = [
            render(faces.index(slice(i, i + batch)), self.size, self.supersample) for i in range(0, len(faces), batch)
        ]
        return WorldImages(*(torch.cat(t) for t in zip(*(vars(p).values() for p in parts), strict=True)))

    def render_z(self, z: torch.Tensor) -> WorldImages:
        return self.render(self.attributes(z))
