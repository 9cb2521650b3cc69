"""One place builds the hair editor: every component (generator, parser, encoders, CLIP, proxies)
registered once and loaded from one weights folder.

- `from_pretrained(folder)`: the HairEditor of the files in HairCLIPv2's `pretrained_models/` layout
  (ffhq.pt, seg.pth, bald_proxy.pt, sketch_proxy.pt, ffhq_PCA.npz) at 1024 px; without a folder, the
  embedded demo (small generator, random weights).
- `editor_config` / `from_config`: the same through Hydra. Both are the configs
  `conf/experiment/hairclipv2_ffhq.yaml` and `conf/editing/hairclipv2_demo.yaml` composed with Hydra,
  so the command line, evaluate.py, the photo command and the browser editor build the same editor
  from the same keys; `overrides` are Hydra overrides of conf/evaluate.yaml.
- `build_hair_editor`: the factory a conf/editing config instantiates, from plain settings.
  `random_weights=True` builds every network without its official file (parser, bald mapper, CLIP,
  VGG, LPIPS backbone; PCA statistics from the mapping network): an offline demo whose pictures mean
  nothing. Otherwise every missing file is listed in one error naming it and its conf key.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .blending import FeatureBlender
from .config import ConfigError, build, plain
from .editing.acceleration import Acceleration
from .editing.amortised import EXPERIMENTS, load_mapper
from .editing.bald import BALD_ALPHA_SCALE, BaldProxy, LevelMapper, load_bald_proxy
from .editing.editor import HairEditor
from .editing.embedding import EmbeddingConfig, FSEmbedding
from .editing.prior import PNormPrior
from .editing.proxies import (
    TEXT_LANDMARKS,
    ColourProxy,
    ColourProxyConfig,
    RefProxy,
    RefProxyConfig,
    TextProxy,
    TextProxyConfig,
)
from .editing.sketch import SketchProxy, load_sketch_encoder
from .losses import AvgLabLoss, BackgroundLoss, CLIPLoss, LandmarkLoss, LPIPSLoss, StyleLoss
from .masks import DILATE_KERNEL_AT_512
from .models.clip import CLIPModel
from .models.encoders import SketchEncoder
from .models.encoders.fs import load_fs_encoder
from .models.inversion import InversionModel
from .models.landmarks import load_fan
from .models.landmarks.fan import default_fan_file
from .models.parsing import BiSeNet, HairSegmenter, load_parser
from .models.parsing.world_unet import load_world_parser
from .models.stylegan2 import Generator
from .models.vgg import VGG16Activations
from .weights import OFFICIAL, MissingCheckpointError, frozen_generator

SECTIONS = (
    (EmbeddingConfig, "embedding"),
    (TextProxyConfig, "text"),
    (RefProxyConfig, "reference"),
    (ColourProxyConfig, "colour"),
    (Acceleration, "acceleration"),
)
CONF = Path(__file__).resolve().parents[1] / "conf"
DEMO_WARNING = "RANDOM WEIGHTS (no weights folder): the edit is a meaningless picture; it shows that the pipeline runs"


def world_generator() -> Generator:
    """The world's generator as conf/generator/stylegan2_world.yaml builds it (no weights loaded)."""
    from hydra.utils import instantiate

    return instantiate(OmegaConf.load(CONF / "generator" / "stylegan2_world.yaml"))


def editor_config(weights_dir: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """conf/evaluate.yaml composed for the demo editor, or for the official files in `weights_dir`."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from .config import ConfigError, register_resolvers

    register_resolvers()
    # paths.root_dir: the repository (weights/world/, conf/), wherever the command runs from
    os.environ.setdefault("PROJECT_ROOT", str(CONF.parent))
    if weights_dir is not None and not Path(weights_dir).expanduser().is_dir():
        raise FileNotFoundError(f"weights folder {weights_dir} does not exist (HairCLIPv2's pretrained_models/)")
    base = ["experiment=hairclipv2_ffhq", f"paths.weights_dir={weights_dir}"] if weights_dir else []
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("evaluate", overrides=[*base, *overrides])
    except HydraException as exc:  # an unknown key or a malformed override: one line naming it
        first = str(exc).strip().splitlines()[0]
        cause = f" ({str(exc.__cause__).splitlines()[0]})" if exc.__cause__ else ""
        raise ConfigError(f"{first}{cause}") from None


def command_config(
    weights_dir: str | Path | None, overrides: Sequence[str] = (), fast: bool = False, seed: int = 0
) -> tuple[DictConfig, list[str]]:
    """The editor config of the photo command and the browser editor, checked (settings and files)
    before any network is built: `seed` for the edits and the demo's networks, `fast` for the fast
    preset (keys the overrides set are kept). Returns it with the preset's changes."""
    cfg = editor_config(weights_dir, [f"seed={seed}", *overrides])
    changed = fast_preset(cfg, keep={o.split("=", 1)[0].lstrip("+~") for o in overrides}) if fast else []
    check_editing(cfg.editing)
    return cfg, changed


def from_config(cfg: DictConfig, warning: str = DEMO_WARNING, **parts: Any) -> HairEditor:
    """The editor of a composed config's `editing` group, its random networks (the demo's) drawn from
    `cfg.seed`; `parts` replace factory arguments."""
    return editor_from_config(cfg.editing, warning, cfg.get("seed", 0), **parts)


def from_pretrained(
    weights_dir: str | Path | None = None, overrides: Sequence[str] = (), warning: str = DEMO_WARNING, **parts: Any
) -> HairEditor:
    """One call from a weights folder to the editor that owns every part (generator, segmenter, CLIP,
    proxies, encoder). A missing file stops with one error listing each file, its conf key and source."""
    return from_config(editor_config(weights_dir, overrides), warning, **parts)


def build_hair_editor(
    generator: Generator,
    stylegan_weights: str | None = None,
    parser_weights: str | None = None,
    bald_weights: str | None = None,
    sketch_weights: str | None = None,
    sketch_mask_kernel: int | None = DILATE_KERNEL_AT_512,
    ffhq_pca: str | None = None,
    clip_pretrained: str | None = "openai",
    clip_model: str = "ViT-B-32-quickgelu",
    clip_half_on_cuda: bool = False,
    parser_kind: str = "bisenet",
    e4e_weights: str | None = None,
    random_weights: bool = False,
    random_backbones: bool | None = None,
    parser: nn.Module | None = None,
    hairstyle_block: int = 3,
    colour_block: int = 6,
    randomize_proxy_noise: bool = True,
    resume_with_skip: bool = False,
    source_photo_targets: bool = True,
    painted_bald_region: str = "painted",
    use_landmarks: bool = True,
    landmark_weights: str | None = None,
    random_bald_alpha: float = 1.0,
    embedding: Mapping[str, Any] | None = None,
    text: Mapping[str, Any] | None = None,
    reference: Mapping[str, Any] | None = None,
    colour: Mapping[str, Any] | None = None,
    source_cache: int = 0,
    fs_encoder_weights: str | None = None,
    text_mapper_weights: str | None = None,
    reference_mapper_weights: str | None = None,
    colour_mapper_weights: str | None = None,
    acceleration: Mapping[str, Any] | None = None,
) -> HairEditor:
    # CLIP and the VGG16 / LPIPS backbones come from open_clip's and torchvision's caches, not from
    # HairCLIPv2's folder: `random_backbones` (default: random_weights) decides them on their own.
    random_backbones = random_weights if random_backbones is None else random_backbones
    world = parser_kind == "world"
    if parser_kind not in ("bisenet", "world"):
        raise ConfigError(f"editing.parser_kind: expected 'bisenet' or 'world', found {parser_kind!r}")
    if not random_weights:
        check_official_files(
            required_files(
                parser_kind,
                stylegan_weights,
                parser_weights if parser is None else "",
                bald_weights,
                sketch_weights,
                ffhq_pca,
                e4e_weights,
                landmark_weights if use_landmarks and not random_backbones else "",
                fs_encoder_weights,
            )
        )
    latent_avg = frozen_generator(generator, stylegan_weights, "editing.stylegan_weights")
    if parser is None:
        if random_weights:
            parser = BiSeNet(16).eval()
        else:
            parser = load_world_parser(parser_weights) if world else load_parser(parser_weights, 16)
    parser.requires_grad_(False)
    if random_weights:
        warnings.warn("hair editor with random weights: the edits are meaningless pictures", stacklevel=2)
        prior = partial(PNormPrior.from_mapping, generator, samples=20_000)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            bald = BaldProxy(LevelMapper(generator.style_dim), random_bald_alpha * BALD_ALPHA_SCALE)
            sketch = SketchProxy(
                SketchEncoder(1, style_dim=generator.style_dim, n_latent=generator.n_latent),
                latent_avg,
                sketch_mask_kernel,
            )
    else:
        prior = (
            PNormPrior.from_npz(ffhq_pca) if ffhq_pca else partial(PNormPrior.from_mapping, generator, samples=20_000)
        )
        if bald_weights:
            bald = load_bald_proxy(bald_weights)
        else:
            warnings.warn("no bald mapper file (editing.bald_weights): the bald proxy is random", stacklevel=2)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                bald = BaldProxy(LevelMapper(generator.style_dim), random_bald_alpha * BALD_ALPHA_SCALE)
        sketch = (
            SketchProxy(load_sketch_encoder(sketch_weights, generator.style_dim), latent_avg, sketch_mask_kernel)
            if sketch_weights
            else None
        )
    # The e4e file gives the encoder (and its latent_avg); the editor's generator keeps the weights of
    # stylegan_weights, from which latent_avg was computed above (the file's decoder is not loaded over them).
    encoder = InversionModel.from_official(e4e_weights, decoder=generator, load_decoder=False) if e4e_weights else None
    segmenter = HairSegmenter(parser)
    blender = FeatureBlender(
        generator,
        segmenter,
        hairstyle_block,
        colour_block,
        randomize_proxy_noise=randomize_proxy_noise,
        resume_with_skip=resume_with_skip,
    )
    lpips_vgg = LPIPSLoss("vgg", random_backbone=random_backbones)
    clip = CLIPModel(clip_model, None if random_backbones else clip_pretrained, half_on_cuda=clip_half_on_cuda)
    vgg = VGG16Activations(random_weights=random_backbones)
    text_cfg, ref_cfg, colour_cfg = (
        build(TextProxyConfig, text, "editing.text"),
        build(RefProxyConfig, reference, "editing.reference"),
        build(ColourProxyConfig, colour, "editing.colour"),
    )
    fan = load_fan(landmark_weights, random_weights=random_backbones) if use_landmarks else None
    landmarks_text, landmarks_ref = LandmarkLoss(fan, groups=TEXT_LANDMARKS), LandmarkLoss(fan)
    return HairEditor(
        blender,
        FSEmbedding(
            generator,
            lpips_vgg,
            prior,
            latent_avg,
            hairstyle_block,
            build(EmbeddingConfig, embedding, "editing.embedding"),
            load_fs_encoder(fs_encoder_weights, generator) if fs_encoder_weights else None,
            resume_with_skip,
        ),
        bald,
        TextProxy(
            generator,
            CLIPLoss(clip, augment=text_cfg.augment),
            landmarks_text,
            segmenter,
            text_cfg,
            load_mapper(text_mapper_weights, "text") if text_mapper_weights else None,
        ),
        RefProxy(
            generator,
            StyleLoss(vgg),
            landmarks_ref,
            segmenter,
            ref_cfg,
            load_mapper(reference_mapper_weights, "reference") if reference_mapper_weights else None,
        ),
        ColourProxy(
            blender,
            segmenter,
            CLIPLoss(clip, augment=colour_cfg.augment),
            AvgLabLoss(segmenter),
            BackgroundLoss(segmenter),
            lpips_vgg,
            colour_cfg,
            load_mapper(colour_mapper_weights, "colour") if colour_mapper_weights else None,
        ),
        latent_avg,
        encoder,
        sketch,
        source_photo_targets,
        painted_bald_region,
        source_cache=source_cache,
        acceleration=build(Acceleration, acceleration, "editing.acceleration"),
        networks={
            "generator": generator,
            "segmenter": segmenter,
            "clip": clip,
            "lpips": lpips_vgg,
            "vgg": vgg,
            "fan": fan,
        },
    )


def required_files(
    parser_kind: str,
    stylegan_weights: str | None,
    parser_weights: str | None,
    bald_weights: str | None,
    sketch_weights: str | None,
    ffhq_pca: str | None,
    e4e_weights: str | None,
    landmark_weights: str | None,
    fs_encoder_weights: str | None = None,
) -> dict[str, str | None]:
    """kind -> configured path of every file an editor with official weights reads ("" = not wanted;
    None = wanted, not set). `landmark_weights` None means FAN's default file."""
    world = parser_kind == "world"
    return {
        "fan": (landmark_weights or str(default_fan_file())) if landmark_weights != "" else "",
        "world_generator" if world else "stylegan2": stylegan_weights,
        "world_parser" if world else "bisenet": parser_weights,
        # the world has no PCA statistics file (its prior comes from the mapping) and may have no
        # trained bald mapper yet
        "bald_proxy": bald_weights if not world else "",
        "ffhq_pca": ffhq_pca if not world else "",
        "world_sketch" if world else "sketch_proxy": sketch_weights or "",
        "e4e": e4e_weights or "",
        "world_fs_encoder" if world else "fs_encoder": fs_encoder_weights or "",
    }


def check_editing(editing: DictConfig) -> None:
    """The settings of a conf/editing config checked as the factory reads them, before any network
    is built: the typed sections (steps, rates, rows) and, with official weights, every file."""
    settings = plain(editing)
    sections = {key: build(cls, settings.get(key), f"editing.{key}") for cls, key in SECTIONS}
    for mode, experiment in EXPERIMENTS.items():
        if sections[mode].method == "encoder" and not settings.get(f"{mode}_mapper_weights"):
            raise ConfigError(
                f"editing.{mode}.method=encoder needs editing.{mode}_mapper_weights "
                f"(a {mode} mapper: `python train.py experiment={experiment}`)"
            )
    if settings.get("random_weights"):
        return
    random_backbones = settings.get("random_backbones")
    use_landmarks = settings.get("use_landmarks", True) and not random_backbones
    check_official_files(
        required_files(
            settings.get("parser_kind", "bisenet"),
            settings.get("stylegan_weights"),
            settings.get("parser_weights"),
            settings.get("bald_weights"),
            settings.get("sketch_weights"),
            settings.get("ffhq_pca"),
            settings.get("e4e_weights"),
            settings.get("landmark_weights") if use_landmarks else "",
            settings.get("fs_encoder_weights"),
        )
    )


# the optimisation lengths the fast preset shortens (a tenth, at least FAST_LEAST steps)
FAST_KEYS = (
    "embedding.w_steps",
    "embedding.fs_steps",
    "embedding.refinement",
    "text.steps",
    "reference.steps",
    "colour.edit_steps",
    "colour.final_steps",
)
FAST_LEAST = 3


def fast_preset(cfg: DictConfig, keep: Sequence[str] = ()) -> list[str]:
    """Shorten every optimisation of `cfg.editing` to about a tenth (a CPU try: coarser edits), except
    the keys in `keep` (overrides the user gave); returns what changed, as "key: old -> new"."""
    changed = []
    for key in FAST_KEYS:
        full = f"editing.{key}"
        value = OmegaConf.select(cfg, full)
        if full in keep or not isinstance(value, int):
            continue
        new = min(value, max(FAST_LEAST, round(value / 10)))
        if new != value:
            OmegaConf.update(cfg, full, new)
            changed.append(f"{full}: {value} -> {new}")
    return changed


def check_official_files(paths: Mapping[str, str | None]) -> None:
    """One error listing every missing pretrained file (kind -> configured path; "" = not wanted),
    each with its conf key and where it comes from."""
    missing = []
    for kind, path in paths.items():
        if path == "" or (path is not None and Path(path).expanduser().is_file()):
            continue
        info = OFFICIAL[kind]
        missing.append(
            f"  - {info.filename} ({kind}): {path or 'no path set'}; conf key {info.conf_key}; from {info.source}"
        )
    if missing:
        raise MissingCheckpointError(
            f"{len(missing)} pretrained file(s) missing for the hair editor:\n"
            + "\n".join(missing)
            + "\nPoint paths.weights_dir at a folder holding them (HairCLIPv2's pretrained_models/ works with experiment=hairclipv2_ffhq), "
            "or set each key; editing=hairclipv2_demo runs without any file."
        )


def editor_from_config(editing: Any, warning: str, seed: int | None = None, **parts: Any) -> HairEditor:
    """Hydra-instantiate a conf/editing config; with random weights, print `warning` in a banner on
    stderr (and leave out the per-network warnings it sums up), and with `seed` draw every random
    network from it (the same demo, and the same random backbones of the world's editor, in every
    process). `parts` replace factory arguments."""
    import sys

    from hydra.utils import instantiate

    random_weights = bool(editing.random_weights)
    if random_weights:
        print(f"\n{'!' * 100}\n{warning}\n{'!' * 100}\n", file=sys.stderr)
    if (random_weights or editing.get("random_backbones")) and seed is not None:
        torch.manual_seed(seed)
    with warnings.catch_warnings():
        if random_weights:
            warnings.simplefilter("ignore")
        return instantiate(editing, **parts)
