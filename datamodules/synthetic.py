"""Synthetic inversion data: images drawn from the generator being inverted, with their true codes.

The embedded default of `train.py`: it needs no dataset and no weights, and it measures how well the
encoder recovers the codes (`val/latent_mse`). Images are rendered once, in `setup`, by the training
module's own generator (no second generator), deterministically from `seed`, the same on every rank.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from hairclipv2.models.inversion import resize_images
from hairclipv2.weights import sampling_seed

from .resumable import ResumableTrainData


class TensorPairs(Dataset):
    def __init__(self, images: torch.Tensor, codes: torch.Tensor):
        self.images, self.codes = images, codes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "w": self.codes[i]}


class SyntheticInversionDataModule(ResumableTrainData):
    """`n_train` / `n_val` images G(w) with w = mapping(z) (optionally truncated towards latent_avg),
    resized to `image_size`; items {"image": (3, S, S), "w": (n_latent, style_dim)}.

    `clamp` clips the images to [-1, 1] (the range every loss and metric assumes). A random-weight
    generator's outputs are far wider (std ~2 in the 64 px demo: most pixels saturate), so the
    clipped picture no longer pins its code down; without clipping the targets keep their true code
    but L2 on such values makes the demo's training unstable at its learning rate."""

    def __init__(
        self,
        n_train: int = 64,
        n_val: int = 8,
        batch_size: int = 4,
        val_batch_size: int = 4,
        image_size: int = 64,
        truncation: float = 0.7,
        seed: int = 0,
        num_workers: int = 0,
        clamp: bool = True,
    ):
        super().__init__()
        if n_train < batch_size:
            raise ValueError(f"data.n_train ({n_train}) must be at least data.batch_size ({batch_size})")
        self.save_hyperparameters()
        self.train_set: TensorPairs | None = None
        self.val_set: TensorPairs | None = None
        self.generator: torch.nn.Module | None = None
        self.latent_avg: torch.Tensor | None = None

    def use_generator(self, generator: torch.nn.Module, latent_avg: torch.Tensor) -> None:
        """The generator that renders the images (the one being inverted) and its latent_avg (style_dim,):
        train.py hands over the model's own, so there is one generator."""
        self.generator, self.latent_avg = generator, latent_avg.reshape(-1)

    @torch.no_grad()
    def render(self, n: int, generator: torch.Generator) -> TensorPairs:
        if self.generator is None or self.latent_avg is None:
            raise RuntimeError("SyntheticInversionDataModule needs use_generator(generator, latent_avg) before setup")
        g, latent_avg = self.generator, self.latent_avg
        z = torch.randn(n, g.style_dim, generator=generator).to(latent_avg.device)
        w = g.mapping(z)
        w = latent_avg + self.hparams.truncation * (w - latent_avg)
        codes = w.unsqueeze(1).repeat(1, g.n_latent, 1)
        images = torch.cat([g.synthesis(codes[i : i + 8]) for i in range(0, n, 8)])
        images = resize_images(images, self.hparams.image_size)
        if self.hparams.clamp:
            images = images.clamp(-1, 1)
        return TensorPairs(images.cpu(), codes.cpu())

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        rng = torch.Generator().manual_seed(sampling_seed(self.hparams.seed))
        self.train_set = self.render(self.hparams.n_train, rng)
        self.val_set = self.render(self.hparams.n_val, rng)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            self.hparams.val_batch_size,
            shuffle=False,
            num_workers=self.hparams.num_workers,
            generator=torch.Generator(),  # leaves torch's global random state to training
        )
