"""HairCLIPv2's cached inversions (`test_images/src_F/`, `test_images/ref_latent/`): read when
present, written when missing.

HairCLIPv2 skips the embedding of a source image `X.jpg` when `src_F/X.npz` exists
({"latent_in": (1, 18, 512) S, "latent_F": (1, 512, 32, 32) F}) and the W+ inversion of a
reference `Y.jpg` when `ref_latent/Y.npy` ((1, 18, 512)) exists (`ref_proxy.py` l.44-50), and
writes them after computing them, so a second run over the same pictures skips both. The files
here are written atomically (a temporary file renamed into place): an interrupted run leaves either
the whole file or none.
"""

from __future__ import annotations

import os
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


def _write_atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # DDP ranks may write the same picture's file
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_source_fs(path: str | Path, codes: torch.Tensor, feature: torch.Tensor) -> Path:
    """`src_F/<name>.npz` as HairCLIPv2 writes it: latent_in (1, n_latent, D), latent_F (1, C, h, h)."""
    latent_in, latent_f = (t.detach().float().cpu().numpy()[None] for t in (codes, feature))
    return _write_atomic(Path(path), lambda f: np.savez(f, latent_in=latent_in, latent_F=latent_f))


def write_reference_codes(path: str | Path, codes: torch.Tensor) -> Path:
    """`ref_latent/<name>.npy`: the reference's W+ (1, n_latent, D)."""
    return _write_atomic(Path(path), lambda f: np.save(f, codes.detach().float().cpu().numpy()[None]))


class LatentCache:
    """The two cache folders of an evaluation: what is missing after an edit is written."""

    def __init__(self, src_f_dir: str | Path | None = None, ref_latent_dir: str | Path | None = None):
        self.src_f_dir = Path(src_f_dir) if src_f_dir else None
        self.ref_latent_dir = Path(ref_latent_dir) if ref_latent_dir else None
        self.written: list[Path] = []

    def store(self, stems: list[str], codes: torch.Tensor | None, feature: torch.Tensor | None) -> None:
        """The sources' (S, F), one file per stem not yet cached."""
        if self.src_f_dir is None or codes is None or feature is None:
            return
        for i, stem in enumerate(stems):
            path = self.src_f_dir / f"{stem}.npz"
            if not path.exists():
                self.written.append(write_source_fs(path, codes[i], feature[i]))

    def store_references(self, stems: list[str | None], codes: torch.Tensor | None) -> None:
        if self.ref_latent_dir is None or codes is None:
            return
        for i, stem in enumerate(stems):
            path = self.ref_latent_dir / f"{stem}.npy"
            if stem is not None and not path.exists():
                self.written.append(write_reference_codes(path, codes[i]))
