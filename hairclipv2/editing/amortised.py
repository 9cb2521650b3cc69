"""Amortised proxies: a network trained to answer what a proxy's own optimisation would find, in one
forward pass (HairCLIP's text mapper and HairFastGAN's modules in spirit, HairCLIPv2's objectives).

`TextMapper` stands for the text proxy: from CLIP's embedding of the text and the source's W+ codes
to the proxy's first `rows` rows, as offsets from the mean code (the official optimisation's start).
Its last layer starts at zero, so an untrained mapper answers exactly that start. It is trained on
the text proxy's own objective (`training/text_mapper.py`) and used by the editor with
`editing.text.method=encoder` (then `editing.text.refinement` steps of the official optimisation
from its answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import MissingCheckpointError, atomic_torch_save, load_state_dict_strict


class TextMapper(nn.Module):
    """(text embedding (N, T), source codes (N, L, D), mean code) -> the proxy's rows (N, rows, D)."""

    def __init__(self, text_dim: int, style_dim: int, rows: int, hidden: int = 512, layers: int = 3):
        super().__init__()
        self.config = dict(text_dim=text_dim, style_dim=style_dim, rows=rows, hidden=hidden, layers=layers)
        blocks: list[nn.Module] = []
        width = text_dim + rows * style_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.trunk = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden, rows * style_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def rows(self) -> int:
        return self.config["rows"]

    def forward(self, text: torch.Tensor, source_codes: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
        n, d = source_codes.shape[0], self.config["style_dim"]
        mean = latent_avg.reshape(-1)[-d:]
        source = (source_codes[:, : self.rows] - mean).flatten(1)  # the source, relative to the mean code
        offsets = self.out(self.trunk(torch.cat([F.normalize(text.float(), dim=-1), source], dim=1)))
        return mean + offsets.view(n, self.rows, d)


def save_text_mapper(mapper: TextMapper, path: str | Path) -> Path:
    state = {k: v.detach().cpu() for k, v in mapper.state_dict().items()}
    return atomic_torch_save({"state_dict": state, "config": dict(mapper.config)}, path)


def load_text_mapper(path: str | Path, key: str = "editing.text_mapper_weights") -> TextMapper:
    """A TextMapper from `save_text_mapper`'s file ({"state_dict", "config"}), loaded strictly."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingCheckpointError(
            f"{path}: no text mapper file ({key}); train one with `python train.py experiment=world_text_mapper`"
        )
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    mapper = TextMapper(**ckpt["config"])
    load_state_dict_strict(mapper, ckpt["state_dict"], f"text mapper {path}")
    return mapper.eval().requires_grad_(False)
