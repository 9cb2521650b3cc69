"""The HairCLIPv2 pipeline for a batch of edits, and its LightningModule.

For sources x (N, 3, S, S) and one kind of condition per batch:
1. embed: W+ (from the e4e encoder when given, else the mean latent), then (F, S) by FSEmbedding;
2. hairstyle: a global proxy (text, reference, or a painted mask alone) with the bald proxy of S,
   and/or a local proxy from a sketch; hairstyle blending at F and a resume with S
   (FeatureBlender.hairstyle). A painted label map adds HairCLIPv2's mask loss to the global proxy;
3. colour (optional, or the whole edit for kind "colour"): the colour proxy on the result of 2.
Every optimisation is batched with per-sample codes and per-sample losses. `HairEditModule` runs
`HairEditor.edit` in `predict_step` (with gradients on: `Trainer(inference_mode=False)`), so
`trainer.predict` spreads batches of edits over devices with DDP.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from .. import masks as M
from ..blending import FeatureBlender
from ..models.inversion import InversionModel, resize_images
from ..models.parsing import HairSegmenter
from .acceleration import Acceleration
from .bald import BaldProxy
from .cache import SourceCache
from .embedding import FSCode, FSEmbedding
from .latents import LatentCache, fs_code
from .proxies import ColourCondition, ColourProxy, RefProxy, TextProxy
from .sketch import SketchProxy

KINDS = ("text", "reference", "mask", "sketch", "colour", "reconstruction")
GLOBAL_KINDS = ("text", "reference", "mask")  # kinds with a global hairstyle proxy (and the bald proxy)
PAINT_LABELS = (0, 1, 6, 10)  # HairCLIPv2's painting classes: background, face, ear, hair
PAINTED_BALD_REGIONS = ("painted", "union")
# A painted mask starts from the source's parsed labels (utils/mask_ui.py), so any of the parser's
# classes may remain; only the painting classes weigh in the mask loss.
PARSER_CLASSES = 16


@dataclass
class EditBatch:
    """A batch of edits of one kind: sources (N, 3, S, S) in [-1, 1] and one condition per source.

    masks: painted label maps (N, L, L) int64 of the parser's classes, painted with HairCLIPv2's
        painting classes (0 background, 1 face, 6 ear, 10 hair) at the parser's H/2 (or S) resolution: the mask loss of the global
        proxy (kinds text, reference, mask).
    sketches: hair strokes (N, L, L) uint8, > 0 on a stroke (kinds text, reference, sketch): a local
        proxy blended inside the dilated strokes.
    """

    sources: torch.Tensor
    kind: str
    texts: list[str] | None = None
    references: torch.Tensor | None = None
    colours: list[ColourCondition] | None = None
    masks: torch.Tensor | None = None
    sketches: torch.Tensor | None = None
    reference_codes: torch.Tensor | None = None  # (N, n_latent, D): the references' W+ (cached), else inverted

    def __post_init__(self) -> None:
        n = self.sources.shape[0]
        if self.kind not in KINDS:
            raise ValueError(f"edit kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "text" and (self.texts is None or len(self.texts) != n):
            raise ValueError(
                f"a text edit needs one text per source ({n}), got {None if self.texts is None else len(self.texts)}"
            )
        if self.kind == "text":
            for i, t in enumerate(self.texts):
                if not isinstance(t, str) or not t.strip():
                    raise ValueError(f"sample {i}: the hairstyle text is empty")
        if self.kind == "reference" and (self.references is None or self.references.shape != self.sources.shape):
            raise ValueError(
                f"a reference edit needs reference images shaped like the sources {tuple(self.sources.shape)}"
            )
        if self.kind == "colour" and (self.colours is None or len(self.colours) != n):
            raise ValueError(f"a colour edit needs one colour condition per source ({n})")
        size = self.sources.shape[-1]
        for name, value, kinds in (
            ("mask", self.masks, GLOBAL_KINDS),
            ("sketch", self.sketches, ("text", "reference", "sketch")),
        ):
            if value is None:
                if self.kind == name:
                    raise ValueError(f"a {name} edit needs one {name} per source")
                continue
            if self.kind not in kinds:
                raise ValueError(f"a {name} goes with the kinds {kinds}, not {self.kind!r}")
            if (
                value.ndim != 3
                or value.shape[0] != n
                or value.shape[1] != value.shape[2]
                or value.shape[-1] not in (size, size // 2)
            ):
                raise ValueError(
                    f"{name}s must be (N={n}, L, L) with L = {size} or {size // 2}, got {tuple(value.shape)}"
                )
        if self.masks is not None and (self.masks.min() < 0 or self.masks.max() >= PARSER_CLASSES):
            raise ValueError(
                f"painted masks hold the parser's class ids 0..{PARSER_CLASSES - 1} (painting: {PAINT_LABELS}), "
                f"found {sorted(set(self.masks.unique().tolist()))}"
            )
        if self.sketches is not None and self.sketches.dtype != torch.uint8:
            raise ValueError(f"sketches must be uint8 stroke images, got {self.sketches.dtype}")


@dataclass
class EditOutput:
    result: torch.Tensor  # the edited images (N, 3, S, S)
    reconstruction: torch.Tensor  # the source decoded from its (F, S)
    hairstyle: torch.Tensor  # after hairstyle blending (== reconstruction for colour-only edits)
    source_hair: torch.Tensor  # hair masks (N, 1, S, S) of the source (the photo, or the reconstruction)
    result_hair: torch.Tensor  # and of the result
    codes: torch.Tensor
    feature: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, for the whole batch
    bald_codes: torch.Tensor | None = None  # the bald proxy's W+ (hairstyle edits with a global proxy)
    proxy_codes: torch.Tensor | None = None  # the hairstyle proxy's W+: global (text, reference, mask), else sketch
    source_codes: torch.Tensor | None = None  # the source's (S, F) embedding the edit started from
    source_feature: torch.Tensor | None = None
    reference_codes: torch.Tensor | None = None  # the references' W+ inversion (reference edits)

    def __post_init__(self) -> None:
        # float32 whatever precision the edit ran at (bf16 autocast: acceleration.py)
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                setattr(self, name, value.float())


class HairEditor(nn.Module):
    def __init__(
        self,
        blender: FeatureBlender,
        embedding: FSEmbedding,
        bald: BaldProxy,
        text_proxy: TextProxy | None,
        ref_proxy: RefProxy | None,
        colour_proxy: ColourProxy | None,
        latent_avg: torch.Tensor,
        encoder: InversionModel | None = None,
        sketch_proxy: SketchProxy | None = None,
        source_photo_targets: bool = True,
        painted_bald_region: str = "painted",
        networks: dict[str, nn.Module | None] | None = None,
        source_cache: int = 0,
        acceleration: Acceleration | None = None,
    ):
        """`source_photo_targets`: HairCLIPv2 parses the real photo for the bald mask, gives it to the
        proxies (landmarks) and uses it as the colour edit's target when the hairstyle is kept
        (`scripts/*.py`: `src_image`); False uses the image decoded from (F, S) instead.
        `painted_bald_region`: where a painted mask is given, the labels the bald region (hair +
        ears) is read from: "painted" is HairCLIPv2's (the painting is its `visual_mask`: painting
        longer hair balds the new area, erased hair stays in the features), "union" also balds the
        photo's own hair (erasing hair removes it).
        `networks`: the networks the parts share (generator, segmenter, clip, lpips, vgg, fan), registered
        here once; the parts only refer to them (sharing.py). `source_cache`: how many sources keep
        their embedding and parser labels for the next edit of the same picture (0: none; cache.py).
        `acceleration`: bf16 autocast, channels_last, a compiled generator (acceleration.py; all off)."""
        super().__init__()
        shared = {"generator": blender.generator, "segmenter": blender.segmenter, **(networks or {})}
        self.networks = nn.ModuleDict({k: v for k, v in shared.items() if v is not None})
        self.blender, self.embedding, self.bald = blender, embedding, bald
        self.text_proxy, self.ref_proxy, self.colour_proxy, self.encoder = text_proxy, ref_proxy, colour_proxy, encoder
        self.sketch_proxy, self.source_photo_targets = sketch_proxy, source_photo_targets
        if painted_bald_region not in PAINTED_BALD_REGIONS:
            raise ValueError(f"painted_bald_region must be one of {PAINTED_BALD_REGIONS}, got {painted_bald_region!r}")
        self.painted_bald_region = painted_bald_region
        self.cache = SourceCache(source_cache) if source_cache else None
        self.register_buffer("latent_avg", latent_avg.reshape(-1).clone())
        self.acceleration = acceleration or Acceleration()
        self.acceleration.apply(self.networks)

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    def bald_labels(self, parsed: torch.Tensor, painted: torch.Tensor | None) -> torch.Tensor:
        """The labels (N, 1, L, L) the bald region is read from (HairCLIPv2's `visual_mask`): the
        photo's parsed labels, or with a painted mask (N, L', L') as `painted_bald_region` says ("union"
        reads the parsed labels at the painting's size, nearest)."""
        if painted is None:
            return parsed
        painted = painted[:, None].to(parsed)
        if self.painted_bald_region == "painted":
            return painted
        parsed = M.resize_mask(parsed, painted.shape[-1], mode="nearest").to(parsed)
        return torch.where(self.segmenter.hair_and_ears(painted) > 0, painted, parsed)

    def clock(self) -> float:
        """Seconds for stage timings: on a GPU, after the queued kernels have run (synchronised)."""
        device = self.latent_avg.device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    @property
    def segmenter(self) -> HairSegmenter:
        return self.networks["segmenter"]

    @property
    def hairstyle_block(self) -> int:
        """The generator block whose output is F (the FS space's feature)."""
        return self.blender.hairstyle_block

    @property
    def clip(self) -> nn.Module | None:
        """The CLIP network the proxies use (for CLIP scores), if any."""
        return self.networks["clip"] if "clip" in self.networks else None

    def initial_codes(self, images: torch.Tensor) -> torch.Tensor | None:
        """e4e codes of the images, when an encoder is given (else the embedding starts from the mean)."""
        if self.encoder is None:
            return None
        with torch.no_grad():
            return self.encoder.encode(resize_images(images, self.encoder.input_size))

    def embed(self, images: torch.Tensor) -> FSCode:
        """The FS embedding of images (from the source cache for the pictures it holds), float32."""

        def invert(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            with self.acceleration.autocast(x.device):
                code = self.embedding.invert_fs(x, self.initial_codes(x))
            return code.codes.float(), code.feature.float(), code.image.float()

        if self.cache is None:
            return FSCode(*invert(images))
        return FSCode(*self.cache.lookup("fs", images, invert))

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """The parser's labels of images (N, 1, L, L) (from the source cache for the pictures it holds)."""
        if self.cache is None:
            return self.segmenter.labels(images)
        return self.cache.lookup("labels", images, lambda x: (self.segmenter.labels(x),))[0]

    def encoder_code(self, images: torch.Tensor) -> FSCode:
        """The e4e encoder's inversion as an FSCode, in one forward pass: its W+ codes, their F, and
        the generator's image of them (fixed noise). Needs `e4e_weights`."""
        codes = self.initial_codes(images)
        if codes is None:
            raise ValueError("inversion=e4e needs the e4e encoder (editing.e4e_weights)")
        with torch.no_grad():
            feature = self.generator.features(codes, self.hairstyle_block)[0]
            return FSCode(codes, feature, self.generator.synthesis(codes))

    def hair(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Hair masks (N, 1, S, S) of images (from their parser labels, when already computed)."""
        labels = self.segmenter.labels(images) if labels is None else labels
        return self.segmenter.hair_of_labels(labels, images.shape[-1])

    def global_proxy(self, batch: EditBatch, source_images: torch.Tensor, source_codes: torch.Tensor | None = None):
        """The text, reference or painted-mask proxy of a batch (a mask alone: the text proxy's
        start and landmarks under the mask loss, without CLIP). `source_codes`: the source's W+
        (the mappers' input with editing.<mode>.method=encoder)."""
        if batch.kind in ("text", "mask"):
            if self.text_proxy is None:
                raise ValueError("this editor has no text proxy")
            return self.text_proxy.optimise(
                source_images,
                batch.texts if batch.kind == "text" else None,
                self.latent_avg,
                painted_labels=batch.masks,
                source_codes=source_codes,
            )
        if self.ref_proxy is None:
            raise ValueError("this editor has no reference proxy")
        batch = self.with_reference_codes(batch)
        return self.ref_proxy.optimise(
            source_images, batch.references, batch.reference_codes, batch.masks, source_codes, self.latent_avg
        )

    def with_reference_codes(self, batch: EditBatch) -> EditBatch:
        """The batch with its references' W+ (HairCLIPv2's `ref_latent`): given, or inverted here (on the fast
        path, `editing.embedding.method=encoder`, the FS encoder's codes)."""
        if batch.kind != "reference" or batch.reference_codes is not None:
            return batch
        references = batch.references
        codes = self.embedding.reference_codes(references, lambda: self.initial_codes(references))
        return dataclasses.replace(batch, reference_codes=codes)

    def edit(
        self, batch: EditBatch, source_code: FSCode | None = None, progress: Callable[[str], None] | None = None
    ) -> EditOutput:
        """One batch of edits. `progress(stage)` is called as each stage starts: "embedding", "bald
        proxy", "<kind> proxy", "sketch proxy", "blending", "colour proxy". Images and codes come back
        float32 whatever the acceleration's precision."""
        with self.acceleration.autocast(batch.sources.device):
            return self._edit(batch, source_code, progress or (lambda stage: None))

    def _edit(self, batch: EditBatch, source_code: FSCode | None, progress: Callable[[str], None]) -> EditOutput:
        seconds: dict[str, float] = {}
        tic = self.clock()
        if source_code is None:
            progress("embedding")
        fs = source_code or self.embed(batch.sources)
        seconds["embedding"] = self.clock() - tic
        image, feature = fs.image, fs.feature
        target = batch.sources if self.source_photo_targets else fs.image  # HairCLIPv2's src_image
        src_labels = self.labels(target)
        bald_codes = global_codes = local = None
        if batch.kind in (*GLOBAL_KINDS, "sketch"):
            if batch.kind in GLOBAL_KINDS:
                progress("bald proxy")
                tic = self.clock()
                bald_codes = self.bald(fs.codes)
                seconds["bald"] = self.clock() - tic
                progress(f"{batch.kind} proxy")
                tic = self.clock()
                batch = self.with_reference_codes(batch)
                global_codes = self.global_proxy(batch, target, fs.codes).codes
                seconds[f"{batch.kind}_proxy"] = self.clock() - tic
            if batch.sketches is not None:
                if self.sketch_proxy is None:
                    raise ValueError("this editor has no sketch proxy (paths.weights.sketch_proxy)")
                progress("sketch proxy")
                tic = self.clock()
                local = self.sketch_proxy(batch.sketches)
                seconds["sketch_proxy"] = self.clock() - tic
            progress("blending")
            blended = self.blender.hairstyle(
                fs.codes,
                fs.feature,
                self.bald_labels(src_labels, batch.masks),
                bald_codes,
                global_codes,
                local.codes if local is not None else None,
                local.mask if local is not None else None,
            )
            image, feature = blended.image, blended.feature
        hairstyle_image, codes = image, fs.codes  # "reconstruction": the embedding is the result
        if batch.colours is not None:
            if self.colour_proxy is None:
                raise ValueError("this editor has no colour proxy")
            progress("colour proxy")
            tic = self.clock()
            # A colour-only edit keeps the hairstyle: HairCLIPv2 then targets the photo itself.
            colour_target = target if batch.kind == "colour" else hairstyle_image
            colour = self.colour_proxy.edit(batch.colours, colour_target, fs.codes, feature, self.latent_avg)
            seconds["colour_proxy"] = self.clock() - tic
            image, codes = colour.image, colour.codes
        with torch.no_grad():
            return EditOutput(
                image.detach(),
                fs.image,
                hairstyle_image.detach(),
                self.hair(target, src_labels),
                self.hair(image),
                codes.detach(),
                feature.detach(),
                seconds,
                bald_codes,
                global_codes if global_codes is not None else None if local is None else local.codes,
                fs.codes.detach(),
                fs.feature.detach(),
                batch.reference_codes,
            )


class HairEditModule(pl.LightningModule):
    """Runs batches of edits with `trainer.predict` (Trainer(inference_mode=False), any number of
    devices). A batch is a dict with "source" (N, 3, S, S), "kind" and the matching "text",
    "reference" or "colour" entries (see `batch_to_edits`), plus optional per-item "id", "row",
    "condition" that are passed through.

    With `isolate_failures`, a batch that fails is retried pair by pair: the pairs that fail are
    returned in "failures" (id, row, condition, error) and the others are kept.
    """

    def __init__(
        self,
        editor: HairEditor,
        isolate_failures: bool = True,
        seed: int | None = None,
        inversion: str = "fs",
        latents: LatentCache | None = None,
    ):
        """`seed`: each batch's random draws (proxy noise) start from seed + a hash of its ids, so a
        pair edited alone gives the same result in any run, process or order. `inversion`: "fs"
        (HairCLIPv2's optimised embedding) or "e4e" (the encoder's codes, one forward pass).
        `latents`: HairCLIPv2's cache folders, where the inversions an edit computed are written
        (batches carry "source_stem" and "reference_stem")."""
        super().__init__()
        if inversion not in ("fs", "e4e"):
            raise ValueError(f"inversion must be 'fs' or 'e4e', got {inversion!r}")
        self.editor = editor.requires_grad_(False)
        self.isolate_failures, self.seed, self.inversion, self.latents = isolate_failures, seed, inversion, latents

    def run(self, batch: dict[str, Any]) -> EditOutput:
        source_code = None
        if "src_latent" in batch:  # HairCLIPv2's cached src_F/<name>.npz for every source of the batch
            e = self.editor
            source_code = fs_code(e.generator, e.hairstyle_block, batch["src_latent"], batch["src_F"])
        elif self.inversion == "e4e":
            source_code = self.editor.encoder_code(batch["source"])
        with torch.enable_grad():
            out = self.editor.edit(batch_to_edits(batch), source_code)
        if self.latents is not None and "source_stem" in batch:
            if source_code is None:
                self.latents.store(batch["source_stem"], out.source_codes, out.source_feature)
            if "reference_codes" not in batch:
                self.latents.store_references(batch.get("reference_stem", []), out.reference_codes)
        return out

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Pairs whose files could not be loaded arrive in batch["failures"] and are reported as such."""
        loaded = batch.pop("failures", [])
        if "source" not in batch:  # every pair of the batch failed to load
            return {"output": None, "batch": batch, "failures": loaded}
        if self.seed is not None:
            torch.manual_seed(self.seed + zlib.crc32(",".join(map(str, batch.get("id", []))).encode()))
        result = self.edit_batch(batch)
        result["failures"] = loaded + result["failures"]
        return result

    def edit_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"output": self.run(batch), "batch": batch, "failures": []}
        except Exception as exc:
            if not self.isolate_failures:
                raise
            errors = {0: exc}
        n = batch["source"].shape[0]
        outputs, kept = [], []
        for i in range(n if n > 1 else 0):  # a single pair has already failed
            try:
                outputs.append(self.run(slice_batch(batch, [i])))
                kept.append(i)
            except Exception as exc:  # reported per pair; the other pairs go on
                errors[i] = exc
        failures = [
            {
                "id": _item(batch, "id", i, str(i)),
                "row": _item(batch, "row", i, i),
                "condition": _item(batch, "condition", i, ""),
                "error": f"{type(e).__name__}: {e}",
            }
            for i, e in sorted(errors.items())
            if i not in kept
        ]
        return {
            "output": concat_outputs(outputs) if outputs else None,
            "batch": slice_batch(batch, kept),
            "failures": failures,
        }


def _item(batch: dict[str, Any], key: str, i: int, default: Any) -> Any:
    values = batch.get(key)
    return default if values is None else values[i] if not torch.is_tensor(values) else values[i].item()


def slice_batch(batch: dict[str, Any], idx: list[int]) -> dict[str, Any]:
    """The items `idx` of a collated batch (tensors and lists alike; "kind" kept whole)."""
    out = {}
    for key, value in batch.items():
        if key == "kind" and isinstance(value, str):
            out[key] = value
        elif torch.is_tensor(value):
            out[key] = value[idx]
        elif isinstance(value, (list, tuple)):
            out[key] = [value[i] for i in idx]
        else:
            out[key] = value
    return out


def concat_outputs(outputs: list[EditOutput]) -> EditOutput:
    fields = ("result", "reconstruction", "hairstyle", "source_hair", "result_hair", "codes", "feature")
    merged = {f: torch.cat([getattr(o, f) for o in outputs]) for f in fields}
    for f in ("source_codes", "source_feature", "reference_codes"):  # kept where every output has them
        if all(getattr(o, f) is not None for o in outputs):
            merged[f] = torch.cat([getattr(o, f) for o in outputs])
    seconds: dict[str, float] = {}
    for o in outputs:
        for k, v in o.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
    return EditOutput(**merged, seconds=seconds)


def batch_to_edits(batch: dict[str, Any]) -> EditBatch:
    """A collated dict batch -> EditBatch (kind: the first item's; batches are of one kind)."""
    kind = batch["kind"][0] if isinstance(batch["kind"], (list, tuple)) else batch["kind"]
    colours = batch.get("colour")
    return EditBatch(
        batch["source"],
        kind,
        texts=list(batch["text"]) if "text" in batch else None,
        references=batch.get("reference"),
        colours=list(colours) if colours is not None else None,
        masks=batch.get("mask"),
        sketches=batch.get("sketch"),
        reference_codes=batch.get("reference_codes"),
    )
