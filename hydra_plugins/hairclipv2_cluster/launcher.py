"""Hydra's submitit launchers with the project's cluster check before anything is submitted."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

from hairclipv2.cluster import check_cluster


class _Checked:
    """Checks every job's composed config (hairclipv2.cluster.check_cluster), then submits them all."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        for overrides in job_overrides:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            if "trainer" in cfg:
                check_cluster(cfg)
        return super().launch(job_overrides, initial_job_idx)


class CheckedSlurmLauncher(_Checked, SlurmLauncher):
    pass


class CheckedLocalLauncher(_Checked, LocalLauncher):
    pass
