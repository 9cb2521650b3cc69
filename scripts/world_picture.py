"""The README's picture: rows of source | result | exact answer from an evaluation run on the world.

    python evaluate.py experiment=hairclipv2_world task=hair_text world_pairs=3 \\
        editing.embedding.w_steps=400 editing.embedding.fs_steps=150 hydra.run.dir=RUN
    python scripts/world_picture.py RUN docs/world_edit.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from PIL import Image

TILE, PAD, SCALE = 64, 4, 4


def picture(run: Path) -> Image.Image:
    rows = list(csv.DictReader(open(run / "inputs" / "pairs.csv")))
    if not rows or "target" not in rows[0]:
        raise SystemExit(f"{run}: no world pairs with exact answers (inputs/pairs.csv needs a target column)")
    out = Image.new("RGB", (3 * TILE + 2 * PAD, len(rows) * (TILE + PAD) - PAD), "white")
    for i, row in enumerate(rows):
        tiles = (run / "inputs" / row["source"], run / "edits" / f"{row['id']}.png", run / "inputs" / row["target"])
        for j, path in enumerate(tiles):
            out.paste(Image.open(path).convert("RGB").resize((TILE, TILE)), (j * (TILE + PAD), i * (TILE + PAD)))
    return out.resize((out.width * SCALE, out.height * SCALE), Image.NEAREST)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="an evaluate.py run folder of experiment=hairclipv2_world")
    p.add_argument("out", type=Path, help="the PNG to write")
    args = p.parse_args(argv)
    tmp = args.out.with_name(f".{args.out.name}.tmp.png")
    picture(args.run).save(tmp)
    tmp.replace(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
