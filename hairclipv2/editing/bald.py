"""HairCLIPv2's bald proxy: a mapper that moves the coarse and middle W+ rows towards baldness.

    codes[:, :8] += 1.2 * alpha * mapper(codes)        (alpha from `bald_proxy.pt`)

The mapper is HairCLIPv2's `LevelMapper(input_dim=512)`: two StyleGAN3-style mapping networks (four
lr-equalised FC layers, lr multiplier 0.01, leaky ReLU with gain sqrt 2), one for rows 0..3 and one
for rows 4..7. Its source file (`models/bald_proxy/networks/level_mapper.py`) was not available to
this project: the key names `course_mapping.*` / `medium_mapping.*` follow HairCLIP's LevelsMapper and
the FC layers HairCLIPv2's `single_mapper.py`; `load_bald_proxy` lists any key that differs.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.stylegan2.layers import EqualLinear
from ..weights import CheckpointError, load_checkpoint_file, load_state_dict_strict

BALD_ALPHA_SCALE = 1.2  # HairCLIPv2 scales the checkpoint's alpha by 1.2
BALD_ROWS = 8


class SingleMappingNetwork(nn.Module):
    """fc0..fc{n-1}: lr-equalised linear + leaky ReLU (gain sqrt 2); `w_avg` as in the checkpoint."""

    def __init__(self, dim: int = 512, num_layers: int = 4, lr_multiplier: float = 0.01):
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualLinear(dim, dim, lr_mul=lr_multiplier, activation="fused_lrelu"))
        self.register_buffer("w_avg", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class LevelMapper(nn.Module):
    """W+ (N, >= 8, D) -> deltas for rows 0..7 (N, 8, D)."""

    def __init__(self, input_dim: int = 512):
        super().__init__()
        self.course_mapping = SingleMappingNetwork(input_dim)
        self.medium_mapping = SingleMappingNetwork(input_dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.course_mapping(codes[:, :4]), self.medium_mapping(codes[:, 4:8])], dim=1)


class BaldProxy(nn.Module):
    def __init__(self, mapper: LevelMapper, alpha: float):
        super().__init__()
        self.mapper, self.alpha = mapper.requires_grad_(False).eval(), float(alpha)

    @torch.no_grad()
    def forward(self, src_codes: torch.Tensor) -> torch.Tensor:
        """The bald proxy's W+ codes from the source's."""
        if src_codes.ndim != 3 or src_codes.shape[1] < BALD_ROWS:
            raise ValueError(f"the bald proxy needs W+ codes (N, >= {BALD_ROWS}, D), got {tuple(src_codes.shape)}")
        out = src_codes.clone()
        out[:, :BALD_ROWS] += self.alpha * self.mapper(src_codes)
        return out


def load_bald_proxy(path: str | None) -> BaldProxy:
    """HairCLIPv2's `bald_proxy.pt` ({'state_dict', 'alpha'}), strictly."""
    ckpt = load_checkpoint_file(path, "bald_proxy")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "alpha" not in ckpt:
        raise CheckpointError(f"{path}: expected {{'state_dict', 'alpha'}} (HairCLIPv2's bald_proxy.pt), found {sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__}")
    mapper = LevelMapper(512)
    load_state_dict_strict(mapper, ckpt["state_dict"], f"bald proxy {path}")
    return BaldProxy(mapper, float(ckpt["alpha"]) * BALD_ALPHA_SCALE)
