"""Seconds per edit of the whole fast path (FS encoder -> bald mapper -> proxy mapper -> blending ->
decode), from an aligned picture to the final one, per mode and per stage.

    python benchmarks/fast_path.py [--size 64|1024] [--sources 2] [--repeats 3] [--device cpu|cuda] [--out FILE]

Random weights (an FS encoder, text and colour mappers drawn from a fixed seed; the timing does not
depend on what they learnt), batched over `--sources` pictures. Rows: the encoders alone
(`editing.embedding.method=encoder`, `editing.<mode>.method=encoder`, no refinement) and with the
world editor's refinement (50 FS steps, 10 text steps; for an RGB colour, 3 Gauss-Newton steps,
`editing.colour.lab_solve=3`). The speed issue's GPU targets at 1024 px: under 1 s an edit with the
encoders alone, under 5 s with refinement (`benchmarks/gpu.sh` runs this beside `benchmarks/editing.py`,
whose rows give HairCLIPv2's schedule on the same card).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from editing import SMALL, build, chosen_device, parse_size_and_device, timed  # noqa: E402

from hairclipv2.editing.amortised import LatentMapper, save_mapper  # noqa: E402
from hairclipv2.editing.editor import EditBatch  # noqa: E402
from hairclipv2.editing.proxies import COLOUR_CONDITION, ColourCondition  # noqa: E402
from hairclipv2.models.encoders.fs import FSEncoder, save_fs_encoder  # noqa: E402
from hairclipv2.models.encoders.psp import Encoder4Editing  # noqa: E402

from common import device_name, print_table, write_json  # noqa: E402

TARGETS = {"encoders alone": 1.0, "encoders + refinement": 5.0}  # seconds an edit at 1024 px on a GPU
SETTINGS = {  # row -> (embedding, text, colour) settings over the encoder path's
    "encoders alone": (dict(refinement=0), dict(refinement=0), dict(refinement=0, lab_solve=0)),
    "encoders + refinement": (dict(refinement=50), dict(refinement=10), dict(refinement=0, lab_solve=3)),
}


def random_files(editor, folder: Path) -> dict[str, str]:
    """An FS encoder and text and colour mappers with random weights for this editor's generator,
    CLIP and rows, saved as the editor loads them."""
    g, width = editor.generator, editor.clip.embed_dim
    torch.manual_seed(0)
    encoder = Encoder4Editing(50, "ir_se", g.size, input_size=min(256, g.size))
    fs = FSEncoder(encoder, g, editor.latent_avg.reshape(-1)[-g.style_dim :], SMALL[g.size]["hairstyle_block"])
    lo, hi = editor.colour_proxy.edit_span
    mappers = {
        "text": LatentMapper("text", width, g.style_dim, editor.text_proxy.cfg.rows),
        "colour": LatentMapper("colour", width + COLOUR_CONDITION, g.style_dim, hi - lo),
    }
    for mapper in mappers.values():
        torch.nn.init.normal_(mapper.out.weight, std=0.01)  # answers other than the start
    files = {f"{kind}_mapper_weights": str(save_mapper(m, folder / f"{kind}.pt")) for kind, m in mappers.items()}
    return {**files, "fs_encoder_weights": str(save_fs_encoder(fs, folder / "fs_encoder.pt"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parse_size_and_device(parser)
    device = chosen_device(args)
    if device is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        files = random_files(build(args.size, 1, device), Path(folder))
        encoder = dict(method="encoder")
        editor = build(args.size, 1, device, **files, embedding=encoder, text=encoder, colour=encoder)
    n, g = args.sources, editor.generator
    with torch.no_grad():
        codes = editor.latent_avg + 0.6 * torch.randn(n, g.n_latent, g.style_dim, device=device)
        sources = g.synthesis(codes).clamp(-1, 1)
    batches = {
        "text": EditBatch(sources, "text", texts=["short curly hair"] * n),
        "colour (RGB)": EditBatch(sources, "colour", colours=[ColourCondition(rgb=(200, 60, 40))] * n),
    }
    parts = (editor.embedding, editor.text_proxy, editor.colour_proxy)
    configs = [part.cfg for part in parts]
    rows = []
    for row, changes in SETTINGS.items():
        for part, cfg, change in zip(parts, configs, changes, strict=True):
            part.cfg = dataclasses.replace(cfg, **change)
        for mode, batch in batches.items():
            outs = []
            with torch.enable_grad():
                editor.edit(batch)  # warm-up: the first call pays for allocations and caches
                total = sum(timed(lambda b=batch: outs.append(editor.edit(b)), device) for _ in range(args.repeats))
            stages: dict[str, float] = {}
            for out in outs:
                for stage, seconds in out.seconds.items():
                    stages[f"s_{stage}"] = stages.get(f"s_{stage}", 0.0) + seconds / (args.repeats * n)
            target = TARGETS[row] if args.size == 1024 else None
            rows.append(dict(path=row, mode=mode, s_per_edit=total / (args.repeats * n), target_s=target, **stages))
    info = f"{device_name(device)}, torch {torch.__version__}, {args.size} px generator, random weights"
    print(f"device: {info}; {n} sources a batch, {args.repeats} timed repeats")
    stage_columns = sorted({k for r in rows for k in r if k.startswith("s_") and k != "s_per_edit"})
    print_table(rows, ["path", "mode", "s_per_edit", "target_s", *stage_columns])
    write_json(
        f"fast_path_{args.size}", {"device": info, "sources": n, "repeats": args.repeats, "rows": rows}, args.out
    )


if __name__ == "__main__":
    main()
