"""Edit the hair of a photograph and paste the edit back into it: the core of the photo command
(`hairclipv2.edit`) and of the browser editor (`hairclipv2.app`).

The face is FFHQ-aligned (MTCNN), edited at the generator's size, and pasted back through the inverse
of the alignment, blended with a feathered mask around the hair of the source and of the result, so
that every photo pixel outside it keeps its value bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .align import FaceAligner, FaceQuad, ffhq_quad, warp_to_quad
from .editing.editor import EditBatch, EditOutput, HairEditor
from .editing.proxies import ColourCondition
from .io import pil_to_tensor, to_uint8
from .paste import feathered_region, paste_back


class EditError(ValueError):
    """Input an edit cannot use (the message says which and why)."""


@dataclass
class Condition:
    """What one edit asks for: a hairstyle (text or reference photo), a colour (text or RGB), or
    neither; with an optional sketch (uint8 strokes, > 0 on a stroke) and painted mask (HairCLIPv2's
    painting classes), each (L, L) with L the edit size or half of it."""

    text: str | None = None
    reference: Image.Image | None = None
    colour_text: str | None = None
    rgb: tuple[int, int, int] | None = None
    sketch: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("text", "reference", "colour_text", "rgb") if getattr(self, n) is not None]
        if len(given) > 1:
            raise EditError(f"one of text, reference, colour text and RGB per edit, got {given}")
        if not given and self.sketch is None and self.mask is None:
            raise EditError("nothing to edit: give a text, a reference, a colour, a sketch or a mask")
        for name, what in (("text", "hairstyle text"), ("colour_text", "colour text")):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise EditError(f"the {what} is empty")
        if self.sketch is not None and not self.sketch.any():
            raise EditError("the sketch has no stroke")

    @property
    def kind(self) -> str:
        if self.text is not None:
            return "text"
        if self.reference is not None:
            return "reference"
        if self.colour_text is not None or self.rgb is not None:
            return "colour"
        return "sketch" if self.sketch is not None else "mask"

    def batch(self, source: torch.Tensor, reference: torch.Tensor | None = None) -> EditBatch:
        """The EditBatch of one aligned face (1, 3, S, S); `reference`: the aligned reference (1, 3, S, S)."""
        masks = None if self.mask is None else torch.from_numpy(np.array(self.mask)).long()[None]
        sketches = None if self.sketch is None else torch.from_numpy(np.array(self.sketch, np.uint8))[None]
        kind = self.kind
        try:
            if kind == "colour":
                colour = ColourCondition(text=self.colour_text, rgb=self.rgb)
                return EditBatch(source, kind, colours=[colour])
            return EditBatch(
                source,
                kind,
                texts=[self.text] if kind == "text" else None,
                references=reference,
                masks=masks,
                sketches=sketches,
            )
        except ValueError as exc:
            raise EditError(str(exc)) from None


@dataclass
class FaceEdit:
    """One face's edit: the aligned crop, the edit, and the proxies it blended (None when unused)."""

    crop: Image.Image
    edit: Image.Image
    quad: FaceQuad
    bald: Image.Image | None = None
    proxy: Image.Image | None = None


@dataclass
class PhotoEdit:
    photo: Image.Image  # the original photo with the edits pasted in
    region: Image.Image  # the blend weight in the photo (L, 0..255)
    faces: list[FaceEdit] = field(default_factory=list)


Progress = Callable[[str], None]


@dataclass
class Prepared:
    """A photo and a condition, checked and aligned: ready for the editor."""

    photo: Image.Image
    condition: Condition
    quads: list[FaceQuad]
    crops: list[Image.Image]
    reference: torch.Tensor | None  # the aligned reference (1, 3, S, S)
    note: str = ""  # which face(s) were taken, by which landmarks, when that needs saying


def aligned_faces(
    aligner: FaceAligner, size: int, photo: Image.Image, name: str = "photo", all_faces: bool = False
) -> tuple[list[FaceQuad], list[Image.Image], str]:
    """The FFHQ quads of the photo's faces, largest first (only the largest unless all_faces), the
    aligned crops (size px), and a note saying which faces were taken when there was a choice."""
    found, detector = aligner.detect(photo, name=name)
    found = sorted(found, key=lambda f: -f.area)
    quads = [ffhq_quad(f.landmarks) for f in (found if all_faces else found[:1])]
    notes = []
    if detector != aligner.kind:
        notes.append(f"{name}: dlib found no face; aligned with MTCNN's five landmarks instead")
    if len(found) > 1:
        taken = "all of them, largest first" if all_faces else "the largest (--all-faces edits every one)"
        notes.append(f"{name}: {len(found)} faces found; editing {taken}")
    return quads, [warp_to_quad(photo, quad, size) for quad in quads], "\n".join(notes)


def whole_picture(photo: Image.Image, size: int, name: str = "photo") -> tuple[FaceQuad, Image.Image]:
    """An already aligned face (an FFHQ-aligned crop, a world face): the quad of the whole square
    picture and the picture at the edit size."""
    w, h = photo.size
    if w != h:
        raise EditError(f"{name}: --aligned takes a square, already aligned face; this picture is {w}x{h}")
    quad = FaceQuad(np.array([w / 2, h / 2]), np.array([w / 2, 0.0]), np.array([0.0, h / 2]))
    crop = photo.convert("RGB")
    return quad, crop if w == size else crop.resize((size, size), Image.LANCZOS)


def prepare(
    aligner: FaceAligner,
    size: int,
    photo: Image.Image,
    condition: Condition,
    name: str = "photo",
    all_faces: bool = False,
    aligned: bool = False,
) -> Prepared:
    """Everything that can be wrong with the input, found before any edit (and before the editor is
    built): a face in the photo (and in the reference), a condition that fits the edit size.
    `aligned`: the photo and the reference are aligned faces already (no detection)."""
    if aligned:
        quad, crop = whole_picture(photo, size, name)
        quads, crops, note = [quad], [crop], ""
    else:
        quads, crops, note = aligned_faces(aligner, size, photo, name, all_faces)
    reference = None
    if condition.reference is not None and aligned:
        reference = pil_to_tensor(whole_picture(condition.reference, size, "the reference")[1])[None]
    elif condition.reference is not None:
        reference = pil_to_tensor(aligner.align(condition.reference, size, name="the reference").image)[None]
    condition.batch(pil_to_tensor(crops[0])[None], reference)
    return Prepared(photo.convert("RGB"), condition, quads, crops, reference, note)


class PhotoEditor:
    """A HairEditor with the face aligner and the paste-back: photo and condition in, photo out.

    `grow` / `feather`: px the hair region grows by and its soft edge (default: size / 32 each).
    `aligned`: photos are aligned faces already (square crops; no detection).
    """

    def __init__(
        self,
        editor: HairEditor,
        aligner: FaceAligner | None = None,
        grow: int | None = None,
        feather: int | None = None,
        aligned: bool = False,
    ):
        self.editor, self.aligner, self.aligned = editor, aligner or FaceAligner(), aligned
        self.size = int(editor.generator.size)
        self.grow = grow if grow is not None else max(1, self.size // 32)
        self.feather = feather if feather is not None else max(1, self.size // 32)

    def prepare(self, photo: Image.Image, condition: Condition, name: str = "photo", all_faces: bool = False):
        return prepare(self.aligner, self.size, photo, condition, name, all_faces, self.aligned)

    def largest_face(self, photo: Image.Image, name: str = "photo") -> Image.Image:
        """The aligned crop of the photo's largest face (the photo itself when `aligned`)."""
        if self.aligned:
            return whole_picture(photo, self.size, name)[1]
        return aligned_faces(self.aligner, self.size, photo, name)[1][0]

    def labels(self, crop: Image.Image) -> np.ndarray:
        """The parser's labels (L, L) of an aligned crop (L: half its size, HairCLIPv2's `seg(x)[1]`),
        where painted masks are drawn."""
        return self.editor.segmenter.labels(pil_to_tensor(crop)[None])[0, 0].cpu().numpy()

    def edit(
        self,
        photo: Image.Image,
        condition: Condition,
        all_faces: bool = False,
        name: str = "photo",
        progress: Progress | None = None,
    ) -> PhotoEdit:
        if progress is not None:
            progress("aligning")
        return self.edit_prepared(self.prepare(photo, condition, name, all_faces), progress)

    def edit_prepared(self, prepared: Prepared, progress: Progress | None = None) -> PhotoEdit:
        progress = progress or (lambda stage: None)
        photo = prepared.photo
        pasted, alpha = np.asarray(photo).copy(), np.zeros(photo.size[::-1], np.float32)
        faces = []
        for quad, crop in zip(prepared.quads, prepared.crops):
            batch = prepared.condition.batch(pil_to_tensor(crop)[None], prepared.reference)
            with torch.enable_grad():
                out = self.editor.edit(batch, progress=progress)
            progress("pasting back")
            hair = torch.maximum(out.source_hair, out.result_hair).cpu()
            region = feathered_region(hair, self.grow, self.feather)
            pasted, weight = paste_back(pasted, out.result[0], region, quad)
            alpha = np.maximum(alpha, weight)
            faces.append(FaceEdit(crop, picture(out.result), quad, *self.proxies(out)))
        region = Image.fromarray(np.uint8(np.rint(alpha * 255)))
        return PhotoEdit(Image.fromarray(pasted), region, faces)

    def proxies(self, out: EditOutput) -> tuple[Image.Image | None, Image.Image | None]:
        """The bald and hairstyle proxies of an edit, decoded (what the browser editor shows)."""
        with torch.no_grad():
            return tuple(
                None if codes is None else picture(self.editor.generator.synthesis(codes))
                for codes in (out.bald_codes, out.proxy_codes)
            )


def picture(images: torch.Tensor) -> Image.Image:
    """The first image of a batch (N, 3, S, S) in [-1, 1] as a PIL RGB image."""
    return Image.fromarray(to_uint8(images[0]))
