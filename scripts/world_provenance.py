"""Copy the world's trained networks from their run folders into weights/world/ and record where each
comes from (weights/world/PROVENANCE.json: command, seed, steps, the run's last validation, sha256;
for a mapper, exported at its best validation, also that one's step and values).

    python scripts/world_provenance.py --generator RUN --parser RUN --clip RUN --bald RUN --text_mapper RUN --colour_mapper RUN --sketch RUN --fs_encoder RUN [--note TEXT]

Each RUN is a `train.py experiment=world_*` run folder (for the generator also
`world_generator_finish`, which continues the shipped one); a network not given keeps its entry.
The copies store their float tensors in float16 (half the folder; the loaders give float32 back,
`hairclipv2.weights.as_float32`: about 80 dB from the float32 generator's pictures).
`--half` converts the files already in weights/world/ and rewrites their hashes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
from pathlib import Path

import torch
import yaml

from hairclipv2.weights import cast_tensors

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "weights" / "world"
# network -> (experiment, the file the run exports, the name in weights/world)
NETWORKS = {
    "generator": ("world_generator", "world_generator.pt", "generator.pt"),
    "parser": ("world_parser", "world_parser.pt", "parser.pt"),
    "clip": ("world_clip", "world_clip", "clip"),
    "bald": ("world_bald", "bald_proxy.pt", "bald_proxy.pt"),
    "text_mapper": ("world_text_mapper", "text_mapper.pt", "text_mapper.pt"),
    "colour_mapper": ("world_colour_mapper", "colour_mapper.pt", "colour_mapper.pt"),
    "sketch": ("world_sketch", "sketch_proxy.pt", "sketch_proxy.pt"),
    "fs_encoder": ("world_fs_encoder", "fs_encoder.pt", "fs_encoder.pt"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_half(files: list[Path]) -> None:
    """Rewrites each weights file (.pt / .bin) with its float32 tensors in float16, atomically."""
    for path in (f for f in files if f.suffix in (".pt", ".bin")):
        tmp = path.with_name(f".{path.name}.tmp")
        state = torch.load(path, map_location="cpu", weights_only=True)
        torch.save(cast_tensors(state, torch.float32, torch.float16), tmp)
        tmp.replace(path)


def weight_files(dest: Path) -> list[Path]:
    return sorted(p for p in ([dest] if dest.is_file() else dest.rglob("*")) if p.is_file())


# networks whose run exports its file at the best value of a validation metric (model.export_metric,
# val/objective by default), not at the end
EXPORTED_AT_BEST = ("text_mapper", "colour_mapper")


def validations(run: Path) -> list[dict[str, str]]:
    """The validation rows of the run's csv/metrics.csv, in order."""
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    return [r for r in rows if any(k.startswith("val/") and r[k] for k in r)]


def step_and_values(row: dict[str, str]) -> tuple[int, dict[str, float]]:
    return int(row["step"]) + 1, {k: round(float(v), 4) for k, v in row.items() if k.startswith("val/") and v}


def last_validation(run: Path) -> tuple[int, dict[str, float]]:
    """The step and val/* values of the run's last validation row."""
    return step_and_values(validations(run)[-1])


def trained_steps(run: Path) -> int:
    """The steps the run trained: its status.json's global step (train.py writes it when a fit ends;
    the last validation can come before the last step), else its last validation's step."""
    status = run / "status.json"
    if status.is_file():
        return int(json.loads(status.read_text())["global_step"])
    return last_validation(run)[0]


def best_validation(run: Path, metric: str) -> tuple[int, dict[str, float]]:
    """The step and val/* values of the validation row where `metric` was lowest (the first of equals)."""
    rows = [r for r in validations(run) if r.get(metric)]
    return step_and_values(min(rows, key=lambda r: float(r[metric])))


def record(name: str, run: Path, note: str) -> dict:
    experiment, exported, target = NETWORKS[name]
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    dest = OUT / target
    if dest.is_dir():
        shutil.rmtree(dest)
    (shutil.copytree if (run / exported).is_dir() else shutil.copyfile)(run / exported, dest)
    files = weight_files(dest)
    store_half(files)
    _, metrics = last_validation(run)
    # world_chain.py's runs read the networks from its staging copy (paths.world_dir), which these
    # files then replace: the command without it reads the same networks from weights/world
    dropped = ("hydra.", "callbacks.progress_bar", "resume_dir", "paths.world_dir")
    kept = [o for o in overrides if not o.startswith(dropped)]
    ran = [o.split("=", 1)[1] for o in kept if o.startswith("experiment=")]
    entry = {
        "command": "python train.py " + " ".join(kept),
        "experiment": ran[0] if ran else experiment,
        "seed": config["seed"],
        "steps": trained_steps(run),
        "validation": metrics,
        "files": {p.relative_to(ROOT).as_posix(): sha256(p) for p in files},
        "note": note,
        "stored": "float16",
    }
    if name in EXPORTED_AT_BEST:  # the file is the best validation's, which the last need not be
        best_step, best = best_validation(run, config["model"].get("export_metric", "val/objective"))
        entry["exported"] = {"step": best_step, "validation": best}
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in NETWORKS:
        p.add_argument(f"--{name}", type=Path, help=f"a run folder of experiment={NETWORKS[name][0]}")
    p.add_argument("--note", default="", help="hardware and wall time, said in words")
    p.add_argument("--half", action="store_true", help="store the files already here in float16")
    args = p.parse_args()
    path = OUT / "PROVENANCE.json"
    provenance = json.loads(path.read_text()) if path.is_file() else {}
    OUT.mkdir(parents=True, exist_ok=True)
    for name in NETWORKS:
        run = getattr(args, name)
        if run is not None:
            provenance[name] = record(name, run, args.note)
        elif args.half and name in provenance and provenance[name].get("stored") != "float16":
            files = weight_files(OUT / NETWORKS[name][2])
            store_half(files)
            provenance[name]["files"] = {f.relative_to(ROOT).as_posix(): sha256(f) for f in files}
            provenance[name]["stored"] = "float16"
    tmp = path.with_name(".PROVENANCE.json.tmp")
    tmp.write_text(json.dumps(provenance, indent=1) + "\n")
    tmp.replace(path)
    print(json.dumps({k: (v["steps"], v["validation"]) for k, v in provenance.items()}, indent=1))


if __name__ == "__main__":
    main()
