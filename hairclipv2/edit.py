"""Edit the hair of one photograph and get the photograph back.

    python -m hairclipv2.edit PHOTO (--text "..." | --reference REF.jpg | --color "..." | --rgb R,G,B
                                     | --sketch S.png | --mask M.png) [--sketch S.png] [--mask M.png]
                                    [-o OUT.jpg] [--all-faces] [--weights DIR] [--set KEY=VALUE ...]

The face is FFHQ-aligned (dlib's 68 landmarks, MTCNN where dlib finds none), embedded and edited at the generator's size, and the edit is pasted
back into the original photo: the inverse of the alignment, blended with a feathered mask around the
hair of the source and of the result, so that everything outside it keeps the photo's pixels bit for
bit. Written next to OUT: OUT (the photo), OUT_aligned.png (the crop), OUT_edit.png (the edited crop)
and OUT_region.png (the blend weight in the photo). Without `--weights` the editor is the embedded
default (random weights: the pictures mean nothing, as the warning says); `--weights DIR` uses the
official files of HairCLIPv2's pretrained_models/ folder (experiment=hairclipv2_ffhq).

argparse, not Hydra: one photo and one condition read best as a command line; the editor itself is
still built from the Hydra configs (`--set` passes overrides such as editing.text.steps=50).
Bad input (no face, a tiny or unreadable image, an empty text, a sketch or mask of the wrong size)
ends with a message on stderr and exit status 2, and nothing is written. An edit that leaves the
photo as it was (no hair found in it nor in the edit) writes its outputs, warns, and exits with 3.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hairclipv2.edit", description=__doc__.split("\n\n")[0])
    p.add_argument("photo")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--text", help="hairstyle from text")
    mode.add_argument("--reference", help="hairstyle from a reference photo")
    mode.add_argument("--color", help="hair colour from text")
    mode.add_argument("--rgb", help="hair colour as R,G,B (0..255)")
    p.add_argument("--sketch", help="hair strokes: a single-channel PNG of the edit size or half of it")
    p.add_argument("--mask", help="a painted label map (0 background, 1 face, 6 ear, 10 hair), PNG")
    p.add_argument(
        "-o", "--out", default=None, help="the edited photo (default: PHOTO_edited.png; a .jpg is re-encoded)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.add_argument("--all-faces", action="store_true", help="edit every face (default: the largest)")
    p.add_argument(
        "--aligned", action="store_true", help="PHOTO is an aligned face already (a square FFHQ crop, a world face)"
    )
    p.add_argument("--weights", default=None, help="HairCLIPv2's pretrained_models/ folder (official weights)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a Hydra override of the editor")
    p.add_argument(
        "--fast", action="store_true", help="about a tenth of the optimisation steps: a quick CPU try, coarser edits"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the edit (and the demo's random networks); default 0")
    p.add_argument("--grow", type=int, default=None, help="px the hair region grows by (default: size / 32)")
    p.add_argument("--feather", type=int, default=None, help="px of soft edge (default: size / 32)")
    args = p.parse_args(argv)
    if all(v is None for v in (args.text, args.reference, args.color, args.rgb, args.sketch, args.mask)):
        p.error("give one of --text, --reference, --color, --rgb, or a --sketch / --mask")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from . import photo_command  # torch, the editor: only once the arguments are known to be right

    return photo_command.main(args)


if __name__ == "__main__":
    sys.exit(main())
