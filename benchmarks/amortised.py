"""The amortised proxies against the optimised ones, on the world: seconds and quality per mode and
method, over held-out world pairs whose exact answers are known.

    python benchmarks/amortised.py [--modes text colour reference] [--pairs 24] [--reference-pairs 8]
        [--text-mapper FILE] [--colour-mapper FILE] [--reference-mapper FILE] [--w-steps N] [--fs-steps N]
        [--encoder-embedding K | --fast-path K] [--out FILE]

Modes are the world's tasks (evaluation/world_pairs.py): text (hair_text: the source with the hair
of another face's caption), colour (hair_color: the source's hair in another face's colour, as RGB)
and reference (hair_transfer). Every method edits the same pairs from the same embedding of each
source (and the same inversion of each reference), computed once: the methods differ in the mode's
proxy only. Methods: HairCLIPv2's schedule (the baseline), the world editor's 10 steps, the mapper
alone (`editing.<mode>.method=encoder`) and the mapper with K refinement steps. Without a reference
mapper file the reference rows use an untrained one, which answers the reference's own codes (the
optimisation's start). With --fast-path K the mapper rows run again from the FS encoder's embedding
(+ K steps): the whole fast path beside HairCLIPv2's, each from its own embedding. Columns: seconds
of the proxy stage per edit and of the whole edit, embedding included (each with its ratio to the
baseline's), the proxy's objective at its answer (for colour: the colour edit's objective at the
final picture), and the ground-truth metrics of the final edit, each as a mean with the paired
standard error of its difference from the baseline (a colour error is undefined where the result
has no hair: such pairs are counted in "undefined" and left out of that metric's mean and
differences). CPU by default; the JSON goes to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hairclipv2.editing.amortised import LatentMapper, load_mapper, save_mapper  # noqa: E402
from hairclipv2.editing.editor import EditBatch  # noqa: E402
from hairclipv2.editing.proxies import ColourCondition  # noqa: E402
from hairclipv2.evaluation.ground_truth import ground_truth_metrics  # noqa: E402
from hairclipv2.evaluation.world_pairs import REFERENCE_SEED, SOURCE_SEED, haired_faces  # noqa: E402
from hairclipv2.pipeline import command_config, from_config  # noqa: E402
from hairclipv2.world import World, caption  # noqa: E402

from common import write_json  # noqa: E402

HAIRSTYLE_METRICS = ("seconds", "objective", "gt_hair_iou", "gt_psnr_hair", "gt_psnr_nonhair")
COLOUR_METRICS = (*HAIRSTYLE_METRICS, "gt_colour_de2000")
SECTION = {"text": "text", "colour": "colour", "reference": "reference"}  # editing.<section>
PROXY = {"text": "text_proxy", "colour": "colour_proxy", "reference": "ref_proxy"}
STAGE = {"text": "text_proxy", "colour": "colour_proxy", "reference": "reference_proxy"}  # out.seconds
OFFICIAL = {  # HairCLIPv2's schedule (utils/options.py) and the world editor's (conf/editing)
    "text": ({"steps": 200}, {"steps": 10}, "200 steps"),
    "reference": ({"steps": 200}, {"steps": 10}, "200 steps"),
    "colour": ({"edit_steps": 100, "final_steps": 100}, {"edit_steps": 10, "final_steps": 10}, "100 + 100 steps"),
}


def methods(mode: str, refinements: list[int], untrained: bool, settings: Any) -> dict[str, dict]:
    """An untrained mapper answers the optimisation's start: with K = the world editor's 10 steps
    it is that row again, which is left out. The K rows refine at the official rate; for colour the
    world editor's own refinement (its steps per phase and rates, which its text colours take) and
    its Gauss-Newton solve of RGB and reference colours (`lab_solve`) are rows of their own."""
    official, world, schedule = OFFICIAL[mode]
    mapper = "untrained mapper (the start)" if untrained else "mapper"
    plain = {"refinement_final": None, "refinement_lr": None, "lab_solve": 0} if mode == "colour" else {}
    unsolved = {"lab_solve": 0} if mode == "colour" else {}  # the optimisation path solves when asked
    out = {
        f"optimisation, {schedule} (official)": {"method": "optimisation", **official, **unsolved},
        "optimisation, 10 + 10 steps (demo)" if mode == "colour" else "optimisation, 10 steps (world editor)": {
            "method": "optimisation",
            **world,
            **unsolved,
        },
        f"{mapper} alone": {"method": "encoder", "refinement": 0, **plain},
    }
    kept = [k for k in refinements if not (untrained and k == 10)]
    out.update({f"{mapper} + {k} steps": {"method": "encoder", "refinement": k, **plain} for k in kept})
    if mode == "colour" and settings.refinement_lr is not None:
        (edit, final), rates = settings.schedule(True)
        name = f"{mapper} + {edit} + {final} steps (world editor, rates {', '.join(map(str, rates))})"
        out[name] = {"method": "encoder", "lab_solve": 0}
    if mode == "colour" and settings.lab_solve:
        n, final = settings.lab_solve, settings.lab_solve_final
        solve = f"{n} Gauss-Newton" + (f" + {final} final steps" if final else " steps")
        out[f"{mapper} + {solve} (world editor)"] = {"method": "encoder"}
        for mask, name in (("enlarged", "HairCLIPv2's enlarged mask"), ("hair", "the parsed hair as the mask")):
            if mask != settings.lab_solve_mask:
                out[f"{mapper} + {solve}, {name}"] = {"method": "encoder", "lab_solve_mask": mask}
        other = 0 if final else 10  # the editor's solve with and without the final steps
        out[f"{mapper} + {n} Gauss-Newton" + (f" + {other} final steps" if other else " steps, no final steps")] = {
            "method": "encoder",
            "lab_solve_final": other,
        }
        out[f"the source's rows + {solve} (no mapper)"] = {"method": "optimisation"}
    return out


def fast_path(rows: dict[str, dict], k: int) -> dict[str, dict]:
    """The mapper rows again from the FS encoder's embedding (+ k steps): the whole fast path."""
    return {
        f"fast path: FS encoder + {k}, {name}": {**s, "embedding": "encoder"}
        for name, s in rows.items()
        if s["method"] == "encoder"
    }


def paired(values: list[float], baseline: list[float]) -> tuple[float, float]:
    """Mean of the per-pair differences and its standard error, over the pairs both define."""
    d = [a - b for a, b in zip(values, baseline, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if not d:
        return math.nan, math.nan
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / max(1, len(d) - 1)
    return mean, math.sqrt(var / len(d))


def finite_mean(values: list[float]) -> tuple[float, int]:
    """Mean over the defined values and how many are undefined (a colour error without hair: NaN)."""
    kept = [v for v in values if math.isfinite(v)]
    return (sum(kept) / len(kept) if kept else math.nan), len(values) - len(kept)


def untrained_reference_mapper(editor, folder: Path) -> Path:
    rows = editor.ref_proxy.cfg.rows
    mapper = LatentMapper("reference", 0, editor.generator.style_dim, rows, 2 * rows, hidden=16, layers=1)
    return save_mapper(mapper, folder / "reference_mapper.pt")


def objective(editor, mode: str, batch: EditBatch, out) -> float:
    """The proxy's own objective at its answer (colour: the edit's objective at the final picture)."""
    g = editor.generator
    with torch.no_grad():
        if mode == "text":
            return float(editor.text_proxy.objective(g.synthesis(out.proxy_codes), batch.texts, None))
        if mode == "reference":
            proxy = editor.ref_proxy
            return float(proxy.objective(g.synthesis(out.proxy_codes), proxy.targets(batch.sources, batch.references)))
        proxy = editor.colour_proxy
        labs = proxy.target_labs(batch.colours, out.result.shape[-1], out.result.device)
        return float(proxy.edit_objective(batch.colours, out.result, batch.sources, out.source_hair, labs))


def embed_each(editor, images: torch.Tensor) -> tuple[list, list[float]]:
    """Each image's embedding, one at a time, and its seconds."""
    torch.manual_seed(0)
    codes, seconds = [], []
    for i in range(images.shape[0]):
        tic = time.perf_counter()
        codes.append(editor.embed(images[i : i + 1]))
        seconds.append(time.perf_counter() - tic)
    return codes, seconds


def run_mode(
    editor,
    world: World,
    mode: str,
    pairs: int,
    refinements: list[int],
    untrained: bool,
    embeddings: dict[str, tuple[list, list[float]]],
    fast_path_steps: int | None = None,
) -> dict:
    """`embeddings`: {"optimisation": (codes, seconds per source)} and, with `fast_path_steps`,
    "encoder": the FS encoder's (+ that many steps), from which the fast path's rows edit."""
    sources, references = haired_faces(world, pairs, SOURCE_SEED), haired_faces(world, pairs, REFERENCE_SEED)
    if mode == "colour":
        truth = sources.with_hair_colour(references.hair_rgb)
    else:
        truth = sources.with_hair_of(references)
    shot, target, ref_shot = world.render(sources), world.render(truth), world.render(references)
    texts = caption(references)
    rgb = (references.hair_rgb * 255).round().int().tolist()
    batches = []
    for i in range(pairs):
        one = shot.image[i : i + 1]
        if mode == "text":
            batches.append(EditBatch(one, "text", texts=[texts[i]]))
        elif mode == "colour":
            batches.append(EditBatch(one, "colour", colours=[ColourCondition(rgb=tuple(rgb[i]))]))
        else:  # the reference's inversion, once, shared by every method
            batch = EditBatch(one, "reference", references=ref_shot.image[i : i + 1])
            batches.append(editor.with_reference_codes(batch))
    proxy = getattr(editor, PROXY[mode])
    settings, metrics = proxy.cfg, COLOUR_METRICS if mode == "colour" else HAIRSTYLE_METRICS
    table = methods(mode, refinements, untrained, settings)
    if fast_path_steps is not None:
        table.update(fast_path(table, fast_path_steps))
    results: dict[str, dict[str, list[float]]] = {}
    for name, setting in table.items():
        setting = dict(setting)
        codes, embed_seconds = embeddings[setting.pop("embedding", "optimisation")]
        proxy.cfg = dataclasses.replace(settings, **setting)
        rows = results[name] = {m: [] for m in ("edit_seconds", *metrics)}
        for i, batch in enumerate(batches):
            torch.manual_seed(i)
            out = editor.edit(batch, source_code=codes[i])
            rows["seconds"].append(out.seconds[STAGE[mode]])
            rows["edit_seconds"].append(embed_seconds[i] + out.seconds[STAGE[mode]])
            rows["objective"].append(objective(editor, mode, batch, out))
            gt = ground_truth_metrics(
                out.result,
                target.image[i : i + 1],
                shot.hair[i : i + 1],
                target.hair[i : i + 1],
                out.result_hair,
                colour=mode == "colour",
            )
            for key in metrics[2:]:
                rows[key].append(float(gt[key]))
        print(f"{mode}: {name}: done", file=sys.stderr)
    proxy.cfg = settings
    return summarise(results, metrics, pairs)


def summarise(results: dict[str, dict[str, list[float]]], metrics: tuple[str, ...], pairs: int) -> dict:
    """Per method: the proxy stage's speed-up, the whole edit's (its embedding included:
    `edit_seconds`) and each metric's mean with its paired difference from the first method."""
    base = next(iter(results.values()))
    table = {}
    for name, rows in results.items():
        entry = {
            "speedup": sum(base["seconds"]) / sum(rows["seconds"]),
            "edit_speedup": sum(base["edit_seconds"]) / sum(rows["edit_seconds"]),
        }
        for m in ("edit_seconds", *metrics):
            diff, se = paired(rows[m], base[m])
            mean, undefined = finite_mean(rows[m])
            entry[m] = {"mean": mean, "minus_baseline": diff, "paired_se": se, "undefined": undefined}
        table[name] = entry
    header = f"{'method':42s} {'s/proxy':>8s} {'x':>7s} {'s/edit':>8s} {'x':>7s} " + " ".join(
        f"{m[3:] if m.startswith('gt_') else m:>22s}" for m in metrics[1:]
    )
    print(header)
    for name, e in table.items():
        cells = [f"{e[m]['mean']:.3f} ({e[m]['minus_baseline']:+.3f}±{e[m]['paired_se']:.3f})" for m in metrics[1:]]
        times = (
            f"{e['seconds']['mean']:8.4f} {e['speedup']:7.1f} {e['edit_seconds']['mean']:8.2f} {e['edit_speedup']:7.1f}"
        )
        print(f"{name:42s} {times} " + " ".join(f"{c:>22s}" for c in cells))
    return {"pairs": pairs, "methods": table, "per_pair": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="+", default=["text", "colour", "reference"], choices=list(SECTION))
    p.add_argument("--pairs", type=int, default=24)
    p.add_argument(
        "--reference-pairs", type=int, default=8, help="the reference proxy's 200 steps take minutes an edit"
    )
    p.add_argument("--text-mapper", default=str(ROOT / "weights" / "world" / "text_mapper.pt"))
    p.add_argument("--colour-mapper", default=str(ROOT / "weights" / "world" / "colour_mapper.pt"))
    p.add_argument("--reference-mapper", default=None, help="none: an untrained mapper (the reference's codes)")
    p.add_argument("--refinements", type=int, nargs="*", default=[10, 25])
    p.add_argument("--w-steps", type=int, default=100, help="the shared embedding's W+ steps (world editor: 400)")
    p.add_argument("--fs-steps", type=int, default=50, help="its FS steps (world editor: 150)")
    p.add_argument(
        "--encoder-embedding",
        type=int,
        default=None,
        metavar="K",
        help="embed with the world's FS encoder and K refinement steps instead (the fast path's first stage)",
    )
    p.add_argument(
        "--fast-path",
        type=int,
        default=None,
        metavar="K",
        help="also run the mapper rows from the FS encoder's embedding + K steps: the whole fast path beside "
        "the official one, each from its own embedding, in one run",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="editor settings over the world editor's, e.g. editing.text.augment=false (the plain CLIP loss of "
        "the published text runs)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "amortised_world.json"))
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp())
    untrained = args.reference_mapper is None
    overrides = [
        "experiment=hairclipv2_world",
        f"editing.text_mapper_weights={Path(args.text_mapper).resolve()}",
        f"editing.colour_mapper_weights={Path(args.colour_mapper).resolve()}",
        f"editing.embedding.w_steps={args.w_steps}",
        f"editing.embedding.fs_steps={args.fs_steps}",
        *args.set,
    ]
    if args.encoder_embedding is not None and args.fast_path is not None:
        p.error("--encoder-embedding and --fast-path: one or the other")
    if args.encoder_embedding is not None:
        overrides += ["editing.embedding.method=encoder", f"editing.embedding.refinement={args.encoder_embedding}"]
        embedding = f"the world's FS encoder + {args.encoder_embedding} refinement steps"
    else:
        embedding = f"{args.w_steps} + {args.fs_steps} steps"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg, _ = command_config(None, overrides)
        editor = from_config(cfg, "")
    if "reference" in args.modes:
        path = untrained_reference_mapper(editor, folder) if untrained else Path(args.reference_mapper)
        editor.ref_proxy.mapper = load_mapper(path, "reference")
    world = World(editor.generator.size, editor.generator.style_dim)
    most = max(args.reference_pairs if m == "reference" else args.pairs for m in args.modes)
    shot = world.render(haired_faces(world, most, SOURCE_SEED))
    print(f"embedding {most} sources once ({embedding}) ...", file=sys.stderr)
    embeddings = {"optimisation": embed_each(editor, shot.image[:most])}
    if args.fast_path is not None:
        print(f"and with the FS encoder + {args.fast_path} steps ...", file=sys.stderr)
        settings = editor.embedding.cfg
        editor.embedding.cfg = dataclasses.replace(settings, method="encoder", refinement=args.fast_path)
        embeddings["encoder"] = embed_each(editor, shot.image[:most])
        editor.embedding.cfg = settings
        embedding += f"; the fast path's rows: the FS encoder + {args.fast_path} steps"
    embedding_seconds = sum(embeddings["optimisation"][1]) / most
    modes = {}
    for mode in args.modes:
        pairs = args.reference_pairs if mode == "reference" else args.pairs
        modes[mode] = run_mode(
            editor, world, mode, pairs, args.refinements, untrained and mode == "reference", embeddings, args.fast_path
        )
    report = {
        "protocol": {
            "tasks": "the world's hair_text, hair_color (RGB) and hair_transfer pairs (evaluation/world_pairs.py)",
            "embedding": f"{embedding}, shared by every method",
            "embedding_seconds_per_source": embedding_seconds,
            "mappers": {"text": args.text_mapper, "colour": args.colour_mapper, "reference": args.reference_mapper},
            "settings": args.set,
            "text_clip_loss": "AugCLIPLoss" if cfg.editing.text.augment else "CLIPLoss (plain)",
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "errors": "mean (difference from the official schedule +- its paired standard error)",
        },
        "modes": modes,
    }
    write_json("amortised_world", report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
