"""A small CLIP for the world: open_clip's architecture with tiny towers, trained contrastively on the
world's faces and captions of their hair (`world/captions.py`), so that text and colour-text edits of
world faces mean something.

The images reach the vision tower as the editor hands them to CLIP (HairCLIPv2's resize to 224 px,
`models/clip.py`), lightly degraded as the parser's are. Validation reports zero-shot accuracy of the
hair colour, the length and the texture from their captions. The run exports `<run>/world_clip/`
(`open_clip_config.json` and `open_clip_pytorch_model.bin`), which `CLIPModel("local-dir:<folder>")`
loads like any open_clip model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from ..config import plain
from ..models.clip import CLIP_MEAN, CLIP_STD, clip_input
from ..weights import atomic_torch_save, load_state_dict_strict
from ..world import HAIR_COLOURS, attributes_from_z
from ..world.captions import LENGTHS, TEXTURES, hair_colour_name, length_word, phrasing
from .world_parser import degrade

TINY_CLIP = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 3, "width": 128, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}


def build_clip(model_cfg: Mapping[str, Any], name: str = "world-clip") -> torch.nn.Module:
    """An open_clip model of the given architecture, with random weights."""
    import open_clip

    open_clip.factory._MODEL_CONFIGS[name] = dict(model_cfg)  # open_clip's table of architectures
    return open_clip.create_model(name, pretrained=None)


def load_exported_clip(model: torch.nn.Module, model_cfg: Mapping[str, Any], folder: str | Path) -> None:
    """Load an `export_clip` folder into `model` (strict), which must have the folder's architecture."""
    folder = Path(folder)
    config_file, weights_file = folder / "open_clip_config.json", folder / "open_clip_pytorch_model.bin"
    for f in (config_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(f"model.init_weights: {f} not found (a folder written by experiment=world_clip)")
    saved = json.loads(config_file.read_text())["model_cfg"]
    if saved != dict(model_cfg):
        raise ValueError(f"model.init_weights: {config_file} holds the architecture {saved}, the model is {model_cfg}")
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    load_state_dict_strict(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, str(folder))


def export_clip(model: torch.nn.Module, model_cfg: Mapping[str, Any], folder: str | Path) -> Path:
    """`folder` in open_clip's local-dir layout (the weights in half precision)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": dict(model_cfg), "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)}}
    tmp = folder / ".open_clip_config.json.tmp"
    tmp.write_text(json.dumps(config, indent=1))
    tmp.replace(folder / "open_clip_config.json")
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    atomic_torch_save(state, folder / "open_clip_pytorch_model.bin")
    return folder


class WorldCLIPModule(pl.LightningModule):
    def __init__(
        self,
        model_cfg: Mapping[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.AdamW, lr=5e-4, weight_decay=0.1),
        export: str | None = "world_clip",
        init_weights: str | None = None,
    ):
        """`init_weights`: an exported folder (e.g. weights/world/clip) to continue from."""
        super().__init__()
        import open_clip

        model_cfg = dict(plain(model_cfg) or TINY_CLIP)  # plain in the checkpoint (weights_only)
        self.save_hyperparameters(ignore=["optimizer"])
        self.model_cfg = model_cfg
        self.clip = build_clip(self.model_cfg)
        if init_weights is not None:
            load_exported_clip(self.clip, self.model_cfg, init_weights)
        self.tokenizer = open_clip.get_tokenizer("world-clip")
        self.optimizer, self.export = optimizer, export
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.val_metrics = {k: MeanMetric() for k in ("colour", "length", "texture")}
        for k, m in self.val_metrics.items():
            self.add_module(f"val_{k}", m)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = clip_input((images + 1) / 2)
        return F.normalize(self.clip.encode_image((x - self.mean) / self.std), dim=-1)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(self.tokenizer(texts).to(self.mean.device)), dim=-1)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        texts = phrasing(attributes_from_z(batch["z"].cpu()))
        image, text = self.image_features(degrade(batch["image"])), self.text_features(texts)
        logits = self.clip.logit_scale.exp().clamp(max=100) * image @ text.T
        # captions repeat within a batch: every image whose caption is the same is a right answer
        same = torch.tensor([[a == b for b in texts] for a in texts], device=logits.device).float()
        target = same / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        faces = attributes_from_z(batch["z"].cpu())
        haired = faces.hair_amount > 0
        image = self.image_features(batch["image"])[haired.to(self.device)]
        truth = {
            "colour": (list(HAIR_COLOURS), hair_colour_name(faces.hair_rgb)),
            "length": (list(LENGTHS), [length_word(float(a)) for a in faces.hair_amount]),
            "texture": (list(TEXTURES), [TEXTURES[min(int(float(c) * 3), 2)] for c in faces.curl]),
        }
        for key, (words, answers) in truth.items():
            text = self.text_features([f"{w} hair" for w in words])
            guess = (image @ text.T).argmax(1).cpu()
            right = torch.tensor([words.index(a) for a, h in zip(answers, haired, strict=True) if h])
            if len(right):
                self.val_metrics[key].update((guess == right).float().mean())
                self.log(f"val/{key}_accuracy", self.val_metrics[key], prog_bar=key == "colour")

    def on_validation_epoch_end(self) -> None:
        if self.export and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            export_clip(self.clip, self.model_cfg, Path(self.trainer.default_root_dir) / self.export)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.clip.parameters())
