"""Barbershop's / HairCLIPv2's P-norm prior on W+ codes, and the PCA statistics it needs.

    p = (leaky_relu(w, slope 5) - X_mean) @ X_comp.T / X_stdev,   loss = mean(p^2)

leaky_relu with slope 5 undoes the mapping network's last leaky ReLU (slope 0.2), so the codes are
whitened where they are closest to Gaussian. The statistics come from the official `ffhq_PCA.npz` or
are computed from the generator's own mapping network:

    python -m hairclipv2.editing.prior OUT.npz [--generator stylegan2_ffhq] [--ckpt PATH] [--samples 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..weights import require_file, sampling_seed


class PNormPrior(nn.Module):
    """mean over rows and components of the squared whitened PCA coordinates, per sample (N,)."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, stdev: torch.Tensor):
        super().__init__()
        d = mean.numel()
        if components.shape != (d, d) or stdev.numel() != d:
            raise ValueError(
                f"PCA statistics must be X_mean ({d},), X_comp ({d}, {d}), X_stdev ({d},); got {tuple(mean.shape)}, {tuple(components.shape)}, {tuple(stdev.shape)}"
            )
        self.register_buffer("X_mean", mean.reshape(d).float())
        self.register_buffer("X_comp", components.float())
        self.register_buffer("X_stdev", stdev.reshape(d).float())

    @classmethod
    def from_npz(cls, path: str | Path | None) -> PNormPrior:
        p = require_file(path, "ffhq_pca")
        with np.load(p) as data:
            missing = {"X_mean", "X_comp", "X_stdev"} - set(data.files)
            if missing:
                raise ValueError(f"{p}: missing arrays {sorted(missing)} (expected X_mean, X_comp, X_stdev)")
            return cls(
                *(torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in ("X_mean", "X_comp", "X_stdev"))
            )

    @classmethod
    @torch.no_grad()
    def from_mapping(
        cls, generator: nn.Module, samples: int = 100_000, seed: int = 0, chunk: int = 10_000
    ) -> PNormPrior:
        """PCA of leaky_relu(mapping(z), 5) over `samples` random z."""
        gen = torch.Generator().manual_seed(sampling_seed(seed))
        device = next(generator.parameters()).device
        xs = [
            F.leaky_relu(
                generator.mapping(torch.randn(min(chunk, samples - i), generator.style_dim, generator=gen).to(device)),
                5.0,
            )
            .double()
            .cpu()
            for i in range(0, samples, chunk)
        ]
        x = torch.cat(xs)
        mean = x.mean(0)
        # PCA from the D x D covariance (an eigendecomposition, not an SVD of all samples): the same
        # components up to sign, which the whitened squared norm does not see; in a tenth of the time.
        variance, vectors = torch.linalg.eigh((x - mean).T @ (x - mean) / (len(x) - 1))
        order = variance.argsort(descending=True)
        stdev = variance[order].clamp_min(0).sqrt()
        return cls(mean.float(), vectors[:, order].T.float(), stdev.float())

    def save_npz(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        try:
            arrays = {"X_mean": self.X_mean, "X_comp": self.X_comp, "X_stdev": self.X_stdev}
            np.savez(tmp, **{k: v.cpu().numpy() for k, v in arrays.items()})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (N, n_latent, D) -> (N,) mean squared whitened coordinates."""
        p = (F.leaky_relu(codes, 5.0) - self.X_mean) @ self.X_comp.T / self.X_stdev
        return p.pow(2).mean(dim=(1, 2))


def main(argv: list[str] | None = None) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ..weights import CheckpointError, load_generator

    parser = argparse.ArgumentParser(
        description="Write P-norm PCA statistics (X_mean, X_comp, X_stdev) from a generator's mapping network."
    )
    parser.add_argument("out")
    parser.add_argument("--generator", default="stylegan2_ffhq", help="a conf/generator config name")
    parser.add_argument(
        "--ckpt", default=None, help="generator weights (official StyleGAN2 file); none: random weights"
    )
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    conf = Path(__file__).resolve().parents[2] / "conf" / "generator"
    names = sorted(p.stem for p in conf.glob("*.yaml"))
    if args.generator not in names:
        parser.error(f"--generator: expected one of {names}, found {args.generator!r}")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        generator = instantiate(compose(args.generator)).eval()
    if args.samples <= generator.style_dim:
        parser.error(
            f"--samples: the PCA of {generator.style_dim}-d codes needs more than {generator.style_dim} samples, found {args.samples}"
        )
    try:
        if args.ckpt:
            load_generator(generator, args.ckpt, "--ckpt")
        path = PNormPrior.from_mapping(generator, args.samples, args.seed).save_npz(args.out)
    except (CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.samples} samples of {args.generator})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
