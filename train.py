"""Train an encoder (e4e / pSp) against a frozen StyleGAN2 with PyTorch Lightning and Hydra.

    python train.py experiment=e4e_demo                     # the embedded default, CPU, minutes
    python train.py experiment=e4e_ffhq                     # the paper's FFHQ run (data + weights needed)
    python train.py -m experiment=e4e_demo model.loss.lpips_lambda=0.4,0.8   # a sweep
    python train.py experiment=e4e_demo resume_dir=logs/e4e_demo/runs/2026-12-06_12-00-00  # resume in place

Outputs go to the Hydra run folder: checkpoints/, images/, csv/ (metrics), metrics.json,
status.json (whether training ran to its end), data_report.json (what the datamodule found and
skipped), and with export_official=true e4e_official.pt. checkpoints/last.ckpt resumes a run; the
best checkpoint holds weights only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from lightning_fabric.utilities.rank_zero import rank_zero_only  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from hairclipv2.config import (  # noqa: E402
    ConfigError,
    instantiate_group,
    positive_int,
    register_resolvers,
    show_config,
)
from hairclipv2.quiet import silence_known_noise  # noqa: E402
from hairclipv2.run_log import say, share_run_log  # noqa: E402
from hairclipv2.training.checkpointing import (  # noqa: E402
    check_checkpoint_file,
    holds_training_state,
    link_best_to_last,
)
from hairclipv2.training.sweeps import keep_best_trial  # noqa: E402
from hairclipv2.weights import CheckpointError, user_error  # noqa: E402

register_resolvers()
silence_known_noise()


def write_json_atomic(payload: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def train(cfg: DictConfig) -> dict[str, float]:
    """Build everything from the config, fit, optionally validate the best checkpoint; return metrics."""
    check_settings(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    if rank_zero_only.rank == 0:
        show_config(cfg, out)
    ckpt_path = resume_checkpoint(cfg)
    if cfg.train and rank_zero_only.rank == 0:
        (out / "status.json").unlink(missing_ok=True)  # written again only when this fit ends
    datamodule = instantiate(cfg.data)  # checks the data folders before any model is built
    model = instantiate(cfg.model)  # loads the official weights (clear errors when missing)
    if hasattr(datamodule, "use_generator"):  # synthetic data is rendered by the generator being inverted
        datamodule.use_generator(model.generator, model.latent_avg)
    callbacks, loggers = instantiate_group(cfg.get("callbacks")), instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if hasattr(datamodule, "report") and trainer.is_global_zero:
        write_json_atomic(datamodule.report(), out / "data_report.json")
    if trainer.is_global_zero:
        write_json_atomic(cluster_report(trainer), out / "cluster.json")
    if cfg.train:
        with stop_on_sigterm(), restore_errors(trainer, ckpt_path):
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        # the final state, to continue from (fast_dev_run writes no checkpoint, as Lightning says)
        if trainer.state.status == "finished" and not trainer.interrupted and not trainer.fast_dev_run:
            trainer.save_checkpoint(out / "checkpoints" / "last.ckpt", weights_only=False)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if best and trainer.is_global_zero:
                link_best_to_last(best, out / "checkpoints" / "last.ckpt")
    if cfg.train and trainer.is_global_zero:
        write_json_atomic(run_status(trainer), out / "status.json")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        trainer.validate(model, datamodule=datamodule, ckpt_path="best" if cfg.train else ckpt_path)
        metrics.update({f"best/{k}": float(v) for k, v in trainer.callback_metrics.items()})
    if trainer.is_global_zero:
        write_json_atomic(metrics, out / "metrics.json")
        sweep_note = keep_sweep_checkpoints(cfg, out, metrics.get(cfg.get("optimized_metric")))
        say(closing_lines(trainer, out, cfg.get("optimized_metric")) + sweep_note)
    finish_wandb()
    return metrics


def run_status(trainer: pl.Trainer) -> dict[str, Any]:
    """How the fit ended, for scripts that chain runs (scripts/world_chain.py). Written only when
    fit returns: a run stopped by Ctrl-C or SIGTERM exits with status 1 and leaves none (the one of
    an earlier fit in the same folder is removed when a run starts)."""
    finished = trainer.state.status == "finished" and not trainer.interrupted
    return {"finished": finished, "status": str(trainer.state.status.value), "global_step": trainer.global_step}


def keep_sweep_checkpoints(cfg: DictConfig, out: Path, value: float | None) -> str:
    """With keep_checkpoints=best_trial in a multirun, only the sweep's best trial so far keeps its
    checkpoints/ (hairclipv2/training/sweeps.py); returns a closing line saying which."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("keep_checkpoints", "all") == "all" or not HydraConfig.initialized():
        return ""
    if cfg.keep_checkpoints != "best_trial":
        raise ConfigError(f"keep_checkpoints: expected 'all' or 'best_trial', found {cfg.keep_checkpoints!r}")
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return ""
    direction = str(hydra_cfg.sweeper.get("direction", "minimize"))
    if keep_best_trial(hydra_cfg.sweep.dir, out, value, direction):
        return f"\ncheckpoints kept: the sweep's best trial so far ({cfg.optimized_metric} {value:.4g})"
    return "\ncheckpoints removed: not the sweep's best trial (keep_checkpoints=best_trial)"


def closing_lines(trainer: pl.Trainer, out: Path, metric: str | None) -> str:
    """Where the run's outputs are, what it reached, and how to continue it (also after Ctrl-C)."""
    from hydra.core.hydra_config import HydraConfig

    lines = [f"run folder: {out}" + (" (stopped early)" if trainer.interrupted else "")]
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_path and Path(best.best_model_path).is_file():
        score = f" ({best.monitor} {float(best.best_model_score):.4g})" if best.best_model_score is not None else ""
        lines.append(f"best checkpoint: {best.best_model_path}{score}")
    if metric and metric in trainer.callback_metrics:
        lines.append(f"{metric} at step {trainer.global_step}: {float(trainer.callback_metrics[metric]):.4g}")
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        kept = [o for o in overrides if not o.startswith(("resume_dir=", "hydra.run.dir="))]
        lines.append("continue: python train.py " + " ".join([*kept, f"resume_dir={out}"]))
    return "\n".join(lines)


def check_settings(cfg: DictConfig) -> None:
    """The trainer and data settings every run reads, checked before anything is built."""
    positive_int(cfg.trainer.max_steps, "trainer.max_steps", allow=(-1,))
    interval = cfg.trainer.get("val_check_interval")
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float, type(None)))
        or (interval is not None and interval <= 0)
    ):
        raise ConfigError(f"trainer.val_check_interval: expected a number > 0, found {interval!r}")
    for key in ("batch_size", "val_batch_size", "test_batch_size"):
        if key in cfg.data:
            positive_int(cfg.data[key], f"data.{key}")


def cluster_report(trainer: pl.Trainer) -> dict[str, Any]:
    """Where the run's processes came from: the world size and the cluster environment Lightning
    read the ranks from (SLURM's srun variables on a cluster)."""
    env = getattr(trainer.strategy, "cluster_environment", None)
    return {
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "devices_per_node": trainer.num_devices,
        "cluster_environment": type(env).__name__ if env is not None else None,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """ckpt_path, or with resume_dir (a run folder, continued in place) its checkpoints/last.ckpt,
    or with auto_resume the run folder's own last.ckpt (a requeued job's); checked to be a whole
    checkpoint before anything is built."""
    if cfg.get("ckpt_path"):
        if not Path(cfg.ckpt_path).is_file():
            raise ConfigError(f"ckpt_path: no such file: {cfg.ckpt_path}")
        check_checkpoint_file(cfg.ckpt_path)
        if not holds_training_state(cfg.ckpt_path):
            raise ConfigError(
                f"ckpt_path: {cfg.ckpt_path} holds weights only (a best checkpoint), no optimiser state to "
                "resume from; resume from its run's checkpoints/last.ckpt (resume_dir=<run folder>)"
            )
        return str(cfg.ckpt_path)
    if not cfg.get("resume_dir"):
        own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if cfg.get("auto_resume") and own.is_file():  # a requeued job, back in its own run folder
            print(f"resuming from {own} (auto_resume)", file=sys.stderr)
            return str(check_checkpoint_file(own))
        return None
    last = Path(cfg.resume_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise ConfigError(f"resume_dir: {cfg.resume_dir} holds no checkpoints/last.ckpt to resume from")
    return str(check_checkpoint_file(last))


@contextmanager
def restore_errors(trainer: pl.Trainer, ckpt_path: str | None):
    """A checkpoint that fails to restore is named in one line (and, with SafeExceptionCheckpoint,
    left as it is); errors after training began pass through."""
    try:
        yield
    except Exception as exc:
        started = trainer.global_step > 0 or any(getattr(c, "training_started", False) for c in trainer.callbacks)
        if ckpt_path is None or started:
            raise
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"{ckpt_path}: could not be restored ({type(exc).__name__}: {reason}); it was left as it is"
        ) from exc


@contextmanager
def stop_on_sigterm():
    """SIGTERM (a scheduler's stop, `kill`) ends training as Ctrl-C does: Lightning then runs its
    exception hooks, and the on-exception checkpoint is written before the process exits."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = (
        signal.signal(signal.SIGTERM, interrupt) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def finish_wandb() -> None:
    """Close an open W&B run (Lightning leaves it open; an offline run is then flushed cleanly)."""
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    share_run_log()  # <run>/train.log also gets Lightning's lines and the closing lines
    try:
        metrics = train(cfg)
    except Exception as exc:
        config = user_error(exc, (ConfigError,))
        if config is not None:  # a wrong setting: named, exit status 2, no traceback
            print(f"error: {config}", file=sys.stderr)
            raise SystemExit(2) from None
        shown = user_error(exc, (FileNotFoundError, CheckpointError))
        if shown is None:
            raise
        raise SystemExit(f"error: {shown}") from None
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
