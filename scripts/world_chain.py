"""Retrain the world's networks in the order they read each other, resumably, then install them.

    python scripts/world_chain.py RUNS generator                  # the generator and all that reads it
    python scripts/world_chain.py RUNS all --set trainer=gpu --set generator:trainer.max_steps=30000
    python scripts/world_chain.py RUNS generator --install --note "one H100, 40 minutes"

Each stage is `python train.py experiment=world_<stage>` in RUNS/<stage>. The stages read the
world's networks from RUNS/world (`paths.world_dir`), a copy of weights/world that each finished
stage's export replaces, so that the bald mapper trains against the new generator, the mappers
against the new CLIP, and so on. Naming a stage retrains it and every stage that reads it
(`--only` retrains the named ones alone). Run the same command again after a stop: finished stages
(train.py's status.json) are skipped, a stopped one resumes from its last checkpoint; to train a
finished stage longer, remove its status.json and raise its max_steps (it resumes). `--install`
copies the finished runs into weights/world with their provenance (scripts/world_provenance.py).
After a new generator, the README's world numbers (`make demo`, the evaluations, the benchmarks)
must be measured again: the script says which.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from world_provenance import NETWORKS  # noqa: E402


@dataclass(frozen=True)
class Stage:
    name: str  # world_provenance's name of the network (its --flag)
    reads: tuple[str, ...]  # the stages whose networks its training loads from paths.world_dir


# In training order: every stage comes after the ones it reads.
STAGES = (
    Stage("generator", ()),
    Stage("parser", ()),
    Stage("clip", ()),
    Stage("bald", ("generator",)),
    Stage("fs_encoder", ("generator",)),
    Stage("sketch", ("generator", "parser")),
    Stage("text_mapper", ("generator", "parser", "clip")),
    Stage("colour_mapper", ("generator", "parser", "clip")),
)
BY_NAME = {s.name: s for s in STAGES}
REMEASURE = {
    "generator": "make demo (README: e4e on the world), the evaluations and benchmarks/*.py --world",
    "parser": "the evaluations (hair masks, IoU) and benchmarks/*.py --world",
    "clip": "the text and colour evaluations",
}


class ChainError(ValueError):
    """A wrong stage name or --set entry, said in one line."""


def plan(names: list[str], only: bool) -> list[Stage]:
    """The stages to train, in order: the named ones and (unless `only`) every stage that reads them."""
    unknown = [n for n in names if n != "all" and n not in BY_NAME]
    if unknown:
        raise ChainError(f"unknown stage {unknown[0]!r}: expected 'all' or one of {', '.join(BY_NAME)}")
    chosen = set(BY_NAME) if "all" in names else set(names)
    if not only:
        for stage in STAGES:  # in order, so that what a reader of a reader reads is already chosen
            if chosen.intersection(stage.reads):
                chosen.add(stage.name)
    return [s for s in STAGES if s.name in chosen]


def overrides_for(stage: str, sets: list[str]) -> list[str]:
    """The `--set` overrides for one stage: `key=value` for every stage, `stage:key=value` for one."""
    out = []
    for entry in sets:
        head, _, rest = entry.partition(":")
        scoped = "=" not in head and rest
        if scoped and head not in BY_NAME:
            raise ChainError(f"--set {entry!r}: unknown stage {head!r} (expected one of {', '.join(BY_NAME)})")
        if "=" not in (rest if scoped else entry):
            raise ChainError(f"--set {entry!r}: expected key=value or stage:key=value")
        if not scoped:
            out.append(entry)
        elif head == stage:
            out.append(rest)
    return out


def finished(run: Path) -> bool:
    status = run / "status.json"
    return status.is_file() and json.loads(status.read_text()).get("finished") is True


def command(stage: Stage, runs: Path, sets: list[str]) -> list[str]:
    run = runs / stage.name
    cmd = [sys.executable, str(ROOT / "train.py"), f"experiment={NETWORKS[stage.name][0]}"]
    cmd += [f"paths.world_dir={runs / 'world'}", f"hydra.run.dir={run}", *overrides_for(stage.name, sets)]
    if (run / "checkpoints" / "last.ckpt").is_file():
        cmd.append(f"resume_dir={run}")
    return cmd


def publish(stage: Stage, runs: Path) -> None:
    """Copy a finished stage's export over its network in RUNS/world, where later stages read it."""
    _, exported, target = NETWORKS[stage.name]
    source, dest = runs / stage.name / exported, runs / "world" / target
    if not source.exists():
        raise ChainError(f"{runs / stage.name}: finished but holds no {exported} (the stage's export)")
    tmp = dest.with_name(f".{dest.name}.tmp")  # copied whole first: a stop never leaves half a network
    remove(tmp)
    (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp)
    if dest.is_dir():
        shutil.rmtree(dest)
    tmp.replace(dest)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_chain(runs: Path, stages: list[Stage], sets: list[str], dry_run: bool = False) -> int:
    world = runs / "world"
    if not world.is_dir() and not dry_run:
        shutil.copytree(ROOT / "weights" / "world", world)  # the networks no stage here retrains
    for stage in stages:
        run = runs / stage.name
        if finished(run):
            print(f"[{stage.name}] finished earlier: {run}")
            if not dry_run:
                publish(stage, runs)
            continue
        cmd = command(stage, runs, sets)
        print(f"[{stage.name}] " + " ".join(cmd[1:]), flush=True)
        if dry_run:
            continue
        code = subprocess.call(cmd, cwd=ROOT)
        if code != 0 or not finished(run):
            print(f"[{stage.name}] stopped (exit status {code}); the same command resumes it", file=sys.stderr)
            return code or 1
        publish(stage, runs)
    return 0


def install(runs: Path, stages: list[Stage], note: str) -> int:
    args = [f"--{s.name}={runs / s.name}" for s in stages]
    code = subprocess.call([sys.executable, str(ROOT / "scripts" / "world_provenance.py"), *args, "--note", note])
    if code == 0:
        again = [REMEASURE[s.name] for s in stages if s.name in REMEASURE]
        if again:
            print("measure again: " + "; ".join(dict.fromkeys(again)))
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, help="the folder of the chain's runs (RUNS/<stage>, RUNS/world)")
    p.add_argument("stages", nargs="+", help=f"'all' or stage names: {', '.join(BY_NAME)}")
    p.add_argument("--only", action="store_true", help="train the named stages, not those that read them")
    p.add_argument("--set", action="append", default=[], help="key=value (all stages) or stage:key=value")
    p.add_argument("--install", action="store_true", help="then copy the runs into weights/world")
    p.add_argument("--note", default="", help="hardware and wall time, for the provenance record")
    p.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    args = p.parse_args(argv)
    try:
        stages = plan(args.stages, args.only)
        for stage in stages:
            overrides_for(stage.name, args.set)
    except ChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = run_chain(args.runs.resolve(), stages, args.set, args.dry_run)
    if code == 0 and args.install and not args.dry_run:
        code = install(args.runs.resolve(), stages, args.note)
    return code


if __name__ == "__main__":
    sys.exit(main())
