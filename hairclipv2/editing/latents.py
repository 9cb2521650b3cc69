"""HairCLIPv2's cached inversions, read when present (`test_images/src_F/`, `test_images/ref_latent/`).

HairCLIPv2 skips the embedding of a source image `X.jpg` when `src_F/X.npz` exists
({"latent_in": (1, 18, 512) S, "latent_F": (1, 512, 32, 32) F}) and the W+ inversion of a
reference `Y.jpg` when `ref_latent/Y.npy` ((1, 18, 512)) exists (`ref_proxy.py` l.44-50).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.stylegan2 import Generator
from .embedding import FSCode


class LatentFileError(ValueError):
    """A cached latent file that does not fit the generator (names the file, expected vs found)."""


def _array(path: Path, data: np.ndarray, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if tuple(data.shape) != shape:
        raise LatentFileError(f"{path}: {name} has shape {tuple(data.shape)}, expected {shape} for this generator")
    return torch.from_numpy(np.asarray(data, dtype=np.float32).copy())


def read_source_fs(path: str | Path, generator: Generator, hairstyle_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(S (n_latent, D), F (C, h, h)) from a `src_F/<name>.npz`."""
    path = Path(path)
    with np.load(path) as npz:
        missing = {"latent_in", "latent_F"} - set(npz.files)
        if missing:
            raise LatentFileError(
                f"{path}: missing {sorted(missing)} (HairCLIPv2's src_F files hold latent_in and latent_F)"
            )
        size = 4 * 2**hairstyle_block
        codes = _array(path, npz["latent_in"], "latent_in", (1, generator.n_latent, generator.style_dim))
        feature = _array(path, npz["latent_F"], "latent_F", (1, generator.channels[size], size, size))
    return codes[0], feature[0]


def read_reference_codes(path: str | Path, generator: Generator) -> torch.Tensor:
    """W+ (n_latent, D) from a `ref_latent/<name>.npy`."""
    path = Path(path)
    return _array(path, np.load(path), "the codes", (1, generator.n_latent, generator.style_dim))[0]


def fs_code(generator: Generator, hairstyle_block: int, codes: torch.Tensor, feature: torch.Tensor) -> FSCode:
    """An FSCode from cached (S, F): the reconstruction resumed from F with S (fixed noise)."""
    with torch.no_grad():
        image = generator.resume(codes, hairstyle_block + 1, feature)
    return FSCode(codes, feature, image)
