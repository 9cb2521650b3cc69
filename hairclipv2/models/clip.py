"""OpenAI's CLIP ViT-B/32 through open_clip, and HairCLIPv2's resize of images to CLIP's 224 px."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..weights import MissingCheckpointError
from .frozen import FrozenNetwork

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPModel(FrozenNetwork):
    """OpenAI's CLIP ViT-B/32 through open_clip (HairCLIPv2: `clip.load("ViT-B/32")`); text embeddings
    are cached per string. OpenAI's network uses QuickGELU, which open_clip builds only under the
    `-quickgelu` name (plain `ViT-B-32` is GELU: another function with the same weights).
    `name="local-dir:FOLDER"` loads an open_clip folder (the world's CLIP, `training/world_clip.py`).

    `half_on_cuda`: as `clip.load(..., device="cuda")`, which keeps OpenAI's fp16 weights: on a CUDA
    device the convolutions, linear layers and attention run in float16 (layer norms in float32)
    and the inputs are cast to float16; embeddings come back float32. Off, CLIP is float32 on every
    device (`clip.load` on a CPU)."""

    def __init__(self, name: str = "ViT-B-32-quickgelu", pretrained: str | None = "openai", half_on_cuda: bool = False):
        super().__init__()
        self.half_on_cuda, self.is_half = half_on_cuda, False
        import open_clip

        if pretrained is None and not name.startswith("local-dir:"):  # local-dir: the folder holds the weights
            warnings.warn(f"CLIP {name} with random weights: CLIP losses and scores are meaningless", stacklevel=2)
        try:
            self.model = open_clip.create_model(name, pretrained=pretrained)
        except Exception as exc:  # offline without the cached file, or a bad path
            raise MissingCheckpointError(
                f"CLIP {name} weights {pretrained!r} could not be loaded ({type(exc).__name__}: {exc}). Put the OpenAI ViT-B-32 (quickgelu) "
                "checkpoint in open_clip's cache (HF hub timm/vit_base_patch32_clip_224.openai) or set editing.clip_pretrained to a "
                "local file; tests and demos can use pretrained=None"
            ) from exc
        self.tokenizer = open_clip.get_tokenizer(name)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self._text_cache: dict[str, torch.Tensor] = {}
        self.freeze()

    def to_half(self) -> CLIPModel:
        """OpenAI's fp16 CLIP: clip.load's `convert_weights` (open_clip's `convert_weights_to_lp`),
        with its float32 layer norms."""
        from open_clip import convert_weights_to_lp
        from open_clip.transformer import LayerNormFp32

        if not self.is_half:
            convert_weights_to_lp(self.model, torch.float16)
            for module in self.model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.__class__ = LayerNormFp32
            self.is_half = True
        return self

    def _precision_for(self, device: torch.device) -> None:
        if self.half_on_cuda and device.type == "cuda":
            self.to_half()

    @property
    def embed_dim(self) -> int:
        """D, the width of the joint embedding both towers answer in."""
        return self.model.visual.output_dim

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised text embeddings (N, D), cached per string."""
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text conditions must be non-empty strings, got {t!r}")
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            self._precision_for(self.mean.device)
            with torch.no_grad():
                emb = self.model.encode_text(self.tokenizer(missing).to(self.mean.device)).float()
            self._text_cache.update(zip(missing, emb))
        return torch.stack([self._text_cache[t].to(self.mean.device) for t in texts])

    def encode_image(self, images01: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings of (N, 3, 224, 224) images in [0, 1]."""
        self._precision_for(images01.device)
        x = (images01 - self.mean) / self.std
        return self.model.encode_image(x.half() if self.is_half else x).float()


def clip_input(images: torch.Tensor) -> torch.Tensor:
    """HairCLIPv2's resize to 224: nearest x7 upsampling, then average pooling (32 at 1024 px)."""
    size = images.shape[-1]
    if (size * 7) % 224:
        return F.interpolate(images, size=224, mode="bilinear", align_corners=False, antialias=True)
    return F.avg_pool2d(F.interpolate(images, scale_factor=7, mode="nearest"), size * 7 // 224)
