"""Image folders for e4e training (FFHQ) and testing (CelebA-HQ), with the official transforms.

Train: Resize(256) -> RandomHorizontalFlip -> [-1, 1]; test: Resize(256) -> [-1, 1] (e4e's
EncodeTransforms; the source is the target). Every file is checked when the dataset is built: an
unreadable file is skipped with a warning and listed in `report()`; a missing folder, or one with no
readable image, stops at once with the path and the conf key to set.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from hairclipv2.io import open_rgb

from .resumable import ResumableTrainData

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class ImageFolderDataset(Dataset):
    """Every readable image under `root` (recursively, sorted), as {"image": (3, S, S) in [-1, 1], "path"}."""

    def __init__(self, root: str | Path, transform: Any, conf_key: str = "data.train_dir"):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root} (set {conf_key}=/path/to/images)")
        candidates = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        self.paths: list[Path] = []
        self.skipped: list[dict[str, str]] = []
        for p in candidates:  # a full decode of each: truncated files are found now, not at step k
            try:
                open_rgb(p)
                self.paths.append(p)
            except ValueError as exc:
                self.skipped.append({"path": str(p), "reason": str(exc)})
        if self.skipped:
            listing = "\n".join(f"  {s['reason']}" for s in self.skipped)
            warnings.warn(f"{self.root}: skipped {len(self.skipped)} unusable image(s):\n{listing}", stacklevel=2)
        if not self.paths:
            raise FileNotFoundError(
                f"no readable image in {self.root} ({len(candidates)} candidate files, extensions {sorted(IMAGE_EXTENSIONS)}; set {conf_key})"
            )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.transform(open_rgb(self.paths[i])), "path": str(self.paths[i])}


def e4e_transforms(size: int, train: bool) -> transforms.Compose:
    steps: list[Any] = [transforms.Resize((size, size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip(0.5))
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    return transforms.Compose(steps)


class ImageFolderDataModule(ResumableTrainData):
    """FFHQ-style train folder and CelebA-HQ-style test folder (e4e's ffhq_encode dataset type)."""

    def __init__(
        self,
        train_dir: str,
        test_dir: str,
        batch_size: int = 8,
        test_batch_size: int = 4,
        num_workers: int = 4,
        test_workers: int = 4,
        image_size: int = 256,
        align: bool = False,
        aligned_dir: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.align_reports: dict[str, Any] = {}
        if align:  # FFHQ-align raw photographs once into aligned_dir/{train,test}, then use those
            train_dir, test_dir = (
                self._aligned(d, name, aligned_dir) for d, name in ((train_dir, "train"), (test_dir, "test"))
            )
        self.train_set = ImageFolderDataset(train_dir, e4e_transforms(image_size, train=True), "data.train_dir")
        self.test_set = ImageFolderDataset(test_dir, e4e_transforms(image_size, train=False), "data.test_dir")

    def _aligned(self, folder: str, name: str, aligned_dir: str | None) -> str:
        from hairclipv2.align import align_folder

        if aligned_dir is None:
            raise ValueError("data.align=true needs data.aligned_dir (where the aligned faces are written)")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"image folder not found: {folder} (set data.{name}_dir)")
        out = Path(aligned_dir) / name
        self.align_reports[name] = align_folder(folder, out, output_size=self.hparams.image_size, overwrite=True)
        return str(out)

    def report(self) -> dict[str, Any]:
        """What was found and skipped in each folder (and, with align, what alignment skipped)."""
        out = {
            name: {"root": str(ds.root), "images": len(ds), "skipped": ds.skipped}
            for name, ds in (("train", self.train_set), ("test", self.test_set))
        }
        for name, rep in self.align_reports.items():
            out[name]["align_skipped"] = rep["skipped"]
        return out

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.test_set,
            self.hparams.test_batch_size,
            shuffle=False,
            num_workers=self.hparams.test_workers,
            drop_last=True,
            generator=torch.Generator(),  # leaves torch's global random state to training
        )

    test_dataloader = val_dataloader
