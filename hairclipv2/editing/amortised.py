"""Amortised proxies: a network trained to answer what a proxy's own optimisation would find, in one
forward pass (HairCLIP's text mapper and HairFastGAN's shape and colour modules in spirit,
HairCLIPv2's objectives).

A `LatentMapper` reads a condition vector and some rows of W+ codes and answers the rows the proxy
optimises, as offsets from the optimisation's own start; its last layer starts at zero, so an
untrained mapper answers exactly that start. With `gains` G > 1 it answers G offsets and returns
their sum weighted by per-item gains (N, G) its caller gives: an answer linear in the change asked,
as a Gauss-Newton step is (the colour mapper's Lab change, `ColourProxy.mapper_rows`). Per mode
(`MAPPER_KINDS`):

| kind | condition | codes read | start (offsets added to) |
|---|---|---|---|
| text | CLIP's text embedding | the source's first `rows` | the mean code |
| reference | none | the reference's and the source's first `rows` | the reference's rows |
| colour | CLIP's text embedding or the target's Lab colour (G = 4: the source hair's Lab; gains: the Lab change asked, a text flag) | the source's colour rows | the source's rows |

Each is trained on its proxy's own objective (`training/mappers.py`) and used by the editor with
`editing.<mode>.method=encoder` (then `editing.<mode>.refinement` steps of the official
optimisation from its answer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..weights import MissingCheckpointError, as_float32, atomic_torch_save, load_state_dict_strict

MAPPER_KINDS = ("text", "reference", "colour")
EXPERIMENTS = {kind: f"world_{kind}_mapper" for kind in MAPPER_KINDS}


class LatentMapper(nn.Module):
    """(condition (N, C), codes read (N, reads, D), start (N, rows, D), mean code) -> rows (N, rows, D)."""

    def __init__(
        self,
        kind: str,
        condition_dim: int,
        style_dim: int,
        rows: int,
        reads: int | None = None,
        hidden: int = 512,
        layers: int = 3,
        gains: int = 1,
    ):
        super().__init__()
        if kind not in MAPPER_KINDS:
            raise ValueError(f"a latent mapper's kind is one of {MAPPER_KINDS}, found {kind!r}")
        if gains < 1:
            raise ValueError(f"a latent mapper answers at least one offset (gains >= 1), found {gains}")
        reads = rows if reads is None else reads
        self.config = dict(
            kind=kind, condition_dim=condition_dim, style_dim=style_dim, rows=rows, reads=reads,
            hidden=hidden, layers=layers, gains=gains,
        )  # fmt: skip
        blocks: list[nn.Module] = []
        width = condition_dim + reads * style_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.trunk = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden, gains * rows * style_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def kind(self) -> str:
        return self.config["kind"]

    @property
    def rows(self) -> int:
        return self.config["rows"]

    @property
    def n_gains(self) -> int:
        """How many offsets it answers (files from before gains answer one)."""
        return self.config.get("gains", 1)

    def forward(
        self,
        condition: torch.Tensor,
        codes: torch.Tensor,
        start: torch.Tensor,
        latent_avg: torch.Tensor,
        gains: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`gains` (N, G): the weights of the G offsets (needed when G > 1)."""
        n, d = codes.shape[0], self.config["style_dim"]
        mean = latent_avg.reshape(-1)[-d:]
        read = (codes.float() - mean).flatten(1)  # the codes it reads, relative to the mean code
        offsets = self.out(self.trunk(torch.cat([condition.float().reshape(n, -1), read], dim=1)))
        offsets = offsets.view(n, self.n_gains, self.rows, d)
        if gains is None:
            if self.n_gains != 1:
                raise ValueError(f"this {self.kind} mapper answers {self.n_gains} offsets: pass their gains (N, G)")
            return start + offsets[:, 0]
        if gains.shape != (n, self.n_gains):
            raise ValueError(f"{self.kind} mapper gains: expected {(n, self.n_gains)}, found {tuple(gains.shape)}")
        return start + torch.einsum("ng,ngkd->nkd", gains.float(), offsets)


def save_mapper(mapper: LatentMapper, path: str | Path) -> Path:
    state = {k: v.detach().cpu() for k, v in mapper.state_dict().items()}
    return atomic_torch_save({"state_dict": state, "config": dict(mapper.config)}, path)


def load_mapper(path: str | Path, kind: str) -> LatentMapper:
    """A LatentMapper of `kind` from `save_mapper`'s file ({"state_dict", "config"}), loaded strictly."""
    key = f"editing.{kind}_mapper_weights"
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingCheckpointError(
            f"{path}: no {kind} mapper file ({key}); train one with `python train.py experiment={EXPERIMENTS[kind]}`"
        )
    ckpt: dict[str, Any] = as_float32(torch.load(path, map_location="cpu", weights_only=True))
    found = ckpt.get("config", {}).get("kind")
    if found != kind:
        raise ValueError(f"{path} ({key}): expected a {kind} mapper, found {found!r}")
    mapper = LatentMapper(**ckpt["config"])
    load_state_dict_strict(mapper, ckpt["state_dict"], f"{kind} mapper {path}")
    return mapper.eval().requires_grad_(False)
