"""The world's sketch proxy: HairCLIPv2's sketch-encoder layout, scaled to the world, trained in code space.

HairCLIPv2's sketch proxy turns hair strokes into W+ codes whose picture has hair along them. The
world draws every face's sketch (`world/render.py`: the hair's outline and strands) and knows the
face's code, w = mapping(z). So the encoder learns, without a generator pass, to answer that code
from the sketch: offsets from latent_avg with an L2 loss on every row (a sketch says nothing of the
skin or the eyes, so those rows learn their average; the proxy is blended only inside the strokes).
Validation decodes latent_avg + encoder(sketch) and reports the world parser's hair IoU against the
face's exact hair (`val/hair_iou`) beside the same IoU for latent_avg's picture
(`val/latent_avg_hair_iou`, the bar to beat). The run writes `<run>/sketch_proxy.pt` in HairCLIPv2's
container, which `editing.sketch.load_sketch_encoder` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from ..editing.sketch import save_sketch_encoder, sketch_input
from ..evaluation.ground_truth import hair_iou
from ..models.encoders import SketchEncoder
from ..models.parsing import HairSegmenter
from ..models.parsing.world_unet import load_world_parser
from ..models.stylegan2 import Generator
from ..weights import frozen_generator


class WorldSketchModule(pl.LightningModule):
    def __init__(
        self,
        generator: Generator,
        encoder: Callable[..., SketchEncoder] = partial(
            SketchEncoder, num_layers=18, depths=(32, 64, 128, 256), pool=2, input_size=64, last_stage=False
        ),
        stylegan_weights: str | None = None,
        parser_weights: str | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=1e-3),
        export: str | None = "sketch_proxy.pt",
    ):
        """`encoder`: a partial SketchEncoder (its layout), given the generator's style_dim and n_latent;
        `parser_weights`: the world parser that validation reads the hair with (None: no IoU)."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "encoder", "optimizer"])
        self.latent_avg = frozen_generator(generator, stylegan_weights, "model.stylegan_weights")
        self.generator = generator
        self.encoder = encoder(style_dim=generator.style_dim, n_latent=generator.n_latent)
        self.segmenter = (
            HairSegmenter(load_world_parser(parser_weights)).requires_grad_(False) if parser_weights else None
        )
        self.optimizer, self.export = optimizer, export
        self.val_latent_mse, self.val_iou, self.val_avg_iou = MeanMetric(), MeanMetric(), MeanMetric()

    def inputs(self, sketches: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) uint8 strokes -> the encoder's input, as the sketch proxy prepares it."""
        size = self.encoder.input_size
        return torch.cat([sketch_input(s[0], size) for s in sketches.cpu()]).to(self.latent_avg.device)

    def true_offsets(self, z: torch.Tensor) -> torch.Tensor:
        """mapping(z) - latent_avg on every row: (N, n_latent, D)."""
        with torch.no_grad():
            w = self.generator.mapping(z) - self.latent_avg.reshape(1, -1)
        return w.unsqueeze(1).expand(-1, self.generator.n_latent, -1)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = (self.encoder(self.inputs(batch["sketch"])) - self.true_offsets(batch["z"])).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        offsets = self.encoder(self.inputs(batch["sketch"]))
        self.val_latent_mse.update((offsets - self.true_offsets(batch["z"])).pow(2).mean(dim=(1, 2)))
        self.log("val/latent_mse", self.val_latent_mse, prog_bar=True)
        if self.segmenter is None:
            return
        g, mean = self.generator, self.latent_avg.reshape(1, 1, -1)
        with torch.no_grad():
            images = g.synthesis(mean + offsets).clamp(-1, 1)
            average = g.synthesis(mean.expand(1, g.n_latent, -1)).clamp(-1, 1)
        target = (batch["hair"] > 0.5).float()
        self.val_iou.update(hair_iou(self.segmenter.hair(images), target))
        self.val_avg_iou.update(hair_iou(self.segmenter.hair(average).expand_as(target), target))
        self.log("val/hair_iou", self.val_iou, prog_bar=True)
        self.log("val/latent_avg_hair_iou", self.val_avg_iou)

    def on_validation_epoch_end(self) -> None:
        if self.export and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            save_sketch_encoder(self.encoder, Path(self.trainer.default_root_dir) / self.export)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.encoder.parameters())
