"""Edit the hair of one photograph and get the photograph back.

    python -m hairclipv2.edit PHOTO (--text "..." | --reference REF.jpg | --color "..." | --rgb R,G,B
                                     | --sketch S.png | --mask M.png) [--sketch S.png] [--mask M.png]
                                    [-o OUT.jpg] [--all-faces] [--weights DIR] [--set KEY=VALUE ...]

The face is FFHQ-aligned (MTCNN), embedded and edited at the generator's size, and the edit is pasted
back into the original photo: the inverse of the alignment, blended with a feathered mask around the
hair of the source and of the result, so that everything outside it keeps the photo's pixels bit for
bit. Written next to OUT: OUT (the photo), OUT_aligned.png (the crop), OUT_edit.png (the edited crop)
and OUT_region.png (the blend weight in the photo). Without `--weights` the editor is the embedded
default (random weights: the pictures mean nothing, as the warning says); `--weights DIR` uses the
official files of HairCLIPv2's pretrained_models/ folder (experiment=hairclipv2_ffhq).

argparse, not Hydra: one photo and one condition read best as a command line; the editor itself is
still built from the Hydra configs (`--set` passes overrides such as editing.text.steps=50).
Bad input (no face, a tiny or unreadable image, an empty text, a sketch or mask of the wrong size)
ends with a message on stderr and exit status 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .align import FaceAligner, NoFaceError, ffhq_quad, warp_to_quad
from .editing.editor import EditBatch
from .editing.proxies import ColourCondition
from .evaluation.pairs import PairsError, parse_rgb, read_label_png
from .io import open_rgb, pil_to_tensor, save_image_atomic, to_uint8
from .paste import feathered_region, paste_back
from .pipeline import editor_config, from_config

RANDOM_WARNING = "RANDOM WEIGHTS (no --weights): the edit is a meaningless picture; it shows that the pipeline runs"


class EditError(ValueError):
    """Input the command cannot use (the message says which and why)."""


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
    p.add_argument("--all-faces", action="store_true", help="edit every face (default: the largest)")
    p.add_argument("--weights", default=None, help="HairCLIPv2's pretrained_models/ folder (official weights)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a Hydra override of the editor")
    p.add_argument("--grow", type=int, default=None, help="px the hair region grows by (default: size / 32)")
    p.add_argument("--feather", type=int, default=None, help="px of soft edge (default: size / 32)")
    args = p.parse_args(argv)
    if not any((args.text, args.reference, args.color, args.rgb, args.sketch, args.mask)):
        p.error("give one of --text, --reference, --color, --rgb, or a --sketch / --mask")
    return args


def build_editor(cfg: Any, **parts: Any):
    """The editor of `cfg.editing`; `parts` replace arguments of its factory (a parser, say)."""
    return from_config(cfg, RANDOM_WARNING, **parts)


def read_condition_image(path: str, what: str, size: int) -> np.ndarray:
    try:
        return read_label_png(Path(path), what, size, f"--{what}")
    except (PairsError, FileNotFoundError) as exc:
        raise EditError(str(exc)) from None


def edit_batch(args: argparse.Namespace, source: torch.Tensor, aligner: FaceAligner, size: int) -> EditBatch:
    """The EditBatch of one aligned face (1, 3, S, S) for the command's condition."""
    masks = sketches = None
    if args.mask:
        masks = torch.from_numpy(read_condition_image(args.mask, "mask", size)).long()[None]
    if args.sketch:
        sketches = torch.from_numpy(read_condition_image(args.sketch, "sketch", size))[None]
    if args.text is not None:
        if not args.text.strip():
            raise EditError("--text is empty")
        return EditBatch(source, "text", texts=[args.text], masks=masks, sketches=sketches)
    if args.reference:
        ref = aligner.align(open_rgb(args.reference), size, name=args.reference).image
        return EditBatch(source, "reference", references=pil_to_tensor(ref)[None], masks=masks, sketches=sketches)
    if args.color is not None or args.rgb:
        if args.color is not None and not args.color.strip():
            raise EditError("--color is empty")
        colour = (
            ColourCondition(text=args.color) if args.color is not None else ColourCondition(rgb=rgb_argument(args.rgb))
        )
        return EditBatch(source, "colour", colours=[colour])
    if sketches is not None:
        return EditBatch(source, "sketch", sketches=sketches)
    return EditBatch(source, "mask", masks=masks)


def rgb_argument(value: str) -> tuple[int, int, int]:
    try:
        return parse_rgb(value, "--rgb")
    except PairsError as exc:
        raise EditError(str(exc)) from None


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Inputs are checked first, everything is computed, then written: an error leaves no file behind."""
    cfg = editor_config(args.weights, args.set)
    size = int(cfg.generator.size)
    photo = open_rgb(args.photo)
    aligner = FaceAligner()
    faces = aligner.faces(photo, name=args.photo)
    faces = faces if args.all_faces else faces[:1]
    probe = pil_to_tensor(warp_to_quad(photo, ffhq_quad(faces[0]), size))[None]
    edit_batch(args, probe, aligner, size)  # the condition, checked before the editor is built
    editor = build_editor(cfg)
    grow = args.grow if args.grow is not None else max(1, size // 32)
    feather = args.feather if args.feather is not None else max(1, size // 32)
    pasted, alpha = np.asarray(photo).copy(), np.zeros(photo.size[::-1], np.float32)
    crops, edits = [], []
    for landmarks in faces:
        quad = ffhq_quad(landmarks)
        crop = warp_to_quad(photo, quad, size)
        source = pil_to_tensor(crop)[None]
        with torch.enable_grad():
            out = editor.edit(edit_batch(args, source, aligner, size))
        hair = torch.maximum(out.source_hair, out.result_hair).cpu()
        pasted, weight = paste_back(pasted, out.result[0], feathered_region(hair, grow, feather), quad)
        alpha = np.maximum(alpha, weight)
        crops.append(crop)
        edits.append(Image.fromarray(to_uint8(out.result[0])))
    target = Path(args.out) if args.out else Path(args.photo).with_name(f"{Path(args.photo).stem}_edited.png")
    stem = target.with_suffix("")
    written = {"photo": save_image_atomic(Image.fromarray(pasted), target)}
    for i, (crop, edit) in enumerate(zip(crops, edits)):
        tag = "" if len(crops) == 1 else f"_face{i}"
        written[f"aligned{tag}"] = save_image_atomic(crop, Path(f"{stem}{tag}_aligned.png"))
        written[f"edit{tag}"] = save_image_atomic(edit, Path(f"{stem}{tag}_edit.png"))
    written["region"] = save_image_atomic(Image.fromarray(np.uint8(np.rint(alpha * 255))), Path(f"{stem}_region.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        written = run(args)
    except (EditError, NoFaceError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"{name:10s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
