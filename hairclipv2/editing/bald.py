"""HairCLIPv2's bald proxy: a mapper that moves the first eight W+ rows towards baldness.

    codes[:, :8] += 1.2 * alpha * mapper(codes[:, :8])        (alpha from `bald_proxy.pt`)

The mapper is HairCLIPv2's `LevelMapper(input_dim=512)` (`models/bald_proxy/networks/level_mapper.py`):
ONE StyleGAN3-style mapping network `structure_mapping` of eight lr-equalised FC layers
(`single_mapper.py`: lr multiplier 0.01 on weights and biases, leaky ReLU 0.2 with gain sqrt 2),
applied to each of the first eight rows with shared weights. Its `w_avg` buffer is stored in the
checkpoint but never read. The official forward squeezes the batch dimension away and so only runs
batch 1; here every sample of a batch gets exactly the rows it would get alone.
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

    def __init__(self, dim: int = 512, num_layers: int = 8, lr_multiplier: float = 0.01):
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
    """W+ (N, >= 8, D) -> deltas for rows 0..7 (N, 8, D), each row mapped on its own."""

    def __init__(self, input_dim: int = 512, num_layers: int = 4):
        super().__init__()
        # Official: `num_layers * 2` layers in one network (the default 4 gives 8).
        self.structure_mapping = SingleMappingNetwork(input_dim, num_layers * 2)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.ndim != 3 or codes.shape[1] < BALD_ROWS:
            raise ValueError(f"LevelMapper needs W+ codes (N, >= {BALD_ROWS}, D), got {tuple(codes.shape)}")
        return self.structure_mapping(codes[:, :BALD_ROWS])


class BaldProxy(nn.Module):
    def __init__(self, mapper: LevelMapper, alpha: float):
        super().__init__()
        self.mapper, self.alpha = mapper.requires_grad_(False).eval(), float(alpha)

    @torch.no_grad()
    def forward(self, src_codes: torch.Tensor) -> torch.Tensor:
        """The bald proxy's W+ codes from the source's (the mapper checks their shape)."""
        out = src_codes.clone()
        out[:, :BALD_ROWS] += self.alpha * self.mapper(src_codes)
        return out

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


def load_bald_proxy(path: str | None) -> BaldProxy:
    """HairCLIPv2's `bald_proxy.pt` ({'state_dict', 'alpha'}), strictly."""
    ckpt = load_checkpoint_file(path, "bald_proxy")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "alpha" not in ckpt:
        raise CheckpointError(
            f"{path}: expected {{'state_dict', 'alpha'}} (HairCLIPv2's bald_proxy.pt), found {sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__}"
        )
    mapper = LevelMapper(512)
    load_state_dict_strict(mapper, ckpt["state_dict"], f"bald proxy {path}")
    return BaldProxy(mapper, float(ckpt["alpha"]) * BALD_ALPHA_SCALE)
