"""Sweeps that fit on a disk: of a sweep's trials only the best keeps its checkpoints.

Each trial, once finished, compares its optimised metric with `<sweep>/best_trial.json` under a file
lock (trials may run in parallel): the better one becomes the best and the previous best's
`checkpoints/` folder is removed; a trial that is not better removes its own. Every trial keeps its
metrics, images and config.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
from pathlib import Path

RECORD = "best_trial.json"


def better(value: float, than: float | None, direction: str) -> bool:
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    if math.isnan(value):
        return False
    return than is None or (value < than if direction == "minimize" else value > than)


def keep_best_trial(sweep_dir: str | Path, run_dir: str | Path, value: float | None, direction: str) -> bool:
    """Record `run_dir` as the sweep's best trial if its `value` beats the recorded one (removing the
    old best's checkpoints), else remove its own checkpoints. True when this trial is the best."""
    sweep, run = Path(sweep_dir), Path(run_dir)
    sweep.mkdir(parents=True, exist_ok=True)
    with open(sweep / f".{RECORD}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record_path = sweep / RECORD
        record = json.loads(record_path.read_text()) if record_path.is_file() else None
        best = record["value"] if record else None
        if value is None or not better(float(value), best, direction):
            shutil.rmtree(run / "checkpoints", ignore_errors=True)
            return False
        tmp = record_path.with_name(f".{RECORD}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"run_dir": str(run), "value": float(value), "direction": direction}, indent=2))
        os.replace(tmp, record_path)
        if record and Path(record["run_dir"]) != run:
            shutil.rmtree(Path(record["run_dir"]) / "checkpoints", ignore_errors=True)
        return True
