"""Write world faces as PNGs, to edit with the photo command or the browser editor on the world:

    python -m hairclipv2.world faces/ --n 4 --seed 0      # faces/world_0_0.png ... and captions.txt
    python -m hairclipv2.edit faces/world_0_0.png --aligned --set experiment=hairclipv2_world \\
        --text "long black straight hair"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import World, caption


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hairclipv2.world", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the folder to write into")
    p.add_argument("--n", type=int, default=4, help="how many faces (default 4)")
    p.add_argument("--seed", type=int, default=0, help="the faces are drawn from this seed alone")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be at least 1, got {args.n}")
    from PIL import Image

    from ..io import save_image_atomic, to_uint8

    world = World()
    attributes = world.attributes(world.z(args.n, args.seed))
    faces = world.render(attributes)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, words) in enumerate(zip(faces.image, caption(attributes))):
        path = save_image_atomic(Image.fromarray(to_uint8(image)), args.out / f"world_{args.seed}_{i}.png")
        lines.append(f"{path.name}\t{words}")
        print(f"{path}  ({words})")
    (args.out / "captions.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
