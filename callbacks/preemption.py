"""SIGUSR1 (SLURM's warning before a time limit or a preemption): checkpoint, stop, requeue.

SLURM sends the signal `--signal=USR1@<seconds>` before the end (submitit: `signal_delay_s`). The
callback only notes it in the handler; at the end of the current step every rank agrees to stop
(one all-reduce of a flag), `checkpoints/last.ckpt` is written atomically by the trainer's
checkpoint IO, training ends, and rank 0 requeues the job: through submitit's own handler when the
job was submitted by Hydra's submitit launcher (it records the resubmission), else with `scontrol
requeue $SLURM_JOB_ID`. The requeued job runs the same command in the same run folder, where
train.py resumes from last.ckpt (`auto_resume`), so no step is done twice. Outside SLURM the run
stops with its checkpoint written and says how to continue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


def _is_submitit_handler(handler: Any) -> bool:
    try:
        from submitit.core.job_environment import SignalHandler
    except ImportError:
        return False
    return isinstance(getattr(handler, "__self__", None), SignalHandler)


class RequeueOnSignal(pl.Callback):
    def __init__(self, dirpath: str | Path, signal_name: str = "SIGUSR1", requeue: bool = True):
        self.dirpath, self.signum, self.requeue = Path(dirpath), getattr(signal, signal_name), requeue
        self.received, self.stopped_at = False, None
        self._previous: Any = None

    def _note(self, signum: int, frame: Any) -> None:
        self.received = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning's own signal handlers: this one replaces them for the signal, and keeps
        # the one it replaced to requeue through submitit.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._note)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.stopped_at is not None or not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)
        self.stopped_at = trainer.global_step
        trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
        if self.stopped_at is None or not trainer.is_global_zero:
            return
        name = signal.Signals(self.signum).name
        print(f"{name}: checkpointed at step {self.stopped_at} in {self.dirpath / 'last.ckpt'}", file=sys.stderr)
        if not self.requeue:
            return
        if _is_submitit_handler(self._previous):
            self._previous(self.signum, None)  # submitit records the resubmission, requeues and exits
        elif os.environ.get("SLURM_JOB_ID"):
            job = os.environ["SLURM_JOB_ID"]
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            print(f"requeue of SLURM job {job}: {done.stderr.strip() or 'done'}", file=sys.stderr)
        else:
            print("not a SLURM job: run the same command again to continue from it", file=sys.stderr)
