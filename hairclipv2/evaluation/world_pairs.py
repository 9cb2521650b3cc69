"""The world's benchmark pairs: world faces, a condition per task, and the exact answer of each edit.

`write_world_pairs(folder, task, n)` draws n source faces (all with hair) and n reference faces,
writes them as PNGs with `pairs.csv`, and for each pair the ground truth the evaluation scores
against (`target`, `target_hair`, `source_hair`; `hairclipv2/evaluation/ground_truth.py`):

| task | condition | target |
|---|---|---|
| hair_transfer | the reference picture | the source with the reference's hair (shape and colour) |
| hair_text | the reference's hair caption ("long red curly hair") | the source with the reference's hair |
| hair_color | the reference's hair colour: as RGB, as its name ("auburn hair"), or the reference's picture | the source with its hair in that colour (for a name: the name's palette colour) |
| hair_sketch | the strokes of the target's hair | the source with the reference's hairstyle in its own colour |
| hair_mask | the target's labels painted in HairCLIPv2's classes | the source with the reference's hairstyle in its own colour |
| reconstruction | none | the source |

A caption names the length, colour, texture and fringe only, so the text task's target holds more
(volume, parting, exact colour) than the words ask: its hair IoU and colour error are the meaningful
numbers there. Strokes and painted labels say nothing of colour, so those targets keep the source's.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..io import save_image_atomic, to_uint8
from ..world import HAIR_COLOURS, WORLD_16, FaceAttributes, World, caption, hair_colour_name

SOURCE_SEED, REFERENCE_SEED = 20_261_206, 20_261_207
COLOUR_CONDITIONS = ("rgb", "text", "reference")  # how hair_color gives the reference's hair colour


def haired_faces(world: World, n: int, seed: int) -> FaceAttributes:
    """n faces of the prior that have hair (bald draws are skipped, in order)."""
    z = world.z(4 * n + 8, seed)
    faces = world.attributes(z)
    keep = torch.nonzero(faces.hair_amount > 0.05).flatten()[:n]
    return faces.index(keep)


def painted(labels: torch.Tensor) -> np.ndarray:
    """World labels (1, S, S) as a painted map in HairCLIPv2's classes (background 0, face 1, ear 6,
    hair 10): eyes and mouth are face; neck and clothes are background."""
    out = torch.zeros_like(labels)
    ids = WORLD_16.classes
    for name in ("face", "eye", "mouth"):
        out[labels == ids[name]] = 1
    out[labels == ids["ear"]] = 6
    out[labels == ids["hair"]] = 10
    return out[0].numpy().astype(np.uint8)


SHAPE_ONLY = ("hair_sketch", "hair_mask")  # conditions without a colour: the answer keeps the source's


def write_world_pairs(folder: str | Path, task: str, n: int = 8, size: int = 64, colour: str = "rgb") -> Path:
    """Write the pairs of `task` into `folder` (see the module docstring); returns its pairs.csv.
    `colour`: how hair_color gives the colour (`COLOUR_CONDITIONS`)."""
    if colour not in COLOUR_CONDITIONS:
        raise ValueError(f"world_colour: expected one of {COLOUR_CONDITIONS}, found {colour!r}")
    folder = Path(folder)
    world = World(size)
    sources, references = haired_faces(world, n, SOURCE_SEED), haired_faces(world, n, REFERENCE_SEED)
    transfer = sources.with_hair_of(references, colour=task not in SHAPE_ONLY)
    names = hair_colour_name(references.hair_rgb)
    asked = references.hair_rgb
    if colour == "text":  # what the words mean: the name's palette colour
        asked = torch.tensor([HAIR_COLOURS[name] for name in names], dtype=asked.dtype)
    targets = sources.with_hair_colour(asked) if task == "hair_color" else transfer
    if task == "reconstruction":
        targets = sources
    shots = {name: world.render(f) for name, f in (("source", sources), ("reference", references), ("target", targets))}
    texts = caption(references)
    rows = []
    for i in range(n):
        pid = f"world{i:02d}"
        row = {"id": pid}
        for name in ("source", "target"):
            row[name] = save_png(to_uint8(shots[name].image[i]), folder / f"{name}s" / f"{pid}.png")
            hair = (shots[name].hair[i, 0] * 255).round().to(torch.uint8).numpy()
            row[f"{name}_hair"] = save_png(hair, folder / f"{name}s" / f"{pid}_hair.png")
        reference = folder / "references" / f"{pid}.png"
        if task == "hair_transfer":
            row["reference"] = save_png(to_uint8(shots["reference"].image[i]), reference)
        elif task == "hair_text":
            row["text"] = texts[i]
        elif task == "hair_color" and colour == "rgb":
            row["rgb"] = ",".join(map(str, (asked[i] * 255).round().int().tolist()))
        elif task == "hair_color" and colour == "text":
            row["color_text"] = f"{names[i]} hair"
        elif task == "hair_color":
            row["color_reference"] = save_png(to_uint8(shots["reference"].image[i]), reference)
        elif task == "hair_sketch":
            row["sketch"] = save_png(shots["target"].sketch[i, 0].numpy(), folder / "sketches" / f"{pid}.png")
        elif task == "hair_mask":
            row["mask"] = save_png(painted(shots["target"].labels[i]), folder / "masks" / f"{pid}.png")
        rows.append(row)
    columns = list(rows[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    path = folder / "pairs.csv"
    tmp = path.with_name(".pairs.csv.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)
    return path


def save_png(array: np.ndarray, path: Path) -> str:
    """Save an (H, W) or (H, W, 3) uint8 array; returns the path relative to the pairs folder."""
    save_image_atomic(Image.fromarray(array), path)
    return f"{path.parent.name}/{path.name}"
