"""Official checkpoints: where each comes from, the conf key that points at it, and strict loading.

Every pretrained file the project reads is listed in `OFFICIAL`. Loading goes through
`load_checkpoint_file` (torch.load with weights_only=True, a clear error for a missing or unreadable
file) and `load_state_dict_strict` (lists missing, unexpected and mis-shaped keys before loading).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class OfficialFile:
    """A pretrained file: its expected name, the conf key that points at it, and where to get it."""

    filename: str
    conf_key: str
    source: str


OFFICIAL: dict[str, OfficialFile] = {
    "stylegan2": OfficialFile(
        "stylegan2-ffhq-config-f.pt",
        "paths.weights.stylegan2",
        "rosinality/stylegan2-pytorch README (FFHQ config-f, converted from NVlabs' official .pkl by convert_weight.py); "
        "HairCLIPv2 and e4e link the same file",
    ),
    "e4e": OfficialFile(
        "e4e_ffhq_encode.pt",
        "paths.weights.e4e",
        "omertov/encoder4editing README, 'Pretrained Models' -> FFHQ Inversion",
    ),
    "ir_se50": OfficialFile(
        "model_ir_se50.pth",
        "paths.weights.ir_se50",
        "omertov/encoder4editing README, 'Auxiliary Models' -> IR-SE50 (TreB1eN/InsightFace_Pytorch ArcFace)",
    ),
    "facenet": OfficialFile(
        "20180402-114759-vggface2.pt",
        "paths.weights.facenet",
        "timesler/facenet-pytorch GitHub release v2.2.9 (InceptionResnetV1 trained on VGGFace2; "
        "facenet-pytorch downloads it to torch.hub.get_dir()/checkpoints when online)",
    ),
    "bisenet": OfficialFile(
        "seg.pth",
        "paths.weights.bisenet",
        "wty-ustc/HairCLIPv2 README, pretrained_models (Barbershop's 16-class BiSeNet face parser)",
    ),
    "bisenet19": OfficialFile(
        "79999_iter.pth",
        "paths.weights.bisenet19",
        "zllrunning/face-parsing.PyTorch README (19-class CelebAMask-HQ BiSeNet)",
    ),
    "bald_proxy": OfficialFile(
        "bald_proxy.pt",
        "paths.weights.bald_proxy",
        "wty-ustc/HairCLIPv2 README, pretrained_models",
    ),
    "sketch_proxy": OfficialFile(
        "sketch_proxy.pt",
        "paths.weights.sketch_proxy",
        "wty-ustc/HairCLIPv2 README, pretrained_models (sketch-to-hair encoder)",
    ),
    "fan": OfficialFile(
        "3DFAN4-4a694010b9.zip",
        "editing.landmark_weights",
        "face_alignment's 3DFAN-4 (adrianbulat.com/downloads/python-fan/3DFAN4-4a694010b9.zip, which "
        "face_alignment >= 1.3 downloads into the torch hub cache; the older 3DFAN4-7835d9f11d.pth.tar works too)",
    ),
    "fs_encoder": OfficialFile(
        "fs_encoder.pt",
        "editing.fs_encoder_weights",
        "this project: `python train.py experiment=fs_encoder_ffhq` writes <run>/fs_encoder.pt",
    ),
    "inception": OfficialFile(
        "weights-inception-2015-12-05-6726825d.pth",
        "paths.weights.inception",
        "toshas/torch-fidelity GitHub release v0.2.0 (the FID Inception v3 of TF-FID, as torchmetrics loads it)",
    ),
    "world_generator": OfficialFile(
        "generator.pt",
        "editing.stylegan_weights",
        "this project's world: weights/world/generator.pt in the repository, or <run>/world_generator.pt of "
        "`python train.py experiment=world_generator`",
    ),
    "world_parser": OfficialFile(
        "parser.pt",
        "editing.parser_weights",
        "this project's world: weights/world/parser.pt in the repository, or <run>/world_parser.pt of "
        "`python train.py experiment=world_parser`",
    ),
    "world_sketch": OfficialFile(
        "sketch_proxy.pt",
        "editing.sketch_weights",
        "this project's world: weights/world/sketch_proxy.pt in the repository, or <run>/sketch_proxy.pt of "
        "`python train.py experiment=world_sketch`",
    ),
    "world_fs_encoder": OfficialFile(
        "fs_encoder.pt",
        "editing.fs_encoder_weights",
        "this project's world: weights/world/fs_encoder.pt in the repository, or <run>/fs_encoder.pt of "
        "`python train.py experiment=world_fs_encoder`",
    ),
    "ffhq_pca": OfficialFile(
        "ffhq_PCA.npz",
        "paths.weights.ffhq_pca",
        "wty-ustc/HairCLIPv2 README, pretrained_models (Barbershop's P-norm statistics); "
        "or write your own with `python -m hairclipv2.editing.prior OUT.npz`",
    ),
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, unreadable, or of another architecture."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """A pretrained file is not where the config says it is."""


def require_file(path: str | Path | None, kind: str, conf_key: str | None = None) -> Path:
    """`path` as a Path if the file exists; else an error naming the file, the conf key that set it
    (`conf_key`, else the file's usual key) and where the file comes from."""
    info = OFFICIAL[kind]
    key = conf_key or info.conf_key
    default = f", which defaults to ${{{info.conf_key}}}" if key != info.conf_key else ""
    if path is None or str(path) == "":
        raise MissingCheckpointError(
            f"no path set for the {kind} weights ({info.filename}): set {key}=/path/to/{info.filename}{default}. "
            f"Get the file from: {info.source}."
        )
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingCheckpointError(
            f"{kind} weights not found: {p} (conf key {key}{default}; expected file {info.filename}). "
            f"Get the file from: {info.source}; then put it there or set {key}=/path/to/{info.filename}."
        )
    return p


def cast_tensors(obj: Any, source: torch.dtype, target: torch.dtype) -> Any:
    """Every `source` tensor of obj as `target`, through dicts, lists and tuples; the rest as it is."""
    if torch.is_tensor(obj):
        return obj.to(target) if obj.dtype == source else obj
    if isinstance(obj, Mapping):
        return type(obj)((k, cast_tensors(v, source, target)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(cast_tensors(v, source, target) for v in obj)
    return obj


def as_float32(obj: Any) -> Any:
    """float16 tensors (the world's files store their weights so: half the size, about 80 dB from
    float32 on the generator's pictures) as float32."""
    return cast_tensors(obj, torch.float16, torch.float32)


def load_checkpoint_file(path: str | Path | None, kind: str, conf_key: str | None = None) -> Any:
    """torch.load(weights_only=True, map_location='cpu') of an official file, with clear errors;
    float16 tensors come back as float32 (`as_float32`)."""
    p = require_file(path, kind, conf_key)
    try:
        return as_float32(torch.load(p, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch raises several types for corrupt or pickled-object files
        raise CheckpointError(
            f"cannot read {p} as {kind} weights ({OFFICIAL[kind].filename}): {type(exc).__name__}: {exc}"
        ) from exc


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries whose key starts with `prefix`, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """module.load_state_dict(state_dict, strict=True), failing with a list of every mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def listing(name: str, items: list[str]) -> str:
            head = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
            return f"\n  {name} ({len(items)}): {head}" if items else ""

        raise CheckpointError(
            f"{what} does not match {type(module).__name__}:"
            + listing("missing keys", missing)
            + listing("unexpected keys", unexpected)
            + listing("shape mismatches", shapes)
        )
    module.load_state_dict(dict(state_dict), strict=True)


@dataclass
class GeneratorCheckpoint:
    """What an official StyleGAN2 file holds: the g_ema state dict and, if stored, latent_avg (style_dim,)."""

    state_dict: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None


def read_stylegan2_checkpoint(path: str | Path | None, conf_key: str | None = None) -> GeneratorCheckpoint:
    """Read rosinality's container ({"g_ema", "latent_avg"}, or a training checkpoint with "g_ema")
    or a plain generator state dict."""
    ckpt = load_checkpoint_file(path, "stylegan2", conf_key)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"{path}: expected a dict (state dict or {{'g_ema', 'latent_avg'}}), got {type(ckpt).__name__}"
        )
    if "g_ema" in ckpt:
        latent_avg = ckpt.get("latent_avg")
        if latent_avg is not None:
            latent_avg = latent_avg.reshape(-1, latent_avg.shape[-1])[0]
        return GeneratorCheckpoint(dict(ckpt["g_ema"]), latent_avg)
    if "style.1.weight" in ckpt:
        return GeneratorCheckpoint(dict(ckpt), None)
    raise CheckpointError(
        f"{path}: not a StyleGAN2 generator checkpoint (no 'g_ema' and no 'style.1.weight'); keys: {sorted(ckpt)[:10]}"
    )


def load_generator(generator: nn.Module, path: str | Path | None, conf_key: str | None = None) -> torch.Tensor:
    """Load an official StyleGAN2 file into `generator` (strict) and return latent_avg (style_dim,).

    When the file stores no latent_avg it is estimated as the mean w of 4096 random z.
    """
    ckpt = read_stylegan2_checkpoint(path, conf_key)
    try:
        load_state_dict_strict(generator, ckpt.state_dict, f"StyleGAN2 checkpoint {path}")
    except CheckpointError as exc:
        raise CheckpointError(str(exc) + filter_hint(generator, ckpt.state_dict)) from None
    return ckpt.latent_avg if ckpt.latent_avg is not None else estimate_latent_avg(generator)


def filter_hint(generator: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """When the up-sampling filters (the blur kernels, stored with the weights) differ in size: which
    `blur_kernel` the file was trained with, to set in the generator's config."""
    own = generator.state_dict()
    kernels = [k for k in own if k.endswith("kernel") and k in state_dict and state_dict[k].shape != own[k].shape]
    if not kernels:
        return ""
    theirs = state_dict[kernels[0]]
    taps = (theirs[0] / theirs[0, 0]).tolist() if theirs[0, 0] != 0 else theirs[0].tolist()
    return (
        f"\n  the file was trained with another up-sampling filter: its kernels are {tuple(theirs.shape)}, the"
        f" model's {tuple(own[kernels[0]].shape)}; set the generator's blur_kernel to {[round(t, 4) for t in taps]}"
    )


def sampling_seed(seed: int) -> int:
    """The seed of a z stream derived from `seed` but independent of torch's stream from `seed`.

    train.py and the tests seed torch with `seed` before they build a random-weight generator, so
    that stream begins with the mapping network's first weights: z drawn from it would be those
    weight rows, each meeting its own row with a huge activation (measured in the demo: codes 3.4x
    farther from latent_avg than those of an unrelated seed)."""
    return int(np.random.SeedSequence([seed, 0x5D47A]).generate_state(1)[0])


def estimate_latent_avg(generator: nn.Module, samples: int = 4096) -> torch.Tensor:
    """The mean w of `samples` random z (seeded, without touching the global RNG), (style_dim,)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sampling_seed(0))
        return generator.mean_latent(samples)[0]


def frozen_generator(generator: nn.Module, path: str | Path | None, conf_key: str | None = None) -> torch.Tensor:
    """Load the official weights (or keep the generator's own, random ones, when `path` is None:
    demos and tests), freeze it, and return latent_avg (style_dim,). `conf_key` names the setting
    that gave `path` in errors."""
    latent_avg = load_generator(generator, path, conf_key) if path is not None else estimate_latent_avg(generator)
    generator.requires_grad_(False).eval()
    return latent_avg


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save through a temporary file and a rename: the target is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


@dataclass
class EncoderCheckpoint:
    """The official pSp / e4e container: {"state_dict": {"encoder.*", "decoder.*"}, "latent_avg", "opts"}."""

    encoder: dict[str, torch.Tensor]
    decoder: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None
    opts: dict[str, Any]


def read_encoder_checkpoint(path: str | Path | None) -> EncoderCheckpoint:
    """Read an official e4e / pSp checkpoint (e.g. e4e_ffhq_encode.pt)."""
    ckpt = load_checkpoint_file(path, "e4e")
    sd = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(sd, Mapping) or not any(k.startswith("encoder.") for k in sd):
        found = sorted(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: not an e4e/pSp checkpoint: expected {{'state_dict': {{'encoder.*', 'decoder.*'}}, 'latent_avg', 'opts'}}, found {found}"
        )
    opts = ckpt.get("opts") or {}
    if not isinstance(opts, Mapping):
        opts = vars(opts)
    return EncoderCheckpoint(
        strip_prefix(sd, "encoder."), strip_prefix(sd, "decoder."), ckpt.get("latent_avg"), dict(opts)
    )


def user_error(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The error to show a user: `exc` or the cause Hydra's instantiate wrapped it around, when it is
    one of `kinds` (a missing file, a bad pairs file, ...); None for anything else (a bug: re-raise)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__
    return None


def backbone_file(net: str) -> Path:
    """Where torchvision keeps the ImageNet weights of a backbone ("alex" or "vgg": lpips' `net`, and
    the VGG16 of the style loss)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(backbone_url(net))


def backbone_url(net: str) -> str:
    """torchvision's download address of a backbone's ImageNet weights ("alex" or "vgg")."""
    import torchvision

    if net not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {net!r}")
    return getattr(torchvision.models, BACKBONES[net]).IMAGENET1K_V1.url


BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}
