"""The amortised text proxy against the optimised one, on the world: seconds and quality per method,
over held-out world pairs whose exact answers are known.

    python benchmarks/amortised.py --mapper weights/world/text_mapper.pt [--pairs 24] [--out FILE]

Every method edits the same pairs (HairCLIPv2's text task on the world: the source with the hair of
another face's caption) from the same embedding of each source (computed once: the methods differ in
the text proxy only). Methods: the official optimisation at HairCLIPv2's 200 steps (the baseline), at
the world editor's 10, the mapper alone (`editing.text.method=encoder`) and the mapper with K
refinement steps. Columns: seconds of the text-proxy stage per edit (its ratio to the baseline), the
proxy's own objective at its answer, and the ground-truth metrics of the final edit (hair IoU with
the exact answer, PSNR inside the target's hair and outside both hairs), each as a mean with the
paired standard error of its difference from the baseline. CPU by default; the JSON goes to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hairclipv2.editing.editor import EditBatch  # noqa: E402
from hairclipv2.evaluation.ground_truth import ground_truth_metrics  # noqa: E402
from hairclipv2.evaluation.world_pairs import REFERENCE_SEED, SOURCE_SEED, haired_faces  # noqa: E402
from hairclipv2.pipeline import command_config, from_config  # noqa: E402
from hairclipv2.world import World, caption  # noqa: E402

METRICS = ("seconds", "objective", "gt_hair_iou", "gt_psnr_hair", "gt_psnr_nonhair")


def methods(refinements: list[int]) -> dict[str, dict]:
    out = {
        "optimisation, 200 steps (official)": {"method": "optimisation", "steps": 200},
        "optimisation, 10 steps (world editor)": {"method": "optimisation", "steps": 10},
        "mapper alone": {"method": "encoder", "refinement": 0},
    }
    out.update({f"mapper + {k} steps": {"method": "encoder", "refinement": k} for k in refinements})
    return out


def paired(values: list[float], baseline: list[float]) -> tuple[float, float]:
    """Mean of the per-pair differences and its standard error."""
    d = [a - b for a, b in zip(values, baseline)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / max(1, len(d) - 1)
    return mean, math.sqrt(var / len(d))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mapper", required=True, help="a text mapper file (experiment=world_text_mapper)")
    p.add_argument("--pairs", type=int, default=24)
    p.add_argument("--refinements", type=int, nargs="*", default=[10, 25])
    p.add_argument("--w-steps", type=int, default=400, help="the shared embedding's W+ steps (world editor: 400)")
    p.add_argument("--fs-steps", type=int, default=150)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "amortised_world.json")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    overrides = [
        "experiment=hairclipv2_world",
        f"editing.text_mapper_weights={Path(args.mapper).resolve()}",
        f"editing.embedding.w_steps={args.w_steps}",
        f"editing.embedding.fs_steps={args.fs_steps}",
    ]
    cfg, _ = command_config(None, overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = from_config(cfg, "")
    world = World(editor.generator.size, editor.generator.style_dim)
    sources, references = haired_faces(world, args.pairs, SOURCE_SEED), haired_faces(world, args.pairs, REFERENCE_SEED)
    shot, target = world.render(sources), world.render(sources.with_hair_of(references))
    texts = caption(references)
    torch.manual_seed(0)
    print(f"embedding {args.pairs} sources once ({args.w_steps} + {args.fs_steps} steps) ...", file=sys.stderr)
    codes = [editor.embed(shot.image[i : i + 1]) for i in range(args.pairs)]
    official = editor.text_proxy.cfg
    results: dict[str, dict[str, list[float]]] = {}
    for name, setting in methods(args.refinements).items():
        editor.text_proxy.cfg = dataclasses.replace(official, **setting)
        rows = results[name] = {m: [] for m in METRICS}
        for i in range(args.pairs):
            torch.manual_seed(i)
            batch = EditBatch(shot.image[i : i + 1], "text", texts=[texts[i]])
            out = editor.edit(batch, source_code=codes[i])  # the embedding is the shared one
            rows["seconds"].append(out.seconds["text_proxy"])
            with torch.no_grad():
                image = editor.generator.synthesis(out.proxy_codes)
                rows["objective"].append(float(editor.text_proxy.objective(image, batch.texts, None)))
            gt = ground_truth_metrics(
                out.result, target.image[i : i + 1], shot.hair[i : i + 1], target.hair[i : i + 1], out.result_hair
            )
            for key in ("gt_hair_iou", "gt_psnr_hair", "gt_psnr_nonhair"):
                rows[key].append(float(gt[key]))
        print(f"{name}: done", file=sys.stderr)
    editor.text_proxy.cfg = official
    base = results["optimisation, 200 steps (official)"]
    table = {}
    for name, rows in results.items():
        entry = {"speedup": sum(base["seconds"]) / sum(rows["seconds"])}
        for m in METRICS:
            mean = sum(rows[m]) / len(rows[m])
            diff, se = paired(rows[m], base[m])
            entry[m] = {"mean": mean, "minus_baseline": diff, "paired_se": se}
        table[name] = entry
    header = f"{'method':40s} {'s/edit':>8s} {'x':>6s} {'objective':>17s} {'hair IoU':>17s} {'PSNR hair':>17s} {'PSNR non-hair':>17s}"
    print(header)
    for name, e in table.items():
        cells = [f"{e[m]['mean']:.3f} ({e[m]['minus_baseline']:+.3f}±{e[m]['paired_se']:.3f})" for m in METRICS[1:]]
        print(f"{name:40s} {e['seconds']['mean']:8.3f} {e['speedup']:6.1f} " + " ".join(f"{c:>17s}" for c in cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "protocol": {
            "pairs": args.pairs,
            "task": "hair_text on the world (the source with the hair of another face's caption)",
            "embedding": f"{args.w_steps} + {args.fs_steps} steps, shared by every method",
            "mapper": str(args.mapper),
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "errors": "mean (difference from the official 200 steps +- its paired standard error)",
        },
        "methods": table,
        "per_pair": results,
    }
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
