"""Writes the trained encoder as e4e's own checkpoint at the end of training.

e4e keeps `best_model.pt` (the lowest validation loss) beside its iteration checkpoints; the file
its scripts are given is that one. This callback writes `<run>/e4e_official.pt` from the best
checkpoint of the run's ModelCheckpoint (the last weights when there is none), in the official
container `{"state_dict": encoder.* + decoder.*, "latent_avg", "opts"}` with every option of e4e's
`options/train_options.py` in `opts`, so that `scripts/inference.py` (`setup_model`, which reads
`dataset_type`, `stylegan_size`, `encoder_type`, `start_from_latent_avg`) and `scripts/train.py
--resume_training_from_ckpt` read it as they read their own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

ENCODER_PREFIX = "model.encoder."


def partial_name(factory: Any) -> str:
    """e4e's optim_name of a partial optimiser: "ranger" or "adam" (else the class name, lower case)."""
    return getattr(getattr(factory, "func", factory), "__name__", str(factory)).lower()


def partial_arg(factory: Any, name: str) -> Any:
    return getattr(factory, "keywords", {}).get(name)


def official_train_opts(trainer: pl.Trainer, module: pl.LightningModule, checkpoint_path: str) -> dict[str, Any]:
    """The run's settings under e4e's option names (train_options.py @ 99ea505)."""
    hp, dm = module.hparams, trainer.datamodule
    dhp = dm.hparams if dm is not None else {}
    loss, disc, prog = module.loss_cfg, module.disc_cfg, module.prog_cfg
    optimizer, d_optimizer = module.optimizer, module.discriminator_optimizer
    size = module.generator.size
    steps = module.schedule
    return {
        "exp_dir": str(trainer.default_root_dir),
        "dataset_type": "ffhq_encode",
        "encoder_type": type(module.model.encoder).__name__,
        "batch_size": int(dhp.get("batch_size", 4)),
        "test_batch_size": int(dhp.get("test_batch_size", dhp.get("val_batch_size", 2))),
        "workers": int(dhp.get("num_workers", 4)),
        "test_workers": int(dhp.get("test_workers", 2)),
        "learning_rate": partial_arg(optimizer, "lr"),
        "optim_name": partial_name(optimizer),
        "train_decoder": False,
        "start_from_latent_avg": bool(hp.start_from_latent_avg),
        "lpips_type": loss.lpips_type,
        "lpips_lambda": loss.lpips_lambda,
        "id_lambda": loss.id_lambda,
        "l2_lambda": loss.l2_lambda,
        "stylegan_weights": hp.stylegan_weights,
        "stylegan_size": size,
        "checkpoint_path": checkpoint_path,
        "max_steps": int(trainer.max_steps),
        "image_interval": int(trainer.log_every_n_steps),
        "board_interval": int(trainer.log_every_n_steps),
        "val_interval": int(trainer.val_check_interval) if isinstance(trainer.val_check_interval, int) else None,
        "save_interval": None,
        "w_discriminator_lambda": disc.w_discriminator_lambda,
        "w_discriminator_lr": partial_arg(d_optimizer, "lr"),
        "r1": disc.r1,
        "d_reg_every": disc.d_reg_every,
        "use_w_pool": disc.use_w_pool,
        "w_pool_size": disc.w_pool_size,
        "delta_norm": int(loss.delta_norm) if float(loss.delta_norm).is_integer() else loss.delta_norm,
        "delta_norm_lambda": loss.delta_norm_lambda,
        "progressive_steps": list(steps) if steps is not None else None,
        "progressive_start": prog.start,
        "progressive_step_every": prog.step_every,
        "save_training_data": False,
        "sub_exp_dir": None,
        "keep_optimizer": False,
        "resume_training_from_ckpt": None,
        "update_param_list": None,
        "device": "cuda:0",
        "n_styles": 2 * int(math.log2(size)) - 2,
    }


class OfficialExport(pl.Callback):
    """On rank 0 at the end of fit: `<run>/<filename>` from the best (or last) encoder weights
    (nothing when not `enabled`: the file is as large as the encoder, written where asked)."""

    def __init__(self, filename: str = "e4e_official.pt", weights: str = "best", enabled: bool = True):
        if weights not in ("best", "last"):
            raise ValueError(f"callbacks.official_export.weights must be 'best' or 'last', got {weights!r}")
        self.filename, self.weights, self.enabled = filename, weights, enabled
        self.source: str = ""

    def best_encoder_state(self, trainer: pl.Trainer) -> dict[str, torch.Tensor] | None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        if self.weights != "best" or not best or not Path(best).is_file():
            return None
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        self.source = best
        return {k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.enabled and trainer.is_global_zero):
            return
        path = Path(trainer.default_root_dir) / self.filename
        self.source = "last weights"
        encoder = pl_module.model.encoder
        best = self.best_encoder_state(trainer)
        current = {k: v.detach().clone() for k, v in encoder.state_dict().items()} if best is not None else None
        try:
            if best is not None:
                encoder.load_state_dict(best, strict=True)
            opts = official_train_opts(trainer, pl_module, str(path))
            pl_module.model.save_official(path, progressive_stage=pl_module.stage, exported_from=self.source, **opts)
        finally:
            if current is not None:
                encoder.load_state_dict(current, strict=True)
