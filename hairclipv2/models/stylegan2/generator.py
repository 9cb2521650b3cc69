"""The StyleGAN2 generator with HairCLIPv2's split forward: stop after any block, resume from any block.

Blocks ("layers" in HairCLIPv2's arguments). With n = log2(size) - 2:

    block 0      constant 4x4 -> conv1 (W+ row 0, noise 0) -> to_rgb1 (W+ row 1)            4x4
    block k>=1   convs[2k-2] (up, W+ row 2k-1, noise 2k-1) -> convs[2k-1] (W+ row 2k, noise 2k)
                 -> to_rgbs[k-1] (W+ row 2k+1, adds the upsampled RGB skip)             4*2^k x 4*2^k

The feature after block k has `channels[4 * 2**k]` channels. At 1024 px (n = 8, default widths):
block 3 -> 32x32x512 (HairCLIPv2's F, hairstyle blending), block 6 -> 256x256x128 (colour blending),
block 8 -> the 1024x1024 image. `features(w, end_layer=k)` returns (feature, rgb skip) after block k;
`resume(w, start_layer=k + 1, feature, skip)` finishes the image, equal to the full forward when the
skip is passed. HairCLIPv2 itself resumes without the skip (the RGB of earlier blocks is then absent);
`forward(..., start_layer, end_layer, layer_in, skip)` reproduces that call exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB

NoiseList = Sequence[torch.Tensor | None]


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's widths per resolution (config-f for channel_multiplier=2)."""
    return {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }


class Generator(nn.Module):
    """StyleGAN2 generator, state-dict compatible with rosinality's `Generator` (and so with the
    official `stylegan2-ffhq-config-f.pt` `g_ema`).

    Args:
        size: output resolution, a power of two >= 4.
        style_dim: width of z and w.
        n_mlp: layers of the mapping network.
        channel_multiplier: width multiplier for resolutions >= 64 (2 = config-f).
        blur_kernel: 1-D taps of the resampling filter.
        lr_mlp: learning-rate multiplier of the mapping network.
        channels: resolution -> width; overrides the defaults (small models for tests and demos).
    """

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        lr_mlp: float = 0.01,
        channels: Mapping[int | str, int] | None = None,
    ):
        super().__init__()
        log_size = int(math.log2(size)) if size > 0 else 0
        if size < 4 or 2**log_size != size:
            raise ValueError(f"Generator size must be a power of two >= 4, got {size}")
        self.size, self.style_dim, self.log_size = size, style_dim, log_size
        self.channels = default_channels(channel_multiplier)
        if channels is not None:
            self.channels.update({int(res): int(width) for res, width in channels.items()})
        missing = [2**i for i in range(2, log_size + 1) if 2**i not in self.channels]
        if missing:
            raise ValueError(f"channels has no width for resolutions {missing}")

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )

        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.n_blocks = log_size - 2
        self.num_layers = 2 * self.n_blocks + 1
        self.n_latent = 2 * log_size - 2

        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))

        in_channel = self.channels[4]
        for i in range(3, log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel))
            in_channel = out_channel
        self._compiled_blocks: Callable | None = None
        # The activations' layout: torch.channels_last for the GPU's tensor-core convolutions
        # (editing/acceleration.py); the images it returns may then be channels_last too.
        self.memory_format = torch.contiguous_format

    def compile_blocks(self, **options: Any) -> None:
        """Run the block loop through `torch.compile(**options)` from now on (the argument checks stay
        outside the compiled code); see editing/acceleration.py."""
        self._compiled_blocks = torch.compile(self._blocks, **options)

    # ----------------------------------------------------------------------------------- latents
    def block_resolution(self, block: int) -> int:
        """Spatial size of the feature after `block`."""
        self._check_block(block, "block")
        return 4 * 2**block

    def feature_shape(self, block: int) -> tuple[int, int, int]:
        """(C, H, W) of the feature after `block`."""
        res = self.block_resolution(block)
        return self.channels[res], res, res

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, style_dim) -> w (N, style_dim)."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"z must have shape (N, {self.style_dim}), got {tuple(z.shape)}")
        return self.style(z)

    get_latent = mapping

    @torch.no_grad()
    def mean_latent(self, n_latent: int) -> torch.Tensor:
        """Mean w over `n_latent` random z, shape (1, style_dim)."""
        z = torch.randn(n_latent, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def make_noise(self) -> list[torch.Tensor]:
        """Fresh noise tensors, one per noise layer, shaped like the `noises` buffers."""
        device = self.input.input.device
        return [torch.randn_like(getattr(self.noises, f"noise_{i}"), device=device) for i in range(self.num_layers)]

    def fixed_noise(self) -> list[torch.Tensor]:
        """The stored noise buffers (what `randomize_noise=False` uses)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def _noise_list(self, noise: NoiseList | None, randomize_noise: bool) -> NoiseList:
        if noise is not None:
            if len(noise) != self.num_layers:
                raise ValueError(
                    f"noise must be a list of {self.num_layers} tensors (one per noise layer), got {len(noise)}"
                )
            return noise
        return [None] * self.num_layers if randomize_noise else self.fixed_noise()

    def _check_block(self, index: int, name: str) -> None:
        if not isinstance(index, int) or not 0 <= index <= self.n_blocks:
            raise ValueError(
                f"{name} must be an int in [0, {self.n_blocks}] for a {self.size} px generator, got {index!r}"
            )

    def _check_wplus(self, w: torch.Tensor) -> None:
        if w.ndim != 3 or w.shape[1] != self.n_latent or w.shape[2] != self.style_dim:
            raise ValueError(f"W+ codes must have shape (N, {self.n_latent}, {self.style_dim}), got {tuple(w.shape)}")

    def _check_feature(self, name: str, t: torch.Tensor, batch: int, shape: tuple[int, int, int]) -> None:
        if t.shape != (batch, *shape):
            raise ValueError(f"{name} must have shape {(batch, *shape)}, got {tuple(t.shape)}")

    # --------------------------------------------------------------------------------- synthesis
    def run_blocks(
        self,
        w: torch.Tensor,
        start_layer: int,
        end_layer: int,
        feature: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
        noise: NoiseList | None = None,
        randomize_noise: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run blocks start_layer..end_layer and return (feature, rgb) after block end_layer.

        w: W+ codes (N, n_latent, style_dim). With start_layer > 0, `feature` is the output of block
        start_layer - 1, (N, *feature_shape(start_layer - 1)), and `skip` its RGB (N, 3, H, W) or
        None (then the RGB of the earlier blocks is left out, as HairCLIPv2 does). After the last
        block the returned rgb is the image.
        """
        self._check_wplus(w)
        self._check_block(start_layer, "start_layer")
        self._check_block(end_layer, "end_layer")
        if start_layer > end_layer:
            raise ValueError(f"start_layer ({start_layer}) must not exceed end_layer ({end_layer})")
        batch = w.shape[0]
        noise = self._noise_list(noise, randomize_noise)
        if start_layer == 0:
            out = self.conv1(self.input(batch), w[:, 0], noise=noise[0])
            skip = self.to_rgb1(out, w[:, 1])
        else:
            if feature is None:
                raise ValueError(f"resuming at start_layer={start_layer} needs the feature of block {start_layer - 1}")
            c, h, wd = self.feature_shape(start_layer - 1)
            self._check_feature("feature", feature, batch, (c, h, wd))
            if skip is not None:
                self._check_feature("skip", skip, batch, (3, h, wd))
            out = feature
        blocks = self._compiled_blocks or self._blocks
        return blocks(w, max(start_layer, 1), end_layer, out.contiguous(memory_format=self.memory_format), skip, noise)

    def _blocks(
        self, w: torch.Tensor, first: int, last: int, out: torch.Tensor, skip: torch.Tensor | None, noise: NoiseList
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks first..last (>= 1) from the feature `out` and its RGB `skip`."""
        for k in range(first, last + 1):
            out = self.convs[2 * k - 2](out, w[:, 2 * k - 1], noise=noise[2 * k - 1])
            out = self.convs[2 * k - 1](out, w[:, 2 * k], noise=noise[2 * k])
            skip = self.to_rgbs[k - 1](out, w[:, 2 * k + 1], skip)
        return out, skip

    def features(
        self, w: torch.Tensor, end_layer: int, noise: NoiseList | None = None, randomize_noise: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature, rgb skip) after block `end_layer` (e.g. end_layer=3: HairCLIPv2's 32x32 F at 1024 px)."""
        return self.run_blocks(w, 0, end_layer, noise=noise, randomize_noise=randomize_noise)

    def resume(
        self,
        w: torch.Tensor,
        start_layer: int,
        feature: torch.Tensor,
        skip: torch.Tensor | None = None,
        noise: NoiseList | None = None,
        randomize_noise: bool = False,
    ) -> torch.Tensor:
        """The image (N, 3, size, size) from the feature of block start_layer - 1, with codes w."""
        if start_layer < 1:
            raise ValueError(
                f"resume needs start_layer >= 1 (block 0 starts from the constant input), got {start_layer}"
            )
        return self.run_blocks(w, start_layer, self.n_blocks, feature, skip, noise, randomize_noise)[1]

    def resume_from_feature(
        self,
        w: torch.Tensor,
        block: int,
        feature: torch.Tensor,
        with_skip: bool = False,
        randomize_noise: bool = False,
    ) -> torch.Tensor:
        """The image of an FS code: `feature` is F after `block`, the later blocks run with codes w.

        HairCLIPv2 leaves out the RGB of blocks 0..block (`with_skip=False`); `with_skip=True` adds
        w's own RGB skip after `block` (differentiable in w's rows 0..2 * block + 1), so that
        (w, F(w)) gives back synthesis(w) exactly.
        """
        skip = self.features(w, block, randomize_noise=randomize_noise)[1] if with_skip else None
        return self.resume(w, block + 1, feature, skip, randomize_noise=randomize_noise)

    def synthesis(self, w: torch.Tensor, noise: NoiseList | None = None, randomize_noise: bool = False) -> torch.Tensor:
        """The full image (N, 3, size, size) from W+ codes."""
        return self.run_blocks(w, 0, self.n_blocks, noise=noise, randomize_noise=randomize_noise)[1]

    # ----------------------------------------------------------------- rosinality / HairCLIPv2 call
    def forward(
        self,
        styles: Sequence[torch.Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        noise: NoiseList | None = None,
        randomize_noise: bool = True,
        layer_in: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
        start_layer: int = 0,
        end_layer: int = 8,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rosinality's call, extended as HairCLIPv2's split generator; same return values.

        Returns (image, latent or None) when the run reaches the last block, otherwise the
        (feature, skip) after `end_layer`. As in HairCLIPv2: `end_layer >= n_blocks` means the
        whole image, the `start_layer` block always runs even if start_layer > end_layer, and a
        resume without `skip` leaves out the RGB of the blocks before `start_layer`.
        """
        if not isinstance(styles, (list, tuple)) or not 1 <= len(styles) <= 2:
            raise ValueError(f"styles must be a list of one or two tensors, got {type(styles).__name__}")
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. G.mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        latent = self._styles_to_wplus(styles, inject_index)
        if start_layer > 0 and end_layer == 0:
            raise ValueError(
                "start_layer > 0 with end_layer == 0 runs nothing in HairCLIPv2; ask for end_layer >= start_layer"
            )
        last = min(max(end_layer, start_layer), self.n_blocks)
        out, rgb = self.run_blocks(
            latent, start_layer, last, layer_in, skip if start_layer > 0 else None, noise, randomize_noise
        )
        if last < self.n_blocks:
            return out, rgb
        return rgb, (latent if return_latents else None)

    def _styles_to_wplus(self, styles: Sequence[torch.Tensor], inject_index: int | None) -> torch.Tensor:
        """One code (N, D) or W+ (N, n_latent, D) -> W+; two codes -> style mixing at inject_index."""
        if len(styles) == 1:
            s = styles[0]
            if s.ndim == 2:
                if s.shape[1] != self.style_dim:
                    raise ValueError(f"latent must have shape (N, {self.style_dim}), got {tuple(s.shape)}")
                return s.unsqueeze(1).repeat(1, self.n_latent, 1)
            self._check_wplus(s)
            return s
        if inject_index is None:
            inject_index = random.randint(1, self.n_latent - 1)
        for s in styles:
            if s.ndim != 2 or s.shape[1] != self.style_dim:
                raise ValueError(f"style mixing takes two (N, {self.style_dim}) codes, got {tuple(s.shape)}")
        first = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        second = styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)
        return torch.cat([first, second], 1)
