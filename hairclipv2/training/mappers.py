"""The amortised proxies' training: a LatentMapper (editing/amortised.py) trained on its proxy's own
objective, over many (source, condition) pairs at once.

Each module takes a hair editor (its `editing` config: the editor that will use the mapper) and
trains the mapper of one of its proxies through that proxy's own methods: the same generator,
losses, weights and rows as the editor's optimisation. Sources are the generator's own faces (W+
codes w = mapping(z) and their F; `sources=encoder`: the FS encoder's (S, F) of the world's
pictures, what the fast path gives the mappers); conditions come from other faces of the batch (z
rolled by one):

- text: the caption of the other face; objective `TextProxy.objective` (CLIP, landmarks).
- reference: the other face as the reference, its codes jittered as an embedding's rows differ
  (`jitter`); objective `RefProxy.objective` (style, landmarks), whose minimum the optimisation seeks
  from those codes.
- colour: the other face's hair colour, as RGB for even items and as the colour's name for odd
  ones; objective `ColourProxy.edit_objective` (background, average Lab colour or CLIP). With
  `lab_gains` the mapper answers one offset per unit of L, a and b asked and one for a text, summed
  with the Lab change asked (target - the source hair's) as weights (`LatentMapper`'s gains).

The loss adds `delta_lambda` x the mean squared offset of the mapper's rows from the optimisation's
start (HairCLIP's latent L2 loss, 0.8 there): without it the text mapper found codes hundreds of times
farther out than the optimisation's (offset norms 300-1000 against 3-5), on pictures that are no
faces (measured on the world). With `relative`, each item's objective is divided by its value at
the optimisation's start (at least `relative_floor`: a colour asked as the hair already is starts
near zero, and dividing by that blew a run up), so that every edit counts alike: the official
weights make an RGB item's average-Lab term (0.003 x the Lab distance) about a seventeenth of a
named colour's CLIP term, and the latent L2 outweighed what an RGB item could gain (measured on the
world). Validation reports the objective at the mapper's answer
(`val/objective`) and at the optimisation's start (`val/objective_start`), with `relative` also the
relative one (`val/relative_objective`); the run exports `<run>/<kind>_mapper.pt` at the best value
of `export_metric`, which `editing.<kind>_mapper_weights` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ..editing.amortised import LatentMapper, save_mapper
from ..editing.editor import HairEditor
from ..editing.proxies import COLOUR_CONDITION, LAB_GAINS, ColourCondition
from ..world import World, caption
from ..world.captions import hair_colour_name


@dataclass
class MapperAnswer:
    """The proxy's objective (N,) at the mapper's answer, the answer's mean squared offset from the
    optimisation's start (N,), and when asked the objective at that start (N,), measured without
    gradients on the same sources and conditions."""

    objective: torch.Tensor
    delta: torch.Tensor
    start: torch.Tensor | None = None


class ProxyMapperModule(pl.LightningModule):
    """What the three modules share: the mapper, its loss, validation, export and checkpoints.
    Subclasses give `kind`, `condition_dim`, `rows`, `reads` and `answer`."""

    kind: str
    proxy_name: str  # the editor's attribute

    def __init__(
        self,
        editor: HairEditor,
        hidden: int = 512,
        layers: int = 3,
        delta_lambda: float = 0.8,
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.Adam, lr=1e-3),
        export: str | None = None,
        sources: str = "mapping",
        relative: bool = False,
        relative_floor: float = 0.01,
        export_metric: str = "val/objective",
        gains: int = 1,
    ):
        """`gains`: the offsets the mapper answers (`LatentMapper`), set by the subclass."""
        super().__init__()
        if relative_floor <= 0:
            raise ValueError(f"model.relative_floor must be > 0 (it divides the objective), got {relative_floor}")
        if export_metric not in ("val/objective", "val/relative_objective"):
            raise ValueError(f"model.export_metric: val/objective or val/relative_objective, got {export_metric!r}")
        if export_metric == "val/relative_objective" and not relative:
            raise ValueError("model.export_metric=val/relative_objective needs model.relative=true")
        if sources not in ("mapping", "encoder"):
            raise ValueError(f"model.sources must be 'mapping' or 'encoder', got {sources!r}")
        if sources == "encoder" and editor.embedding.encoder is None:
            raise ValueError("model.sources=encoder needs the FS encoder (model.editor.fs_encoder_weights)")
        self.save_hyperparameters(ignore=["editor", "optimizer"])
        self.editor = editor.requires_grad_(False)
        g = editor.generator
        dims = (self.condition_dim(), g.style_dim, self.rows(), self.reads())
        self.mapper = LatentMapper(self.kind, *dims, hidden=hidden, layers=layers, gains=gains)
        self.proxy.mapper = self.mapper  # trained through the proxy's own methods
        self.world = World(size=g.size, z_dim=g.style_dim)
        self.optimizer, self.export = optimizer, export or f"{self.kind}_mapper.pt"
        self.best_objective = float("inf")  # of the exported mapper
        self.strict_loading = False  # checkpoints hold the mapper only (the editor comes from its files)

    def condition_dim(self) -> int:
        raise NotImplementedError

    def rows(self) -> int:
        raise NotImplementedError

    def reads(self) -> int:
        return self.rows()

    def answer(self, z: torch.Tensor, with_start: bool = False) -> MapperAnswer:
        """The mapper's answer for the sources z, measured; `with_start`: also the objective at the
        optimisation's start (the relative loss's divisor)."""
        raise NotImplementedError

    @property
    def proxy(self) -> torch.nn.Module:
        return getattr(self.editor, self.proxy_name)

    @property
    def latent_avg(self) -> torch.Tensor:
        return self.editor.latent_avg

    def sources(self, z: torch.Tensor) -> torch.Tensor:
        """The sources' W+ codes (N, n_latent, D) (see `embedded`)."""
        if self.hparams.sources == "encoder":
            return self.embedded(z)[0]
        g = self.editor.generator
        with torch.no_grad():
            return g.mapping(z).unsqueeze(1).expand(-1, g.n_latent, -1).contiguous()

    def embedded(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sources' W+ codes and their feature F after the hairstyle block: the generator's own
        (w = mapping(z) and its F, `sources=mapping`), or the FS encoder's (S, F) of the world's
        pictures of z, as the fast path embeds a photo (`sources=encoder`)."""
        with torch.no_grad():
            if self.hparams.sources == "encoder":
                codes, feature, _ = self.editor.embedding.encoder(self.world.render_z(z.cpu()).image.to(z))
                return codes, feature
            codes = self.sources(z)
            return codes, self.editor.generator.features(codes, self.editor.hairstyle_block)[0]

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.answer(batch["z"], with_start=self.hparams.relative)
        objective = out.objective
        if self.hparams.relative:
            objective = objective / out.start.clamp_min(self.hparams.relative_floor)
        loss = objective.mean() + self.hparams.delta_lambda * out.delta.mean()
        self.log_dict({"train/objective": out.objective.mean(), "train/delta": out.delta.mean()}, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):  # the same jitter at every validation
            torch.manual_seed(batch_idx)
            out = self.answer(batch["z"], with_start=True)
        n = len(out.objective)
        self.log("val/objective", out.objective.mean(), prog_bar=True, batch_size=n)
        self.log("val/objective_start", out.start.mean(), batch_size=n)
        if self.hparams.relative:
            relative = out.objective / out.start.clamp_min(self.hparams.relative_floor)
            self.log("val/relative_objective", relative.mean(), batch_size=n)
        self.log("val/delta", out.delta.mean(), batch_size=n)

    def on_validation_epoch_end(self) -> None:
        """Export the mapper when its validation objective is the best so far (the objective is noisy
        from one validation to the next)."""
        value = self.trainer.callback_metrics.get(self.hparams.export_metric)
        if value is None or self.trainer.sanity_checking or float(value) >= self.best_objective:
            return
        self.best_objective = float(value)
        if self.export and self.trainer.is_global_zero:
            save_mapper(self.mapper, Path(self.trainer.default_root_dir) / self.export)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("mapper.")}
        checkpoint["best_objective"] = self.best_objective

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_objective = checkpoint.get("best_objective", float("inf"))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.mapper.parameters())


def offset(answer: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Mean squared offset (N,) of the answer's rows from the start's."""
    return (answer - start).pow(2).mean(dim=(1, 2))


class TextMapperModule(ProxyMapperModule):
    """The text proxy's mapper: the caption of the next face of the batch as the text."""

    kind = "text"
    proxy_name = "text_proxy"

    def condition_dim(self) -> int:
        return self.editor.clip.embed_dim

    def rows(self) -> int:
        return self.proxy.cfg.rows

    def answer(self, z: torch.Tensor, with_start: bool = False) -> MapperAnswer:
        proxy, g = self.proxy, self.editor.generator
        codes, texts = self.sources(z), caption(self.world.attributes(z.roll(1, 0).cpu()))
        heatmaps = None
        if proxy.landmarks.available:
            with torch.no_grad():
                heatmaps = proxy.landmarks.heatmaps(g.synthesis(codes))
        start = proxy.start(len(z), None, self.latent_avg, None)
        answer = proxy.codes_with_rows(proxy.mapper_rows(texts, codes, self.latent_avg), self.latent_avg)
        k = self.mapper.rows
        out = MapperAnswer(proxy.objective(g.synthesis(answer), texts, heatmaps), offset(answer[:, :k], start[:, :k]))
        if with_start:
            with torch.no_grad():
                out.start = proxy.objective(g.synthesis(start), texts, heatmaps)
        return out


class ReferenceMapperModule(ProxyMapperModule):
    """The reference proxy's mapper: the next face of the batch as the reference."""

    kind = "reference"
    proxy_name = "ref_proxy"

    def __init__(self, editor: HairEditor, jitter: float = 0.05, **kwargs: Any):
        """`jitter`: std of the noise on each row of the reference's codes, relative to the codes'
        spread (an embedding's codes are not the generator's own)."""
        super().__init__(editor, **kwargs)
        z = torch.randn(4096, editor.generator.style_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.register_buffer("code_std", editor.generator.mapping(z).std(0), persistent=False)

    def condition_dim(self) -> int:
        return 0

    def rows(self) -> int:
        return self.proxy.cfg.rows

    def reads(self) -> int:
        return 2 * self.rows()  # the reference's rows and the source's

    def answer(self, z: torch.Tensor, with_start: bool = False) -> MapperAnswer:
        proxy, g = self.proxy, self.editor.generator
        codes, ref_exact = self.sources(z), self.sources(z.roll(1, 0))
        with torch.no_grad():
            targets = proxy.targets(g.synthesis(codes), g.synthesis(ref_exact))
        ref_codes = ref_exact + self.hparams.jitter * self.code_std * torch.randn_like(ref_exact)
        answer = proxy.with_rows(proxy.mapper_rows(ref_codes, codes, self.latent_avg), ref_codes)
        k = self.mapper.rows
        out = MapperAnswer(proxy.objective(g.synthesis(answer), targets), offset(answer[:, :k], ref_codes[:, :k]))
        if with_start:
            with torch.no_grad():
                out.start = proxy.objective(g.synthesis(ref_codes), targets)
        return out


class ColourMapperModule(ProxyMapperModule):
    """The colour proxy's mapper: the next face's hair colour, as RGB (even items) or named (odd)."""

    kind = "colour"
    proxy_name = "colour_proxy"

    def __init__(self, editor: HairEditor, lab_gains: bool = False, **kwargs: Any):
        """`lab_gains`: the mapper answers Lab gains (`ColourProxy.mapper_gains`)."""
        super().__init__(editor, gains=LAB_GAINS if lab_gains else 1, **kwargs)

    def condition_dim(self) -> int:
        return self.editor.clip.embed_dim + COLOUR_CONDITION

    def rows(self) -> int:
        lo, hi = self.proxy.edit_span
        return hi - lo

    def conditions(self, z: torch.Tensor) -> list[ColourCondition]:
        rgb = self.world.attributes(z.roll(1, 0).cpu()).hair_rgb
        names = hair_colour_name(rgb)
        values = (rgb * 255).round().int().tolist()
        return [
            ColourCondition(rgb=tuple(v)) if i % 2 == 0 else ColourCondition(text=f"{name} hair")
            for i, (v, name) in enumerate(zip(values, names, strict=True))
        ]

    def answer(self, z: torch.Tensor, with_start: bool = False) -> MapperAnswer:
        proxy = self.proxy
        b = proxy.blender
        (codes, feature), conditions = self.embedded(z), self.conditions(z)
        lo, hi = proxy.edit_span
        with torch.no_grad():
            edited = b.resume(codes, feature)  # the start: the source's own rows
            edited_hair = proxy.segmenter.hair(edited)
            labs = proxy.target_labs(conditions, edited.shape[-1], edited.device)
            source_labs = proxy.avg_lab.hair_lab(edited, edited_hair)
        rows = proxy.mapper_rows(conditions, labs, codes, self.latent_avg, source_labs)
        image = b.resume(torch.cat([codes[:, :lo], rows, codes[:, hi:]], dim=1), feature)
        objective = proxy.edit_objective(conditions, image, edited, edited_hair, labs)
        out = MapperAnswer(objective, offset(rows, codes[:, lo:hi]))
        if with_start:
            with torch.no_grad():
                out.start = proxy.edit_objective(conditions, edited, edited, edited_hair, labs)
        return out
