"""SLURM through Hydra's submitit launcher: the cluster settings checked before anything is submitted.

`hydra/launcher=slurm` and `hydra/launcher=local` (conf/hydra/launcher/) use the launchers of
`hydra_plugins/hairclipv2_cluster` (Hydra finds plugins only in that namespace), which call
`check_cluster` on each job's composed config first, so a job whose SLURM tasks do not match the trainer stops
on the submitting machine with both keys named, instead of Lightning's silent mismatch on the
cluster (one task per device: srun starts the processes, Lightning reads their ranks from SLURM).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from .config import ConfigError


def _count(value: Any) -> int | None:
    """trainer.devices as a number of devices: an int, a list of ids, or None for "auto"/"-1"."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if hasattr(value, "__len__") and not isinstance(value, str):  # a list of device ids
        return len(value)
    return None


def check_cluster(cfg: DictConfig) -> None:
    """One task per device on every node, and as many nodes as the trainer spreads over."""
    launcher, trainer = cfg.hydra.launcher, cfg.trainer
    tasks, nodes = int(launcher.get("tasks_per_node") or 1), int(launcher.get("nodes") or 1)
    devices, num_nodes = _count(trainer.get("devices")), int(trainer.get("num_nodes") or 1)
    if devices is None:
        raise ConfigError(
            f"trainer.devices: expected a number of devices per node on a cluster, found {trainer.get('devices')!r}; "
            f"set it to hydra.launcher.tasks_per_node ({tasks})"
        )
    if tasks != devices:
        raise ConfigError(
            f"hydra.launcher.tasks_per_node ({tasks}) must equal trainer.devices ({devices}): SLURM starts one "
            "process per task and Lightning expects one per device"
        )
    if nodes != num_nodes:
        raise ConfigError(f"hydra.launcher.nodes ({nodes}) must equal trainer.num_nodes ({num_nodes})")
    gpus = launcher.get("gpus_per_node")
    if gpus is not None and trainer.get("accelerator") in ("gpu", "cuda") and int(gpus) < devices:
        raise ConfigError(f"hydra.launcher.gpus_per_node ({gpus}) is less than trainer.devices ({devices})")
