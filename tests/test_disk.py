"""What runs leave on disk: checkpoints that hold what resuming needs once, nothing for a debug run,
and in a sweep checkpoints for the best trial only."""

from __future__ import annotations

import json
import math
import warnings

import pytest
from test_training import compose_cfg, train_script

from hairclipv2.config import ConfigError
from hairclipv2.training.checkpointing import holds_training_state, link_best_to_last
from hairclipv2.training.sweeps import keep_best_trial


def train(out, overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_script.train(compose_cfg(out, overrides))


def test_best_is_weights_only_last_resumes_and_the_export_is_opt_in(tmp_path):
    # monitor=step, mode=min: the best is step 2 by construction, the last step is 4
    best_first = ["trainer.val_check_interval=2", "callbacks.model_checkpoint.monitor=step"]
    train(tmp_path / "a", best_first)
    ckpts = tmp_path / "a" / "checkpoints"
    best, last = ckpts / "best_step000002.ckpt", ckpts / "last.ckpt"
    assert sorted(p.name for p in ckpts.iterdir()) == [best.name, last.name]
    assert not holds_training_state(best) and holds_training_state(last)
    assert not best.samefile(last) and best.stat().st_size < last.stat().st_size / 2
    assert not (tmp_path / "a" / "e4e_official.pt").exists()  # export_official=false by default
    with pytest.raises(ConfigError, match="holds weights only .* resume from its run's checkpoints/last.ckpt"):
        train(tmp_path / "b", [f"ckpt_path={best}"])
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_a_best_at_the_last_step_is_a_link_to_last(tmp_path):
    train(tmp_path, ["trainer.val_check_interval=4"])
    ckpts = tmp_path / "checkpoints"
    assert (ckpts / "best_step000004.ckpt").samefile(ckpts / "last.ckpt")
    assert not link_best_to_last(ckpts / "best_step000004.ckpt", ckpts / "last.ckpt")  # already one file


def test_fast_dev_run_writes_no_checkpoint(tmp_path):
    train(tmp_path, ["debug=fdr"])
    assert not (tmp_path / "checkpoints").exists()
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) < 1_000_000


def make_trial(root, name):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "metrics.json").write_text("{}")
    return run


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_only_the_sweeps_best_trial_keeps_its_checkpoints(tmp_path, direction):
    values = [2.0, 1.0, math.nan, 3.0, None, 1.5]
    runs = [make_trial(tmp_path, str(i)) for i in range(len(values))]
    kept = [keep_best_trial(tmp_path, run, value, direction) for run, value in zip(runs, values)]
    best = 1 if direction == "minimize" else 3
    assert kept == ([True, True, False, False, False, False] if best == 1 else [True, False, False, True, False, False])
    assert [(r / "checkpoints").exists() for r in runs] == [i == best for i in range(len(runs))]
    assert all((r / "metrics.json").is_file() for r in runs)  # every trial keeps its results
    record = json.loads((tmp_path / "best_trial.json").read_text())
    assert record == {"run_dir": str(runs[best]), "value": values[best], "direction": direction}
    with pytest.raises(ValueError, match="direction must be"):
        keep_best_trial(tmp_path, runs[0], 0.0, "lowest")
