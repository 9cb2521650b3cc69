"""Generator throughput: forward and forward+backward images/s at 64 and 256 px (1024 on a GPU), the
split-forward overhead against one full forward, and the fast op path against the reference path;
on a GPU also bf16 autocast, channels_last and torch.compile against float32 (speed-up and error).

    python benchmarks/generator.py [--batch 2] [--min-time 1.0] [--out results.json]
                                   [--rosinality DIR [--threads 2]]

With --rosinality, the project's generator is also timed against rosinality's (a clone of
rosinality/stylegan2-pytorch @ bef283a1 outside this repository, never committed): same weights,
config-f widths, batch 4, forward + backward with the gradient for W+ only (inversion, editing) and
for W+ and the weights (training), interleaved in one process, median of the rounds. Its CUDA
extensions are not built: their two `load` calls get None, and on a CPU its ops take their native
branches.

Widths are config-f's (512 channels up to 32 px), so the numbers speak for the real model's shape.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hairclipv2.editing.acceleration import Acceleration  # noqa: E402
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
    """The editor's GPU paths (editing/acceleration.py) on the generator's forward + backward against
    float32, same weights and codes: bf16 autocast, channels_last, torch.compile; each with its
    speed-up and its largest error against the float32 image (for the golden tolerances)."""
    variants = {
        "float32": Acceleration(),
        "bf16 autocast": Acceleration(precision="bf16"),
        "channels_last": Acceleration(channels_last=True),
        "torch.compile": Acceleration(compile=True),
        "bf16 + channels_last + compile": Acceleration(precision="bf16", channels_last=True, compile=True),
    }
    rows, reference = [], None
    for name, acceleration in variants.items():
        torch.manual_seed(0)
        G = Generator(size, 512, 8).to(device).eval().requires_grad_(False)
        acceleration.apply({"generator": G})
        w = torch.randn(batch, G.n_latent, 512, device=device)

        def step() -> torch.Tensor:
            wg = w.detach().requires_grad_(True)
            with acceleration.autocast(device):
                image = G.synthesis(wg)
            image.float().square().mean().backward()
            return image

        seconds = seconds_per_call(step, device, min_time, warmup=3 if acceleration.compile else 1)
        with torch.no_grad(), acceleration.autocast(device):
            image = G.synthesis(w).float()
        reference = image if reference is None else reference
        error = (image - reference).abs().max().item()
        rows.append(dict(size=size, batch=batch, path=name, fwd_bwd_img_s=batch / seconds, max_abs_error=error))
    for r in rows:
        r["speedup_vs_float32"] = r["fwd_bwd_img_s"] / rows[0]["fwd_bwd_img_s"]
    return rows


def import_rosinality(folder: str):
    """rosinality's `model` module from a clone, with its CUDA-extension builds replaced by None."""
    sys.path.insert(0, str(Path(folder).resolve()))
    with mock.patch("torch.utils.cpp_extension.load", return_value=None):
        return importlib.import_module("model")


def rosinality_rows(folder: str, size: int, device: torch.device, rounds: int, batch: int = 4) -> list[dict]:
    """Project vs rosinality, forward + backward of the mean squared image, same weights and codes."""
    theirs_module = import_rosinality(folder)
    rows = []
    for grads in ("W+", "W+ and weights"):
        torch.manual_seed(0)
        theirs = theirs_module.Generator(size, 512, 8, channel_multiplier=2).to(device).eval()
        ours = Generator(size, 512, 8).to(device).eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        for g in (theirs, ours):
            g.requires_grad_(grads != "W+")
        w = torch.randn(batch, ours.n_latent, 512, device=device)

        def run_ours() -> torch.Tensor:
            wg = w.clone().requires_grad_(True)
            image = ours.synthesis(wg)
            image.square().mean().backward()
            return image

        def run_theirs() -> torch.Tensor:
            wg = w.clone().requires_grad_(True)
            image = theirs([wg], input_is_latent=True, randomize_noise=False)[0]
            image.square().mean().backward()
            return image

        error = (run_ours() - run_theirs()).abs().max().item()
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(rounds):
            times["ours"].append(seconds_per_call(run_ours, device, min_time=0.0))
            times["theirs"].append(seconds_per_call(run_theirs, device, min_time=0.0))
        ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["theirs"])
        rows.append(
            dict(
                size=size,
                batch=batch,
                grads=grads,
                project_ms=1e3 * ours_s,
                rosinality_ms=1e3 * theirs_s,
                speedup=theirs_s / ours_s,
                max_abs_error=error,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="default: 64 256 (+1024 on a GPU)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per measurement")
    parser.add_argument("--out", default=None)
    parser.add_argument("--rosinality", default=None, help="a clone of rosinality/stylegan2-pytorch to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the rosinality comparison")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (the issue's comparison: 2)")
    parser.add_argument("--gpu-paths", action="store_true", help="run the GPU paths' rows on a CPU too (a check)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
    if device.type == "cuda" or args.gpu_paths:
        gpu_rows = [r for s in sizes for r in gpu_path_rows(s, args.batch, device, args.min_time)]
        print_table(gpu_rows, ["size", "batch", "path", "fwd_bwd_img_s", "speedup_vs_float32", "max_abs_error"])
        payload["gpu_paths"] = gpu_rows
    else:
        print("GPU paths (bf16 autocast, channels_last, torch.compile): need a GPU, skipped")
    if args.rosinality:
        ros_rows = [r for s in sizes for r in rosinality_rows(args.rosinality, s, device, args.rounds)]
        print_table(ros_rows, ["size", "batch", "grads", "project_ms", "rosinality_ms", "speedup", "max_abs_error"])
        payload["rosinality"] = ros_rows
    write_json("generator", payload, args.out)


if __name__ == "__main__":
    main()
