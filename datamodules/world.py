"""The world's pictures as training data (`hairclipv2/world`): every item rendered from its own z.

Item i of the training set is the face of z_i, where z_i is drawn from (seed, i) alone: the set is as
large as asked (a million faces by default, each rendered when it is read) and any item, on any rank,
after any resume, is the same picture. The validation set is rendered once from another stream.
Items hold "z" (z_dim,) and what `outputs` names of "image" (3, S, S), "labels" (1, S, S) int64,
"hair" (1, S, S) coverage, "sketch" (1, S, S) uint8 and "bald" (3, S, S), the bald picture of the same face.

With `mixing` p > 0 the training items also hold "z_appearance": for a fraction p of them (drawn from
the item's index alone) another face's z, and the pictures are of z's shapes and hairstyle in that
face's colours (`mix_z`, the generator's style-mixing target); for the others z itself.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from hairclipv2.config import plain
from hairclipv2.world import World, mix_z

from .resumable import ResumableTrainData

VAL_STREAM = 1_000_003  # the validation faces' seeds start here, apart from any training index
MIX_STREAM = 7_000_001  # the mixing draws' seeds: apart from every face's own


OUTPUTS = ("image", "labels", "hair", "sketch", "bald")


class WorldFaces(Dataset):
    def __init__(
        self,
        world: World,
        n: int,
        seed: int,
        first: int = 0,
        outputs: tuple[str, ...] = OUTPUTS,
        mixing: float = 0.0,
    ):
        unknown = set(outputs) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"data.outputs: unknown {sorted(unknown)}; expected some of {list(OUTPUTS)}")
        if not 0 <= mixing <= 1:
            raise ValueError(f"data.mixing is a probability in [0, 1], got {mixing}")
        self.world, self.n, self.seed, self.first, self.outputs = world, n, seed, first, tuple(outputs)
        self.mixing = mixing

    def __len__(self) -> int:
        return self.n

    def z(self, i: int) -> torch.Tensor:
        return self.world.z(1, self.seed * 10_000_019 + self.first + i)

    def appearance(self, i: int, z: torch.Tensor) -> torch.Tensor:
        """Item i's appearance code (1, z_dim): another face's z with probability `mixing`, else z."""
        draws = torch.Generator().manual_seed(MIX_STREAM + self.seed * 10_000_019 + self.first + i)
        if torch.rand((), generator=draws) >= self.mixing:
            return z
        return torch.randn(z.shape, generator=draws)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        z = self.z(i)
        item = {"z": z[0]}
        if self.mixing > 0:
            appearance = self.appearance(i, z)
            item["z_appearance"] = appearance[0]
            z = mix_z(z, appearance)
        faces = self.world.attributes(z)
        if set(self.outputs) - {"bald"}:
            shot = self.world.render(faces)
            item.update({k: getattr(shot, k)[0] for k in self.outputs if k != "bald"})
        if "bald" in self.outputs:
            item["bald"] = self.world.render(faces.bald()).image[0]
        return item


class WorldDataModule(ResumableTrainData):
    def __init__(
        self,
        n_train: int = 1_000_000,
        n_val: int = 64,
        batch_size: int = 16,
        val_batch_size: int = 32,
        image_size: int = 64,
        z_dim: int = 512,
        supersample: int = 4,
        seed: int = 0,
        num_workers: int = 0,
        outputs: tuple[str, ...] = OUTPUTS,
        val_outputs: tuple[str, ...] | None = None,
        mixing: float = 0.0,
    ):
        """`outputs`: what the training items hold beside z; `val_outputs`: the validation items'
        (default: the same); `mixing`: the fraction of training items drawn in another face's
        colours ("z_appearance"; the validation items are never mixed)."""
        super().__init__()
        outputs = tuple(plain(outputs))  # plain tuples in the checkpoint's hyperparameters (weights_only)
        val_outputs = outputs if val_outputs is None else tuple(plain(val_outputs))
        if n_train < batch_size:
            raise ValueError(f"data.n_train ({n_train}) must be at least data.batch_size ({batch_size})")
        self.save_hyperparameters()
        self.world = World(image_size, z_dim, supersample)
        self.train_set = WorldFaces(self.world, n_train, seed, outputs=outputs, mixing=mixing)
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is None:
            faces = WorldFaces(self.world, self.hparams.n_val, self.hparams.seed, VAL_STREAM, self.hparams.val_outputs)
            self.val_set = [faces[i] for i in range(len(faces))]

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.hparams.val_batch_size, shuffle=False, generator=torch.Generator())
