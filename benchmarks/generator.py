"""Generator throughput: forward and forward+backward images/s at 64 and 256 px (1024 on a GPU), the
split-forward overhead against one full forward, and the fast op path against the reference path.

    python benchmarks/generator.py [--batch 2] [--min-time 1.0] [--out results.json]

Widths are config-f's (512 channels up to 32 px), so the numbers speak for the real model's shape.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hairclipv2.models.stylegan2 import Generator, ops  # noqa: E402

from common import device_name, print_table, seconds_per_call, write_json  # noqa: E402


def bench_size(size: int, batch: int, device: torch.device, min_time: float) -> list[dict]:
    torch.manual_seed(0)
    G = Generator(size, 512, 8).to(device).eval().requires_grad_(False)
    w = torch.randn(batch, G.n_latent, 512, device=device)
    split = min(3, G.n_blocks - 1)
    rows = []

    def full() -> torch.Tensor:
        return G.synthesis(w)

    def split_run() -> torch.Tensor:
        feature, skip = G.features(w, end_layer=split)
        return G.resume(w, split + 1, feature, skip)

    def full_backward() -> None:
        wg = w.detach().requires_grad_(True)
        G.synthesis(wg).square().mean().backward()

    for impl in ("fast", "ref"):
        with ops.implementation(impl), torch.no_grad():
            t_full = seconds_per_call(full, device, min_time)
            t_split = seconds_per_call(split_run, device, min_time)
        with ops.implementation(impl):
            t_bwd = seconds_per_call(full_backward, device, min_time)
        rows.append(
            dict(
                size=size,
                batch=batch,
                impl=impl,
                fwd_img_s=batch / t_full,
                fwd_bwd_img_s=batch / t_bwd,
                split_block=split,
                split_over_full=t_split / t_full,
            )
        )
    ref = rows[1]
    for r in rows:
        r["fwd_speedup_vs_ref"] = r["fwd_img_s"] / ref["fwd_img_s"]
        r["fwd_bwd_speedup_vs_ref"] = r["fwd_bwd_img_s"] / ref["fwd_bwd_img_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="default: 64 256 (+1024 on a GPU)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per measurement")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = args.sizes or ([64, 256, 1024] if device.type == "cuda" else [64, 256])
    rows = [r for s in sizes for r in bench_size(s, args.batch, device, args.min_time)]
    print(f"device: {device_name(device)}, torch {torch.__version__}")
    print_table(
        rows,
        [
            "size",
            "batch",
            "impl",
            "fwd_img_s",
            "fwd_bwd_img_s",
            "fwd_speedup_vs_ref",
            "fwd_bwd_speedup_vs_ref",
            "split_block",
            "split_over_full",
        ],
    )
    write_json("generator", {"device": device_name(device), "torch": torch.__version__, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
