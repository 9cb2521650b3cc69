"""The README's picture: rows of source | result | exact answer from evaluation runs on the world.

    python evaluate.py -m task=hair_transfer,hair_text,hair_sketch,hair_mask,hair_color world_pairs=3 \\
        batch_size=3 hydra.sweep.dir=SWEEP
    python scripts/world_picture.py SWEEP/0 SWEEP/1 SWEEP/2 SWEEP/3 SWEEP/4 docs/world_edit.png --rows 1
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from PIL import Image

TILE, PAD, SCALE = 64, 4, 4


def tiles(run: Path, rows: int | None) -> list[tuple[Path, Path, Path]]:
    """(source, result, answer) of the first `rows` pairs of a run (all when None)."""
    pairs = list(csv.DictReader(open(run / "inputs" / "pairs.csv")))
    if not pairs or "target" not in pairs[0]:
        raise SystemExit(f"{run}: no world pairs with exact answers (inputs/pairs.csv needs a target column)")
    inputs = run / "inputs"
    return [(inputs / r["source"], run / "edits" / f"{r['id']}.png", inputs / r["target"]) for r in pairs[:rows]]


def picture(runs: list[Path], rows: int | None = None) -> Image.Image:
    lines = [line for run in runs for line in tiles(run, rows)]
    out = Image.new("RGB", (3 * TILE + 2 * PAD, len(lines) * (TILE + PAD) - PAD), "white")
    for i, row in enumerate(lines):
        for j, path in enumerate(row):
            out.paste(Image.open(path).convert("RGB").resize((TILE, TILE)), (j * (TILE + PAD), i * (TILE + PAD)))
    return out.resize((out.width * SCALE, out.height * SCALE), Image.NEAREST)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", type=Path, nargs="+", help="evaluate.py run folders on the world, then the PNG to write")
    p.add_argument("--rows", type=int, default=None, help="pairs shown per run (default: all)")
    args = p.parse_args(argv)
    if len(args.paths) < 2:
        p.error("give at least one run folder and the PNG to write")
    *runs, out = args.paths
    tmp = out.with_name(f".{out.name}.tmp.png")
    picture(runs, args.rows).save(tmp)
    tmp.replace(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
