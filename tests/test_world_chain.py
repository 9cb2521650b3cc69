"""scripts/world_chain.py: the world's networks retrained in the order they read each other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from world_chain import ChainError, main, overrides_for, plan  # noqa: E402

TINY = ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.n_val=4", "data.val_batch_size=4"]
TINY += ["checkpoint_every=2", "extras.print_config=false"]


def names(stages) -> list[str]:
    return [s.name for s in stages]


def test_a_named_stage_brings_every_stage_that_reads_it_in_training_order():
    assert names(plan(["generator"], only=False)) == [
        "generator",
        "bald",
        "fs_encoder",
        "sketch",
        "text_mapper",
        "colour_mapper",
    ]
    assert names(plan(["clip"], only=False)) == ["clip", "text_mapper", "colour_mapper"]
    assert names(plan(["colour_mapper", "parser"], only=False)) == [
        "parser",
        "sketch",
        "text_mapper",
        "colour_mapper",
    ]
    assert names(plan(["bald", "generator"], only=True)) == ["generator", "bald"]
    assert len(plan(["all"], only=True)) == 8


def test_set_entries_apply_to_every_stage_or_to_the_one_they_name():
    sets = ["trainer=gpu", "generator:trainer.max_steps=9", "bald:model.x=a:b", "model.y=c:d"]
    assert overrides_for("generator", sets) == ["trainer=gpu", "trainer.max_steps=9", "model.y=c:d"]
    assert overrides_for("bald", sets) == ["trainer=gpu", "model.x=a:b", "model.y=c:d"]
    with pytest.raises(ChainError, match="unknown stage 'gen'"):
        overrides_for("bald", ["gen:trainer.max_steps=9"])
    with pytest.raises(ChainError, match="expected key=value"):
        overrides_for("bald", ["trainer"])


def test_a_wrong_stage_is_named_and_nothing_is_trained(tmp_path, capsys):
    assert main([str(tmp_path / "runs"), "generator", "bold"]) == 2
    assert "unknown stage 'bold'" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_bald_mapper_trains_against_the_new_generator_and_a_rerun_trains_nothing_twice(tmp_path):
    runs = tmp_path / "runs"
    script = [sys.executable, str(ROOT / "scripts" / "world_chain.py"), str(runs), "generator", "bald", "--only"]
    sets = [a for o in TINY for a in ("--set", o)]
    subprocess.run([*script, *sets], check=True, capture_output=True, text=True, cwd=ROOT)
    new = (runs / "generator" / "world_generator.pt").read_bytes()
    assert (runs / "world" / "generator.pt").read_bytes() == new  # where the later stages read it
    assert new != (ROOT / "weights" / "world" / "generator.pt").read_bytes()
    bald_cfg = yaml.safe_load((runs / "bald" / ".hydra" / "config.yaml").read_text())
    assert bald_cfg["model"]["stylegan_weights"] == "${paths.world_dir}/generator.pt"
    assert bald_cfg["paths"]["world_dir"] == str(runs / "world")
    assert (runs / "world" / "bald_proxy.pt").read_bytes() == (runs / "bald" / "bald_proxy.pt").read_bytes()

    last = runs / "bald" / "checkpoints" / "last.ckpt"
    stamp = last.stat().st_mtime_ns
    again = subprocess.run([*script, *sets], check=True, capture_output=True, text=True, cwd=ROOT)
    assert again.stdout.count("finished earlier") == 2 and last.stat().st_mtime_ns == stamp

    # a finished stage trained longer: its status removed, it resumes from its last checkpoint
    (runs / "bald" / "status.json").unlink()
    longer = subprocess.run(
        [*script, *sets, "--set", "bald:trainer.max_steps=4"], check=True, capture_output=True, text=True, cwd=ROOT
    )
    assert f"resume_dir={runs / 'bald'}" in longer.stdout
    assert json.loads((runs / "bald" / "status.json").read_text())["global_step"] == 4
    assert (runs / "generator" / "world_generator.pt").read_bytes() == new  # not retrained


def test_a_mappers_provenance_records_the_validation_its_file_was_exported_at(tmp_path):
    """The mapper runs export at their best val/objective: its step and values are recorded beside
    the last validation (the generator's export is its last, so it has none); the steps trained are
    the run's, which can go past its last validation."""
    from world_provenance import EXPORTED_AT_BEST, best_validation, last_validation, trained_steps

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "step,train/objective,val/objective,val/delta\n"
        "99,0.50,,\n"
        "199,,0.44,0.10\n"
        "399,,0.38,0.27\n"
        "599,0.40,,\n"
        "599,,0.41,0.33\n"
    )
    assert best_validation(tmp_path, "val/objective") == (400, {"val/objective": 0.38, "val/delta": 0.27})
    assert last_validation(tmp_path) == (600, {"val/objective": 0.41, "val/delta": 0.33})
    assert set(EXPORTED_AT_BEST) == {"text_mapper", "colour_mapper"}
    assert best_validation(tmp_path, "val/delta") == (200, {"val/objective": 0.44, "val/delta": 0.1})
    assert trained_steps(tmp_path) == 600  # no status.json: the last validation's step
    (tmp_path / "status.json").write_text(json.dumps({"finished": True, "global_step": 700}))
    assert trained_steps(tmp_path) == 700  # the run went on past its last validation
