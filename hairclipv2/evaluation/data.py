"""Pairs as a dataset of edit items, and the embedded default (skimage's astronaut + a generated reference)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..editing.proxies import ColourCondition
from ..io import pil_to_tensor, read_image, save_image_atomic, to_uint8
from .pairs import Pair

TASK_KIND = {"hair_transfer": "reference", "hair_text": "text", "hair_color": "colour", "reconstruction": "reconstruction"}
DEFAULT_TEXT = "short curly hair"
DEFAULT_RGB = (200, 60, 40)


class PairsDataset(Dataset):
    """Items {"source", "kind", "id", "row", "condition", and "reference" / "text" / "colour"}, with
    images at `size` px in [-1, 1]; `align` FFHQ-aligns every image first (MTCNN)."""

    def __init__(self, pairs: list[Pair], task: str, size: int, align: bool = False):
        self.pairs, self.task, self.size = pairs, task, size
        self.aligner = None
        if align:
            from ..align import FaceAligner

            self.aligner = FaceAligner()

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, path: Path) -> torch.Tensor:
        if self.aligner is None:
            return read_image(path, self.size)
        from ..align import open_image

        return pil_to_tensor(self.aligner.align(open_image(path), self.size, name=str(path)).image)

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        item: dict[str, Any] = {"source": self.image(p.source), "kind": TASK_KIND[self.task], "id": p.id, "row": p.row, "condition": p.condition}
        if p.reference is not None:
            item["reference"] = self.image(p.reference)
        if p.text is not None:
            item["text"] = p.text
        if self.task == "hair_color":
            if p.color_reference is not None:
                item["colour"] = ColourCondition(image=self.image(p.color_reference))
            else:
                item["colour"] = ColourCondition(text=p.color_text) if p.color_text is not None else ColourCondition(rgb=p.rgb)
        return item


def collate_edits(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {"kind": items[0]["kind"]}
    for key in items[0]:
        if key == "kind":
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
    return [pair]
