"""Train an encoder (e4e / pSp) against a frozen StyleGAN2 with PyTorch Lightning and Hydra.

    python train.py experiment=e4e_demo                     # the embedded default, CPU, minutes
    python train.py experiment=e4e_ffhq                     # the paper's FFHQ run (data + weights needed)
    python train.py -m experiment=e4e_demo model.loss.lpips_lambda=0.4,0.8   # a sweep
    python train.py experiment=e4e_demo ckpt_path=.../checkpoints/last.ckpt  # resume

Outputs go to the Hydra run folder: checkpoints/, images/, csv/ (metrics), metrics.json,
data_report.json (what the datamodule found and skipped) and e4e_official.pt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from hairclipv2.weights import CheckpointError, user_error  # noqa: E402


def write_json_atomic(payload: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def train(cfg: DictConfig) -> dict[str, float]:
    """Build everything from the config, fit, optionally validate the best checkpoint; return metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)  # checks the data folders before any model is built
    model = instantiate(cfg.model)  # loads the official weights (clear errors when missing)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if hasattr(datamodule, "report") and trainer.is_global_zero:
        write_json_atomic(datamodule.report(), out / "data_report.json")
    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        trainer.validate(model, datamodule=datamodule, ckpt_path="best" if cfg.train else cfg.get("ckpt_path"))
        metrics.update({f"best/{k}": float(v) for k, v in trainer.callback_metrics.items()})
    if trainer.is_global_zero:
        write_json_atomic(metrics, out / "metrics.json")
    finish_wandb()
    return metrics


def finish_wandb() -> None:
    """Close an open W&B run (Lightning leaves it open; an offline run is then flushed cleanly)."""
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except Exception as exc:
        shown = user_error(exc, (FileNotFoundError, CheckpointError))
        if shown is None:
            raise
        raise SystemExit(f"error: {shown}") from None
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
