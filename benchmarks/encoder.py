"""Encoder throughput at 256 px: images/s forward and forward+backward for e4e (FFHQ shape, 18
codes) at the Inference stage and at stage 0 (the baseline: the body and one head), and for pSp's
GradualStyleEncoder.

    python benchmarks/encoder.py [--batch 2] [--min-time 1.0] [--out results.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hairclipv2.models.inversion import build_encoder  # noqa: E402

from common import device_name, print_table, seconds_per_call, write_json  # noqa: E402


def bench(name: str, encoder: torch.nn.Module, batch: int, device: torch.device, min_time: float) -> dict:
    x = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1

    def forward() -> None:
        with torch.no_grad():
            encoder(x)

    def forward_backward() -> None:
        encoder.zero_grad(set_to_none=True)
        encoder(x).square().mean().backward()

    encoder.eval()
    t_fwd = seconds_per_call(forward, device, min_time)
    encoder.train()
    t_bwd = seconds_per_call(forward_backward, device, min_time)
    return dict(encoder=name, batch=batch, fwd_img_s=batch / t_fwd, fwd_bwd_img_s=batch / t_bwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    e4e = build_encoder("Encoder4Editing", 1024).to(device)
    rows = [bench("e4e (stage 18, inference)", e4e, args.batch, device, args.min_time)]
    e4e.set_progressive_stage(0)
    rows.append(bench("e4e (stage 0, baseline)", e4e, args.batch, device, args.min_time))
    rows.append(
        bench(
            "pSp GradualStyleEncoder",
            build_encoder("GradualStyleEncoder", 1024).to(device),
            args.batch,
            device,
            args.min_time,
        )
    )
    base = rows[1]
    for r in rows:
        r["fwd_vs_stage0"] = r["fwd_img_s"] / base["fwd_img_s"]
        r["fwd_bwd_vs_stage0"] = r["fwd_bwd_img_s"] / base["fwd_bwd_img_s"]
    print(f"device: {device_name(device)}, torch {torch.__version__}, input 256 px")
    print_table(rows, ["encoder", "batch", "fwd_img_s", "fwd_bwd_img_s", "fwd_vs_stage0", "fwd_bwd_vs_stage0"])
    write_json("encoder", {"device": device_name(device), "torch": torch.__version__, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
