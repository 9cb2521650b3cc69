"""Pairs as a dataset of edit items, and the embedded default (skimage's astronaut + a generated reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..editing.latents import read_reference_codes, read_source_fs
from ..editing.proxies import ColourCondition
from ..io import open_rgb, pil_to_tensor, read_image, save_image_atomic, to_uint8
from .pairs import Pair, read_label_png

TASK_KIND = {
    "hair_transfer": "reference",
    "hair_text": "text",
    "hair_mask": "mask",
    "hair_sketch": "sketch",
    "hair_color": "colour",
    "reconstruction": "reconstruction",
}
DEFAULT_TEXT = "short curly hair"
DEFAULT_RGB = (200, 60, 40)


class PairsDataset(Dataset):
    """Items {"source", "kind", "id", "row", "condition", and "reference" / "text" / "colour"}, with
    images at `size` px in [-1, 1]; `align` FFHQ-aligns every image first (MTCNN)."""

    def __init__(
        self,
        pairs: list[Pair],
        task: str,
        size: int,
        align: bool = False,
        generator: torch.nn.Module | None = None,
        hairstyle_block: int = 3,
        src_f_dir: str | Path | None = None,
        ref_latent_dir: str | Path | None = None,
    ):
        """`src_f_dir` / `ref_latent_dir`: HairCLIPv2's cached inversions (`src_F/<stem>.npz`,
        `ref_latent/<stem>.npy`), used for the images that have one (needs `generator`)."""
        self.pairs, self.task, self.size = pairs, task, size
        self.generator, self.hairstyle_block = generator, hairstyle_block
        self.src_f_dir = Path(src_f_dir) if src_f_dir else None
        self.ref_latent_dir = Path(ref_latent_dir) if ref_latent_dir else None
        self.aligner = None
        if align:
            from ..align import FaceAligner

            self.aligner = FaceAligner()

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, path: Path) -> torch.Tensor:
        if self.aligner is None:
            return read_image(path, self.size)
        return pil_to_tensor(self.aligner.align(open_rgb(path), self.size, name=str(path)).image)

    def coverage(self, path: Path) -> torch.Tensor:
        """A grayscale hair coverage PNG as (1, size, size) in [0, 1] (area-resized)."""
        img = Image.open(path).convert("L")
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BOX)
        return torch.from_numpy(np.asarray(img).copy()).float()[None] / 255

    def __getitem__(self, i: int) -> dict[str, Any]:
        """The pair's item; a pair whose files cannot be decoded (or aligned) gives {"id", "row",
        "condition", "kind", "error"} instead, so that it fails alone and the run goes on."""
        p = self.pairs[i]
        try:
            return self.load(p)
        except Exception as exc:  # a bad image, mask, latent or a faceless photo: this pair only
            error = f"{type(exc).__name__}: {exc}"
            return {"kind": TASK_KIND[self.task], "id": p.id, "row": p.row, "condition": p.condition, "error": error}

    def load(self, p: Pair) -> dict[str, Any]:
        item: dict[str, Any] = {
            "source": self.image(p.source),
            "kind": TASK_KIND[self.task],
            "id": p.id,
            "row": p.row,
            "condition": p.condition,
            "source_stem": p.source.stem,  # the cached inversions' file names (HairCLIPv2's src_F/<stem>.npz)
        }
        if p.reference is not None:
            item["reference"] = self.image(p.reference)
            item["reference_stem"] = p.reference.stem
        if p.text is not None:
            item["text"] = p.text
        if p.mask is not None:
            item["mask"] = torch.from_numpy(read_label_png(p.mask, "mask", self.size, f"row {p.row}")).long()
        if p.sketch is not None:
            item["sketch"] = torch.from_numpy(read_label_png(p.sketch, "sketch", self.size, f"row {p.row}"))
        if self.src_f_dir is not None and (self.src_f_dir / f"{p.source.stem}.npz").is_file():
            cached = self.src_f_dir / f"{p.source.stem}.npz"
            item["src_latent"], item["src_F"] = read_source_fs(cached, self.generator, self.hairstyle_block)
        if p.reference is not None and self.ref_latent_dir is not None:
            cached = self.ref_latent_dir / f"{p.reference.stem}.npy"
            if cached.is_file():
                item["reference_codes"] = read_reference_codes(cached, self.generator)
        if p.scenario is not None:
            item["scenario"] = p.scenario
        if p.target is not None:
            item["target"] = self.image(p.target)
            item["target_hair"], item["source_hair"] = (self.coverage(f) for f in (p.target_hair, p.source_hair))
        if self.task == "hair_transfer" and p.color_reference is not None:  # triples: hairstyle, then colour
            item["colour"] = ColourCondition(image=self.image(p.color_reference))
        if self.task == "hair_color":
            if p.color_reference is not None:
                item["colour"] = ColourCondition(image=self.image(p.color_reference))
            else:
                item["colour"] = (
                    ColourCondition(text=p.color_text) if p.color_text is not None else ColourCondition(rgb=p.rgb)
                )
        return item


# Optional per-item entries: a batch keeps them only when every item has them (else they are recomputed).
CACHED = ("src_latent", "src_F", "reference_codes")


def collate_edits(items: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch dict; items that could not be loaded go to batch["failures"] (id, row, condition, error)."""
    failed = [it for it in items if "error" in it]
    items = [it for it in items if "error" not in it]
    batch: dict[str, Any] = {"kind": (items or failed)[0]["kind"]}
    if failed:
        batch["failures"] = [{k: it[k] for k in ("id", "row", "condition", "error")} for it in failed]
    if not items:
        return batch
    for key in items[0]:
        if key == "kind" or (key in CACHED and not all(key in it for it in items)):
            continue
        values = [it[key] for it in items]
        batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return batch


def embedded_default(out_dir: Path, task: str, generator: torch.nn.Module, latent_avg: torch.Tensor) -> list[Pair]:
    """skimage's astronaut (FFHQ-aligned) as the source and, for hair_transfer, a picture of the
    generator as the reference, written to out_dir/inputs/."""
    from skimage import data

    from ..align import FaceAligner

    inputs = out_dir / "inputs"
    face = FaceAligner().align(Image.fromarray(data.astronaut()), output_size=generator.size)
    source = save_image_atomic(face.image, inputs / "astronaut.png")
    pair = Pair(1, "astronaut", source)
    if task == "hair_transfer":
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            codes = latent_avg.reshape(1, 1, -1) + 0.7 * torch.randn(1, generator.n_latent, generator.style_dim)
            ref = generator.synthesis(codes.to(latent_avg.device))
        pair.reference = save_image_atomic(Image.fromarray(to_uint8(ref[0])), inputs / "generated_reference.png")
    elif task == "hair_text":
        pair.text = DEFAULT_TEXT
    elif task == "hair_color":
        pair.rgb = DEFAULT_RGB
    elif task == "hair_mask":
        pair.mask = save_image_atomic(Image.fromarray(painted_mask(generator.size // 2)), inputs / "painted_mask.png")
    elif task == "hair_sketch":
        pair.sketch = save_image_atomic(Image.fromarray(hair_strokes(generator.size // 2)), inputs / "sketch.png")
    return [pair]


def painted_mask(size: int) -> np.ndarray:
    """A painted label map of an FFHQ-aligned head (HairCLIPv2's painting classes): an oval face (1)
    with ears (6) under a long hair cap (10) reaching the shoulders, on background (0); (size, size) uint8."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    labels = np.zeros((size, size), np.uint8)
    labels[((xx - 0.5) / 0.36) ** 2 + ((yy - 0.48) / 0.42) ** 2 <= 1] = 10  # hair, down to the shoulders
    labels[((xx - 0.5) / 0.21) ** 2 + ((yy - 0.56) / 0.29) ** 2 <= 1] = 1  # face
    for cx in (0.28, 0.72):
        labels[((xx - cx) / 0.035) ** 2 + ((yy - 0.55) / 0.07) ** 2 <= 1] = 6  # ears
    return labels


def hair_strokes(size: int) -> np.ndarray:
    """Hair strokes as HairCLIPv2's sketch canvas holds them: 2 px lines of value 128 on 0; a few
    wavy strands falling from the crown over one side of the head; (size, size) uint8."""
    canvas = Image.new("L", (size, size), 0)
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    for k in range(5):
        x0 = 0.58 + 0.05 * k
        points = [((x0 + 0.03 * np.sin(6 * t + k)) * size, (0.15 + 0.6 * t) * size) for t in np.linspace(0, 1, 24)]
        draw.line(points, fill=128, width=max(1, round(2 * size / 512)))
    return np.array(canvas)
