"""The world's bald mapper: HairCLIPv2's `LevelMapper` trained so that G(bald codes) is the bald face.

The world knows every face's bald code: the same z with the hair length below the bald threshold
(every hair trait then vanishes, `world/prior.py`). So the mapper learns in code space, without a
generator pass: for W+ codes w = mapping(z) (rows jittered, as an embedding's rows differ) the target
of rows 0..7 is (mapping(z_bald) - w) / alpha, alpha the bald proxy's effective step
(`editing/bald.py`: 1.2 x the file's alpha). Validation decodes both and reports the PSNR of the bald
proxy's picture against the world's bald picture. The run exports `<run>/bald_proxy.pt` in
HairCLIPv2's format ({"state_dict", "alpha"}), which `load_bald_proxy` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchmetrics.image import PeakSignalNoiseRatio

from ..editing.bald import BALD_ALPHA_SCALE, BALD_ROWS, LevelMapper
from ..models.stylegan2 import Generator
from ..weights import atomic_torch_save, frozen_generator
from ..world.prior import PARAM_NAMES

HAIR_LENGTH = PARAM_NAMES.index("hair_length")
BALD_Z = -3.0  # Phi(-3) = 0.0013, far below BALD_FRACTION (0.12): no hair


def bald_z(z: torch.Tensor) -> torch.Tensor:
    """The same faces without hair."""
    out = z.clone()
    out[:, HAIR_LENGTH] = BALD_Z
    return out


class WorldBaldModule(pl.LightningModule):
    def __init__(
        self,
        generator: Generator,
        stylegan_weights: str | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=0.01),
        alpha: float = 1.0,
        jitter: float = 0.05,
        export: str | None = "bald_proxy.pt",
    ):
        """`alpha`: the file's alpha (the proxy steps by 1.2 alpha); `jitter`: std of the noise added to
        each W+ row of the input codes, relative to the codes' spread."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "optimizer"])
        self.latent_avg = frozen_generator(generator, stylegan_weights, "model.stylegan_weights")
        self.generator = generator
        self.mapper = LevelMapper(generator.style_dim)
        self.optimizer, self.export = optimizer, export
        self.step_size = BALD_ALPHA_SCALE * alpha
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.generator.mapping(z).unsqueeze(1).expand(-1, self.generator.n_latent, -1).contiguous()

    def bald_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """What the bald proxy answers for W+ codes (editing/bald.py's step)."""
        out = codes.clone()
        out[:, :BALD_ROWS] = out[:, :BALD_ROWS] + self.step_size * self.mapper(codes)
        return out

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        z = batch["z"]
        codes = self.codes(z)
        codes = codes + self.hparams.jitter * codes.std() * torch.randn_like(codes)
        target = (self.codes(bald_z(z))[:, :BALD_ROWS] - codes[:, :BALD_ROWS]) / self.step_size
        loss = (self.mapper(codes) - target).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        with torch.no_grad():
            image = self.generator.synthesis(self.bald_codes(self.codes(batch["z"])))
        self.val_psnr.update((image.clamp(-1, 1) + 1) / 2, (batch["bald"] + 1) / 2)
        self.log("val/bald_psnr", self.val_psnr, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.export and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.export_mapper(Path(self.trainer.default_root_dir) / self.export)

    def export_mapper(self, path: str | Path) -> Path:
        """HairCLIPv2's bald_proxy.pt: {"state_dict": LevelMapper's, "alpha"}."""
        state = {k: v.detach().cpu() for k, v in self.mapper.state_dict().items()}
        return atomic_torch_save({"state_dict": state, "alpha": self.hparams.alpha}, path)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.mapper.parameters())
