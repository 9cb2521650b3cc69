"""Evaluate hair edits: run a task over a pairs file and write images, metrics and a report.

    python evaluate.py task=hair_transfer                       # embedded default, random weights
    python evaluate.py task=hair_text pairs=my_pairs.csv editing=hairclipv2 generator=stylegan2_ffhq
    python evaluate.py task=hair_color pairs=DIR align=true trainer=ddp trainer.devices=2

Everything lands in the Hydra run folder: edits/, grids/, edits.csv, summary.json,
summary_plot.png and report.html (see callbacks/edit_report.py; metrics: callbacks/hair_metrics.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from callbacks.edit_report import EditReportWriter  # noqa: E402
from callbacks.hair_metrics import HairEditMetrics, HairMetricsCallback  # noqa: E402
from hairclipv2.config import (  # noqa: E402
    ConfigError,
    instantiate_group,
    positive_int,
    register_resolvers,
    show_config,
)
from hairclipv2.dlib_models import DlibUnavailable  # noqa: E402
from hairclipv2.editing.editor import HairEditModule  # noqa: E402
from hairclipv2.editing.latents import LatentCache  # noqa: E402
from hairclipv2.evaluation.data import PairsDataset, collate_edits, embedded_default  # noqa: E402
from hairclipv2.evaluation.dlib_identity import DlibIdentity  # noqa: E402
from hairclipv2.evaluation.fid import CLIPFeatures, RandomFeatures, frechet  # noqa: E402
from hairclipv2.evaluation.pairs import IMAGE_EXTENSIONS, PairsError, read_pairs  # noqa: E402
from hairclipv2.evaluation.records import EditRecords  # noqa: E402
from hairclipv2.evaluation.world_pairs import COLOUR_CONDITIONS, write_world_pairs  # noqa: E402
from hairclipv2.losses import IDLoss, LPIPSLoss  # noqa: E402
from hairclipv2.pipeline import editor_from_config  # noqa: E402
from hairclipv2.quiet import silence_known_noise  # noqa: E402
from hairclipv2.run_log import say, share_run_log  # noqa: E402
from hairclipv2.weights import CheckpointError, user_error  # noqa: E402

register_resolvers()
silence_known_noise()

SHOWN_PER_SCENARIO = (
    "fid",
    "fid_clip",
    "lpips",
    "psnr",
    "ssim",
    "identity",
    "identity_dlib_distance",
    "clip_i",
    "seconds_per_edit",
)
RANDOM_WARNING = "RANDOM WEIGHTS: no pretrained networks are used (editing.random_weights=true); the pictures and metric values are meaningless and only show that the pipeline runs."


def latent_cache(latents: DictConfig | dict) -> LatentCache | None:
    """HairCLIPv2's cache folders, written where an inversion is missing (latents.write)."""
    if not latents.get("write", True) or not (latents.get("src_F_dir") or latents.get("ref_latent_dir")):
        return None
    return LatentCache(latents.get("src_F_dir"), latents.get("ref_latent_dir"))


def identity_metric(name: str | None) -> DlibIdentity | None:
    """metrics.identity: "dlib" adds dlib's trained identity network beside IR-SE50's; null: not."""
    if name in (None, "none"):
        return None
    if name != "dlib":
        raise ConfigError(f"metrics.identity: expected dlib or null, got {name!r}")
    try:
        return DlibIdentity()
    except DlibUnavailable as exc:
        raise ConfigError(f"metrics.identity=dlib: {exc}; or set metrics.identity=null") from None


def evaluate(cfg: DictConfig) -> dict:
    """Run the task; returns summary.json's content."""
    positive_int(cfg.batch_size, "batch_size")
    if cfg.get("world_colour", "rgb") not in COLOUR_CONDITIONS:
        raise ConfigError(f"world_colour: expected one of {COLOUR_CONDITIONS}, found {cfg.world_colour!r}")
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    task = cfg.task.name
    pairs = (
        read_pairs(cfg.pairs, task, int(cfg.generator.size)) if cfg.pairs else None
    )  # checked before anything is written
    show_config(cfg, out)
    random_weights = bool(cfg.editing.random_weights)
    editor = editor_from_config(cfg.editing, RANDOM_WARNING)
    with warnings.catch_warnings():
        if random_weights:
            warnings.simplefilter("ignore")
        m = cfg.metrics
        identity = IDLoss(m.identity_backbone, weights=m.identity_weights, random_weights=bool(m.random_weights))
        lpips = LPIPSLoss(m.lpips_net, random_backbone=bool(m.random_weights))
    dlib_identity = identity_metric(m.get("identity"))
    distributions = distribution_metrics(cfg, editor.clip)
    protocol = {
        "task": task,
        "pairs": str(cfg.pairs) if cfg.pairs else "embedded default",
        "format": pairs_format(cfg.pairs),
        "weights": "random (demo)" if random_weights else str(cfg.paths.weights_dir),
        "size": int(cfg.generator.size),
        "inversion": str(cfg.inversion),
        "fid": "random features (demo)" if cfg.metrics.random_weights else "Inception v3 (torch-fidelity)",
        "fid_real": str(cfg.metrics.get("fid_real_dir") or "the pairs' face images"),
        "identity": "IR-SE50" + (" and dlib's face-recognition ResNet (trained)" if dlib_identity else ""),
    }
    if pairs is None and cfg.get("embedded") == "world":  # world faces with the exact answer of every edit
        colour = str(cfg.get("world_colour", "rgb"))
        written = write_world_pairs(out / "inputs", task, int(cfg.world_pairs), int(cfg.generator.size), colour)
        pairs = read_pairs(written, task, int(cfg.generator.size))
        protocol.update(pairs="the world's pairs (ground truth)", format="CSV")
        if task == "hair_color":
            protocol["colour"] = colour
    elif pairs is None:
        pairs = embedded_default(out, task, editor.generator, editor.latent_avg)
    records = EditRecords(out)
    done = records.finished(pairs) if cfg.resume else set()
    if done:
        print(f"resuming in {out}: {len(done)} of {len(pairs)} pairs already edited", file=sys.stderr)
    latents = cfg.get("latents") or {}
    dataset = PairsDataset(
        [p for p in pairs if p.id not in done],
        task,
        editor.generator.size,
        align=bool(cfg.align),
        generator=editor.generator,
        hairstyle_block=editor.hairstyle_block,
        src_f_dir=latents.get("src_F_dir"),
        ref_latent_dir=latents.get("ref_latent_dir"),
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate_edits)
    clip = editor.clip
    metrics_cb = HairMetricsCallback(HairEditMetrics(lpips, identity, clip, dlib_identity), hair_of=editor.hair)
    writer = EditReportWriter(
        out,
        task,
        pairs,
        distributions=distributions,
        protocol=protocol,
        real_images=real_image_files(cfg.metrics.get("fid_real_dir")),
        settings={
            "pairs": str(cfg.pairs),
            "editing": OmegaConf.to_container(cfg.editing, resolve=True),
            "align": bool(cfg.align),
        },
        warning=RANDOM_WARNING if random_weights else None,
    )
    callbacks = [metrics_cb, writer, *instantiate_group(cfg.get("callbacks"))]
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, inference_mode=False, enable_model_summary=False
    )
    seed = int(cfg.seed) if cfg.batch_size == 1 else None
    if len(dataset):
        trainer.predict(
            HairEditModule(editor, seed=seed, inversion=cfg.inversion, latents=latent_cache(latents)),
            dataloaders=loader,
            return_predictions=False,
        )
    if not trainer.is_global_zero:
        return {}
    if not len(dataset) or not all((out / name).is_file() for name in ("summary.json", "edits.csv", "report.html")):
        return writer.summarise()  # every pair was edited before: the summary and report come from the records
    return json.loads((out / "summary.json").read_text())


def distribution_metrics(cfg: DictConfig, clip) -> dict:
    """FID and FID_CLIP (torchmetrics FrechetInceptionDistance); random features with random weights.
    A missing Inception file stops here, before any edit."""
    if not cfg.metrics.distributions:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = {
            "fid": frechet(RandomFeatures())
            if cfg.metrics.random_weights
            else frechet(2048, cfg.metrics.inception_weights)
        }
        if clip is not None:
            metrics["fid_clip"] = frechet(CLIPFeatures(clip))
    return metrics


def real_image_files(folder: str | None) -> list[Path] | None:
    """The images of a folder of real faces (FID's real set), checked before any edit."""
    if not folder:
        return None
    files = (
        sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if Path(folder).is_dir()
        else []
    )
    if len(files) < 2:
        raise PairsError(
            f"metrics.fid_real_dir: {folder} must be a folder with at least two images (found {len(files)})"
        )
    return files


def pairs_format(pairs: str | None) -> str:
    if not pairs:
        return "embedded default"
    path = Path(pairs)
    return "HairFastGAN triples" if path.suffix.lower() == ".txt" else "folder" if path.is_dir() else "CSV"


def discard_unused_run_dir(out: Path) -> None:
    """A run stopped before any edit keeps no folder: Hydra's own files (.hydra/, the log) go too."""
    if out.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    share_run_log()  # <run>/evaluate.log also gets Lightning's lines and the summary
    try:
        summary = evaluate(cfg)
    except Exception as exc:
        discard_unused_run_dir(Path(cfg.paths.output_dir))
        config = user_error(exc, (ConfigError,))
        if config is not None:  # a wrong setting: named, exit status 2, no traceback
            print(f"error: {config}", file=sys.stderr)
            raise SystemExit(2) from None
        shown = user_error(exc, (PairsError, FileNotFoundError, CheckpointError))
        if shown is None:
            raise
        raise SystemExit(f"error: {shown}") from None
    if summary:
        report = Path(cfg.paths.output_dir) / "report.html"
        lines = [f"{summary['task']}: {summary['edits']} edits, {summary['failures']} failed; report: {report}"]
        lines += [f"  {name:24s} {value:.4g}" for name, value in summary["metrics"].items()]
        for scenario, values in summary.get("scenarios", {}).items():
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k in SHOWN_PER_SCENARIO)
            lines.append(f"  [{scenario}] {values['edits']} edits: {shown}")
        say("\n".join(lines))  # and in <run>/evaluate.log
        if summary["failures"] and not cfg.allow_failures:
            print(
                f"error: {summary['failures']} edit(s) failed (see edits.csv); allow_failures=true accepts partial results",
                file=sys.stderr,
            )
            raise SystemExit(1)


if __name__ == "__main__":
    main()
