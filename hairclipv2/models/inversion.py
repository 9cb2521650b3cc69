"""Encoder-based inversion (pSp / e4e): image -> encoder codes (+ latent_avg) -> the split generator.

`InversionModel` holds the one generator of the project as `decoder` (no second copy), so its
state-dict keys are the official `encoder.*` / `decoder.*`; it reads and writes the official
container that e4e's and pSp's inference scripts load.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import CheckpointError, atomic_torch_save, load_state_dict_strict, read_encoder_checkpoint
from .encoders import Encoder4Editing, GradualStyleEncoder
from .encoders.psp import INFERENCE_STAGE, INPUT_SIZE
from .stylegan2 import Generator, default_channels

ENCODER_TYPES: dict[str, type[nn.Module]] = {
    "Encoder4Editing": Encoder4Editing,
    "GradualStyleEncoder": GradualStyleEncoder,
}
OFFICIAL_GENERATOR = dict(style_dim=512, n_mlp=8, channel_multiplier=2)


def build_encoder(
    encoder_type: str = "Encoder4Editing",
    stylegan_size: int = 1024,
    num_layers: int = 50,
    mode: str = "ir_se",
    input_size: int = INPUT_SIZE,
    style_hidden: int | None = None,
) -> nn.Module:
    """An encoder by its official `opts.encoder_type` name."""
    if encoder_type not in ENCODER_TYPES:
        raise ValueError(f"encoder_type must be one of {sorted(ENCODER_TYPES)}, got {encoder_type!r}")
    return ENCODER_TYPES[encoder_type](num_layers, mode, stylegan_size, input_size, style_hidden=style_hidden)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square images to `size`: average pooling down (pSp's face_pool), bilinear up (small demo models)."""
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class InversionModel(nn.Module):
    """pSp / e4e: x (N, 3, 256, 256) in [-1, 1] -> W+ codes (N, n_latent, 512) -> images.

    Args:
        encoder: an `Encoder4Editing` or `GradualStyleEncoder` with style_count == generator.n_latent.
        decoder: the (frozen) StyleGAN2 generator.
        latent_avg: (style_dim,) or (n_latent, style_dim); added to the encoder's output when
            `start_from_latent_avg` (e4e's and pSp's default for FFHQ).
        output_size: decoded images are resized to this size (pSp's `face_pool`: 256, the encoder's input).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Generator,
        latent_avg: torch.Tensor | None = None,
        start_from_latent_avg: bool = True,
        output_size: int | None = None,
    ):
        super().__init__()
        if encoder.style_count != decoder.n_latent:
            raise ValueError(
                f"encoder predicts {encoder.style_count} W+ rows but the generator takes {decoder.n_latent} (stylegan_size mismatch)"
            )
        self.encoder, self.decoder = encoder, decoder
        self.start_from_latent_avg = start_from_latent_avg
        self.output_size = output_size or encoder.input_size
        if latent_avg is None:
            latent_avg = torch.zeros(decoder.style_dim)
        self.register_buffer(
            "latent_avg", latent_avg.reshape(-1, decoder.style_dim).expand(decoder.n_latent, -1).clone()
        )

    @property
    def input_size(self) -> int:
        """The encoder's input resolution (256 officially)."""
        return self.encoder.input_size

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """What training updates: the encoder's parameters (the decoder stays frozen)."""
        return self.encoder.parameters()

    @property
    def progressive_stage(self) -> int:
        """e4e's progressive stage of the encoder (INFERENCE_STAGE for encoders without stages)."""
        return getattr(self.encoder, "progressive_stage", INFERENCE_STAGE)

    def set_progressive_stage(self, stage: int) -> None:
        if hasattr(self.encoder, "set_progressive_stage"):
            self.encoder.set_progressive_stage(stage)

    @property
    def code_offset(self) -> torch.Tensor | None:
        """What encode() adds to the encoder's output: latent_avg (n_latent, D), or None."""
        return self.latent_avg if self.start_from_latent_avg else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """W+ codes (N, n_latent, style_dim) of images (N, 3, input_size, input_size) (256 officially)."""
        codes = self.encoder(x)
        return codes + self.latent_avg if self.start_from_latent_avg else codes

    def decode(self, codes: torch.Tensor, randomize_noise: bool = False, resize: bool = True) -> torch.Tensor:
        """Images from W+ codes, resized to output_size when `resize`."""
        images = self.decoder.synthesis(codes, randomize_noise=randomize_noise)
        return resize_images(images, self.output_size) if resize else images

    def forward(
        self, x: torch.Tensor, randomize_noise: bool = False, resize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructions, codes)."""
        codes = self.encode(x)
        return self.decode(codes, randomize_noise, resize), codes

    # ------------------------------------------------------------------------ official container
    def official_opts(self) -> dict[str, Any]:
        """The `opts` entries the official pSp / e4e code reads to rebuild this model."""
        g = self.decoder
        opts: dict[str, Any] = {
            "encoder_type": type(self.encoder).__name__,
            "stylegan_size": g.size,
            "start_from_latent_avg": self.start_from_latent_avg,
            "device": "cuda:0",  # the official code moves latent_avg there (its scripts need a GPU)
            "checkpoint_path": None,
        }
        if self.encoder.input_size != INPUT_SIZE:
            opts["input_size"] = self.encoder.input_size  # read by ours only, as the next two
        if self.encoder.num_layers != 50:
            opts["encoder_layers"] = self.encoder.num_layers
        if self.encoder.styles[0].hidden != 512:
            opts["style_hidden"] = self.encoder.styles[0].hidden
        official_widths = {
            r: c for r, c in default_channels(OFFICIAL_GENERATOR["channel_multiplier"]).items() if r <= g.size
        }
        own_widths = {r: c for r, c in g.channels.items() if r <= g.size}
        if (g.style_dim, len(g.style) - 1) != (
            OFFICIAL_GENERATOR["style_dim"],
            OFFICIAL_GENERATOR["n_mlp"],
        ) or own_widths != official_widths:
            opts["generator"] = {
                "style_dim": g.style_dim,
                "n_mlp": len(g.style) - 1,
                "channels": own_widths,
            }  # read by ours only
        return opts

    def save_official(self, path: str | Path, **extra_opts: Any) -> Path:
        """Write {"state_dict": encoder.* + decoder.*, "latent_avg", "opts"} atomically."""
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        return atomic_torch_save(
            {
                "state_dict": state,
                "latent_avg": self.latent_avg.clone(),
                "opts": {**self.official_opts(), **extra_opts},
            },
            path,
        )

    @classmethod
    def from_official(
        cls, path: str | Path | None, decoder: Generator | None = None, load_decoder: bool = True
    ) -> InversionModel:
        """Load an official e4e / pSp checkpoint: encoder, decoder and latent_avg, strictly.

        The opts that matter are mapped: stylegan_size (generator size), encoder_type,
        start_from_latent_avg. Pass `decoder` to load the weights into an existing generator, or to
        share it as it is with `load_decoder=False` (the file's decoder weights are then not used).
        """
        ckpt = read_encoder_checkpoint(path)
        opts = ckpt.opts
        size = int(opts.get("stylegan_size", 1024))
        encoder = build_encoder(
            opts.get("encoder_type", "Encoder4Editing"),
            size,
            num_layers=int(opts.get("encoder_layers", 50)),
            input_size=int(opts.get("input_size", INPUT_SIZE)),
            style_hidden=opts.get("style_hidden"),
        )
        if decoder is None:
            g_opts = {
                **OFFICIAL_GENERATOR,
                **{k: v for k, v in opts.get("generator", {}).items() if k in ("style_dim", "n_mlp", "channels")},
            }
            decoder = Generator(size, **g_opts)
        elif decoder.size != size:
            raise CheckpointError(f"{path}: opts.stylegan_size={size} but the given generator is {decoder.size} px")
        load_state_dict_strict(
            encoder, ckpt.encoder, f"encoder of {path} (opts.encoder_type={opts.get('encoder_type')!r})"
        )
        if ckpt.decoder and load_decoder:
            load_state_dict_strict(decoder, ckpt.decoder, f"decoder of {path}")
        return cls(encoder, decoder, ckpt.latent_avg, bool(opts.get("start_from_latent_avg", True)))
