"""An encoder from an image to HairCLIPv2's FS embedding (S, F) in one forward pass.

S (W+, (N, n_latent, D)) is an e4e encoder's output added to latent_avg. F, the generator's feature
after `hairstyle_block` ((N, C, r, r): 512x32x32 after block 3 at 1024 px), is the generator's own
feature of S plus a residual predicted from the image by a small strided convolution head whose last
layer starts at zero: an untrained head is exactly e4e, and the residual carries what W+ cannot
(HairCLIPv2's FS step optimises the same F for 250 steps).

`resume_with_skip` names the FS space the encoder is trained for: False (HairCLIPv2's) resumes from F
without the RGB skip of blocks 0..hairstyle_block, True adds the skip of S (`editing.resume_with_skip`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ...sharing import borrow
from ...weights import atomic_torch_save, load_checkpoint_file
from ..inversion import resize_images
from ..stylegan2 import Generator


class FeatureHead(nn.Module):
    """(N, 3, s, s) -> (N, channels, r, r): stride-2 3x3 convolutions (LeakyReLU 0.2) from s down to r,
    then a 1x1 convolution initialised at zero."""

    def __init__(self, input_size: int, resolution: int, channels: int, width: int = 64):
        super().__init__()
        if input_size % resolution or input_size < resolution:
            raise ValueError(f"the head maps {input_size} px to {resolution} px: need a power-of-two ratio")
        n_down = int(math.log2(input_size // resolution))
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(n_down):
            layers += [nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class FSEncoder(nn.Module):
    """`encoder`: an e4e (or pSp) encoder with `input_size`; `generator`: the frozen split generator
    (borrowed, not registered: the module that owns it checkpoints it); `latent_avg` (D,)."""

    def __init__(
        self,
        encoder: nn.Module,
        generator: Generator,
        latent_avg: torch.Tensor,
        hairstyle_block: int = 3,
        head_width: int = 64,
        resume_with_skip: bool = False,
    ):
        super().__init__()
        borrow(self, generator=generator)
        self.encoder, self.hairstyle_block = encoder, hairstyle_block
        self.resume_with_skip = resume_with_skip
        self.register_buffer("latent_avg", latent_avg.reshape(-1).clone())
        with torch.no_grad():
            probe = generator.features(self.latent_avg.expand(1, generator.n_latent, -1), hairstyle_block)[0]
        self.feature_shape = tuple(probe.shape[1:])
        self.head = FeatureHead(encoder.input_size, probe.shape[-1], probe.shape[1], head_width)

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (N, 3, S, S) in [-1, 1] -> (S codes, F, the generator's own F of S)."""
        x = resize_images(images, self.input_size)
        codes = self.encoder(x) + self.latent_avg
        base = self.generator.features(codes, self.hairstyle_block)[0]
        return codes, base + self.head(x), base

    def image(self, codes: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """The image of (S, F) in the encoder's FS space (fixed noise)."""
        return self.generator.resume_from_feature(codes, self.hairstyle_block, feature, self.resume_with_skip)


def encoder_layout(encoder: nn.Module) -> dict:
    """How to rebuild the encoder: e4e's IR-SE50 (`{"kind": "e4e"}`), or the first-stage backbone
    (`SketchEncoder`'s layout on images: a small world's small encoder)."""
    from .psp import Encoder4Editing
    from .sketch import SketchEncoder

    if isinstance(encoder, SketchEncoder):
        return {"kind": "first_stage", "input_nc": encoder.input_nc, **encoder.layout}
    if isinstance(encoder, Encoder4Editing):
        return {"kind": "e4e"}
    raise TypeError(f"an FS encoder's encoder is Encoder4Editing or SketchEncoder, not {type(encoder).__name__}")


def build_encoder(layout: dict, generator: Generator, input_size: int) -> nn.Module:
    """The encoder `encoder_layout` describes, for this generator (files without one: e4e's)."""
    from .psp import Encoder4Editing
    from .sketch import SketchEncoder

    settings = dict(layout)
    kind = settings.pop("kind", "e4e")
    if kind == "e4e":
        return Encoder4Editing(50, "ir_se", generator.size, input_size=input_size)
    if kind == "first_stage":
        return SketchEncoder(style_dim=generator.style_dim, n_latent=generator.n_latent, **settings)
    raise ValueError(f"unknown FS encoder kind {kind!r} (expected 'e4e' or 'first_stage')")


def save_fs_encoder(fs: FSEncoder, path: str | Path) -> Path:
    """{"state_dict": encoder + head + latent_avg, "opts"} atomically: what `load_fs_encoder` reads."""
    opts = {
        "input_size": fs.input_size,
        "hairstyle_block": fs.hairstyle_block,
        "head_width": fs.head.out.in_channels,
        "stylegan_size": fs.generator.size,
        "resume_with_skip": fs.resume_with_skip,
        "encoder": encoder_layout(fs.encoder),
    }
    return atomic_torch_save({"state_dict": fs.state_dict(), "opts": opts}, path)


def load_fs_encoder(path: str | Path | None, generator: Generator) -> FSEncoder:
    """The FS encoder a `train.py experiment=fs_encoder_*` run wrote (`<run>/fs_encoder.pt`), for this
    generator, strictly."""
    ckpt = load_checkpoint_file(path, "fs_encoder", "editing.fs_encoder_weights")
    opts = ckpt["opts"]
    if int(opts["stylegan_size"]) != generator.size:
        raise ValueError(f"{path}: an FS encoder for a {opts['stylegan_size']} px generator, not {generator.size} px")
    encoder = build_encoder(opts.get("encoder", {}), generator, int(opts["input_size"]))
    fs = FSEncoder(
        encoder,
        generator,
        ckpt["state_dict"]["latent_avg"],
        int(opts["hairstyle_block"]),
        int(opts["head_width"]),
        bool(opts.get("resume_with_skip", False)),
    )
    fs.load_state_dict(ckpt["state_dict"])
    return fs.eval().requires_grad_(False)
