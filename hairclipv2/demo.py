"""Embedded default demo: the split generator on a small random-weight model (CPU, seconds).

    python -m hairclipv2.demo [--out outputs/demo]

Samples faces-to-be from a 64 px generator with random weights (the pictures are meaningless; the
numbers are the point), stops after block 2, resumes from block 3, and writes a grid:
full forward | split + resume with the RGB skip (identical) | resume without the skip (what
HairCLIPv2 does: the RGB of blocks 0..2 is absent) | their difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from hairclipv2.io import save_image_grid

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR / "generator"), version_base="1.3"):
        cfg = compose(config_name="stylegan2_tiny")
    torch.manual_seed(args.seed)
    G = instantiate(cfg).eval()
    print("WARNING: random generator weights; the pictures are meaningless, the consistency numbers are not.")
    with torch.no_grad():
        w = G.mapping(torch.randn(4, G.style_dim)).unsqueeze(1).repeat(1, G.n_latent, 1)
        full = G.synthesis(w)
        feature, skip = G.features(w, end_layer=2)
        resumed = G.resume(w, 3, feature, skip)
        hairclip_style = G.resume(w, 3, feature)
    print(f"generator: {G.size} px, {G.n_blocks + 1} blocks, feature after block 2: {tuple(feature.shape[1:])}")
    print(f"max |full - split+resume with skip|    = {(full - resumed).abs().max().item():.3g}")
    print(f"max |full - resume without skip|       = {(full - hairclip_style).abs().max().item():.3g}")
    diff = (full - hairclip_style).abs().mean(1, keepdim=True).expand(-1, 3, -1, -1)
    rows = torch.stack([full, resumed, hairclip_style, diff / diff.max() * 2 - 1], dim=1)
    path = save_image_grid(rows, Path(args.out) / "split_generator.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
