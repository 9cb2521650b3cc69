"""The text proxy, amortised: a TextMapper trained on the text proxy's own objective.

For a batch of sources (W+ codes w = mapping(z) of the frozen generator) and texts (here the world's
captions of other faces), the mapper answers the proxy's first rows; the rest are the mean code's,
as in the proxy's optimisation. The loss is `TextProxy.objective` of G(those codes): CLIP (and the
landmark term against the source, where FAN has weights), with the official weights. So the mapper
learns what the optimisation minimises, over many (source, text) pairs at once, with HairCLIP's
latent L2 loss on its offsets (`delta_lambda`) keeping its answers among the generator's codes. Validation reports
that objective for the mapper's answer (`val/objective`) and for the optimisation's start, the mean
code (`val/objective_start`). The run exports `<run>/text_mapper.pt` (the best validation's), which
`editing.text_mapper_weights` reads (`editing.text.method=encoder`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ..config import build, plain
from ..editing.amortised import TextMapper, save_text_mapper
from ..editing.proxies import TEXT_LANDMARKS, TextProxy, TextProxyConfig
from ..losses import CLIPLoss, LandmarkLoss
from ..models.clip import CLIPModel
from ..models.landmarks import load_fan
from ..models.stylegan2 import Generator
from ..weights import frozen_generator
from ..world import World, caption


class TextMapperModule(pl.LightningModule):
    def __init__(
        self,
        generator: Generator,
        stylegan_weights: str | None = None,
        clip_model: str = "ViT-B-32-quickgelu",
        clip_pretrained: str | None = "openai",
        proxy: Mapping[str, Any] | None = None,
        use_landmarks: bool = False,
        landmark_weights: str | None = None,
        hidden: int = 512,
        layers: int = 3,
        delta_lambda: float = 0.8,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=1e-3),
        export: str | None = "text_mapper.pt",
    ):
        """`proxy`: the text proxy's settings (editing.text of the editor that will use the mapper:
        rows, weights, augmentation); `use_landmarks`: the landmark term (FAN's official file);
        `delta_lambda`: weight of the mean squared offset from the mean code (HairCLIP's latent L2
        loss, 0.8 there). Without it the mapper found codes hundreds of times farther out than the
        optimisation's (offset norms 300-1000 against 3-5) that lower CLIP's loss on pictures that are
        no faces (measured on the world)."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "optimizer"])
        self.hparams["proxy"] = plain(proxy)  # plain in the checkpoint (weights_only loading)
        self.latent_avg = frozen_generator(generator, stylegan_weights, "model.stylegan_weights")
        self.generator = generator
        self.clip = CLIPModel(clip_model, clip_pretrained)
        config = build(TextProxyConfig, proxy, "model.proxy")
        fan = load_fan(landmark_weights) if use_landmarks else None
        landmarks = LandmarkLoss(fan, groups=TEXT_LANDMARKS)
        self.proxy = TextProxy(generator, CLIPLoss(self.clip, augment=config.augment), landmarks, None, config)
        text_dim = self.clip.encode_text(["hair"]).shape[-1]
        self.mapper = TextMapper(text_dim, generator.style_dim, config.rows, hidden, layers)
        self.world = World(size=generator.size, z_dim=generator.style_dim)
        self.optimizer, self.export = optimizer, export
        self.best_objective = float("inf")  # of the exported mapper

    def sources(self, z: torch.Tensor) -> torch.Tensor:
        """The sources' W+ codes (N, n_latent, D): the generator's own faces."""
        with torch.no_grad():
            return self.generator.mapping(z).unsqueeze(1).expand(-1, self.generator.n_latent, -1).contiguous()

    def texts(self, z: torch.Tensor) -> list[str]:
        """A text per source: the caption of the next face of the batch (another hairstyle)."""
        return caption(self.world.attributes(z.roll(1, 0).cpu()))

    def answer(self, z: torch.Tensor, use_mapper: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The text proxy's objective (N,) of the mapper's answer for these sources (or of the
        optimisation's start, the mean code), and the answer's mean squared offset from it (N,)."""
        codes, texts = self.sources(z), self.texts(z)
        heatmaps = None
        if self.proxy.landmarks.available:
            with torch.no_grad():
                heatmaps = self.proxy.landmarks.heatmaps(self.generator.synthesis(codes))
        start = self.proxy.start(len(z), None, self.latent_avg, None)
        answer = start
        if use_mapper:
            rows = self.mapper(self.clip.encode_text(texts), codes, self.latent_avg)
            answer = self.proxy.codes_with_rows(rows, self.latent_avg)
        image = self.generator.synthesis(answer)
        offset = (answer - start)[:, : self.mapper.rows]  # the mapper's rows; the others are the start's
        return self.proxy.objective(image, texts, heatmaps), offset.pow(2).mean(dim=(1, 2))

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        objective, delta = self.answer(batch["z"])
        loss = objective.mean() + self.hparams.delta_lambda * delta.mean()
        self.log_dict({"train/objective": objective.mean(), "train/delta": delta.mean()}, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        with torch.no_grad():
            (answer, delta), (start, _) = self.answer(batch["z"]), self.answer(batch["z"], use_mapper=False)
        n = len(answer)
        self.log("val/objective", answer.mean(), prog_bar=True, batch_size=n)
        self.log("val/objective_start", start.mean(), batch_size=n)
        self.log("val/delta", delta.mean(), batch_size=n)

    def on_validation_epoch_end(self) -> None:
        """Export the mapper when its validation objective is the best so far (the objective is noisy
        from one validation to the next)."""
        value = self.trainer.callback_metrics.get("val/objective")
        if value is None or self.trainer.sanity_checking or float(value) >= self.best_objective:
            return
        self.best_objective = float(value)
        if self.export and self.trainer.is_global_zero:
            save_text_mapper(self.mapper, Path(self.trainer.default_root_dir) / self.export)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["best_objective"] = self.best_objective

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_objective = checkpoint.get("best_objective", float("inf"))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.mapper.parameters())
