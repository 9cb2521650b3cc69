"""Generator throughput: forward and forward+backward images/s at 64 and 256 px (1024 on a GPU), the
split-forward overhead against one full forward, and the fast op path against the reference path;
on a GPU also bf16 autocast, channels_last and torch.compile against float32 (speed-up and error).

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


def gpu_path_rows(size: int, batch: int, device: torch.device, min_time: float) -> list[dict]:
    """GPU paths of the generator's forward + backward against float32 on the same weights and codes:
    bf16 autocast, channels_last memory format, torch.compile; each with its speed-up and its largest
    error against the float32 image (for the golden tolerances)."""
    torch.manual_seed(0)
    G = Generator(size, 512, 8).to(device).eval().requires_grad_(False)
    w = torch.randn(batch, G.n_latent, 512, device=device)
    with torch.no_grad():
        reference = G.synthesis(w).float()
    compiled = torch.compile(G.synthesis)
    variants = {
        "float32": (G.synthesis, torch.float32, torch.contiguous_format),
        "bf16 autocast": (G.synthesis, torch.bfloat16, torch.contiguous_format),
        "channels_last": (G.synthesis, torch.float32, torch.channels_last),
        "torch.compile": (compiled, torch.float32, torch.contiguous_format),
    }
    rows = []
    for name, (synthesis, dtype, memory_format) in variants.items():
        G.to(memory_format=memory_format)

        def step() -> torch.Tensor:
            wg = w.detach().requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                image = synthesis(wg)
            image.float().square().mean().backward()
            return image

        seconds = seconds_per_call(step, device, min_time, warmup=3 if name == "torch.compile" else 1)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            error = (synthesis(w).float() - reference).abs().max().item()
        rows.append(dict(size=size, batch=batch, path=name, fwd_bwd_img_s=batch / seconds, max_abs_error=error))
        G.to(memory_format=torch.contiguous_format)
    for r in rows:
        r["speedup_vs_float32"] = r["fwd_bwd_img_s"] / rows[0]["fwd_bwd_img_s"]
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
    payload = {"device": device_name(device), "torch": torch.__version__, "rows": rows}
    if device.type == "cuda":
        gpu_rows = [r for s in sizes for r in gpu_path_rows(s, args.batch, device, args.min_time)]
        print_table(gpu_rows, ["size", "batch", "path", "fwd_bwd_img_s", "speedup_vs_float32", "max_abs_error"])
        payload["gpu_paths"] = gpu_rows
    else:
        print("GPU paths (bf16 autocast, channels_last, torch.compile): need a GPU, skipped")
    write_json("generator", payload, args.out)


if __name__ == "__main__":
    main()
