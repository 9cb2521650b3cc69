"""Past one machine: Hydra's submitit launcher, ranks from SLURM's variables, SIGUSR1 requeue.

Nothing here needs a cluster: submitit's local executor runs the launcher's code path, two
processes given the variables srun sets form a gloo world, and a signal sent to a run stands in
for SLURM's warning before a time limit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from test_training import FAST, KILL_RUN, ROOT, last_step, run_train, signal_training

from hairclipv2.cluster import check_cluster
from hairclipv2.config import ConfigError


def compose_with_launcher(overrides: list[str], entry: str = "train"):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(entry, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.devices=4"], r"hydra.launcher.tasks_per_node \(8\) must equal trainer.devices \(4\)"),
        (
            ["trainer.devices=8", "trainer.num_nodes=2"],
            r"hydra.launcher.nodes \(1\) must equal trainer.num_nodes \(2\)",
        ),
        (["trainer.devices=auto"], r"trainer.devices: expected a number of devices per node"),
    ],
)
def test_a_wrong_cluster_setting_names_both_keys(overrides, message):
    cfg = compose_with_launcher(["hydra/launcher=slurm", "trainer=ddp", *overrides])
    with pytest.raises(ConfigError, match=message):
        check_cluster(cfg)


def test_matching_settings_pass_and_the_launchers_are_ours():
    cfg = compose_with_launcher(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8"])
    check_cluster(cfg)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hairclipv2_cluster.launcher.CheckedSlurmLauncher"
    assert cfg.hydra.launcher.signal_delay_s > 0 and cfg.hydra.launcher.max_num_timeout > 0
    evaluation = compose_with_launcher(
        ["hydra/launcher=slurm", "hydra.launcher.nodes=4", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=4"],
        "evaluate",
    )
    check_cluster(evaluation)  # the README's evaluation over four nodes
    local = compose_with_launcher(["hydra/launcher=local"])
    assert local.hydra.launcher._target_ == "hydra_plugins.hairclipv2_cluster.launcher.CheckedLocalLauncher"


@pytest.mark.slow  # 7 to 21 s on 2 cores
def test_a_mismatch_stops_before_anything_is_submitted(tmp_path):
    """The check runs in the submitting process: no submitit folder, no job."""
    result = run_train(
        ["-m", "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=2", *FAST, f"hydra.sweep.dir={tmp_path}/sweep"],
        timeout=120,
    )
    assert result.returncode != 0
    assert "hydra.launcher.tasks_per_node (8) must equal trainer.devices (2)" in result.stderr
    assert not (tmp_path / "sweep" / ".submitit").exists()


@pytest.mark.slow
def test_a_sweep_of_two_jobs_through_submitits_local_executor(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(["-m", "hydra/launcher=local", "debug=fdr", *FAST, "seed=0,1", f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file(), job
        assert json.loads((sweep / job / "cluster.json").read_text())["world_size"] == 1
    assert (sweep / ".submitit").is_dir()  # the jobs went through submitit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ranks_come_from_slurms_variables(tmp_path):
    """Two processes started as srun starts them (no launcher): Lightning's SLURM environment reads
    their ranks and they train one gloo world of two."""
    run = tmp_path / "run"
    common = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "e4e",
        "SLURM_NODELIST": "localhost",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "PYTHONWARNINGS": "ignore",
    }
    args = [*FAST, "trainer=ddp_sim", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run}"]
    procs = [
        subprocess.Popen(
            [sys.executable, "train.py", *args],
            cwd=ROOT,
            env={**os.environ, **common, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    cluster = json.loads((run / "cluster.json").read_text())
    assert cluster == {
        "world_size": 2,
        "num_nodes": 1,
        "devices_per_node": 2,
        "cluster_environment": "SLURMEnvironment",
        "slurm_job_id": "4242",
    }
    assert last_step(run) == 4


@pytest.mark.slow
def test_sigusr1_checkpoints_and_the_requeued_run_ends_as_an_uninterrupted_one(tmp_path):
    run = tmp_path / "requeued"
    args = [*KILL_RUN, "trainer.max_steps=8", f"hydra.run.dir={run}"]
    signal_training(args, lambda: last_step(run) >= 4, signal.SIGUSR1)
    at = last_step(run)
    assert 4 <= at < 8  # stopped early, with the step it reached on disk
    again = run_train(args)  # the requeued job: the same command, the same folder
    assert again.returncode == 0, again.stderr[-3000:]
    assert "auto_resume" in again.stderr and last_step(run) == 8
    assert f"run folder: {run}" in again.stdout and f"resume_dir={run}" in again.stdout  # how to continue
    clean = tmp_path / "clean"
    straight = run_train([*KILL_RUN, "trainer.max_steps=8", f"hydra.run.dir={clean}"])
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    b = torch.load(clean / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for key, value in b["state_dict"].items():
        assert torch.equal(a["state_dict"][key], value), key
