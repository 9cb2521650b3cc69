"""A local browser editor for one's own photos, every mode, with the sketch and the mask drawn in the page.

    python -m hairclipv2.app [--weights DIR] [--set KEY=VALUE ...] [--port 7860] [--host 127.0.0.1]

Upload a photo: it is aligned at once and shown on two canvases, one to draw hair strokes on (sketch),
one with the face parser's labels to paint over in HairCLIPv2's painting classes (mask: background,
face, ear, hair; `utils/mask_ui.py` colours). Pick a mode, give its condition, run: the bald proxy, the
hairstyle proxy, the edit and the photo with the edit pasted back appear side by side, with the files
to download. Progress shows the stage names; edits run one at a time (queued), and a second click while
one runs starts nothing. Bad input (no face, a corrupt or tiny upload, an empty text, an unreadable
reference, an empty sketch) is a message in the page; the app keeps serving.

Without `--weights` the editor is the embedded demo (random weights: the pictures mean nothing);
`--weights DIR` reads HairCLIPv2's `pretrained_models/` (see `pipeline.from_pretrained`); `--fast`
shortens every optimisation to about a tenth, `--seed` seeds the edits and the demo's networks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .io import open_rgb, save_image_atomic
from .masks import PAINT_COLOURS
from .photo import Condition, EditError, PhotoEditor
from .photo_command import refuse
from .pipeline import command_config, from_config
from .quiet import silence_known_noise

MODES = ("text", "reference", "sketch", "mask", "colour (text)", "colour (RGB)")
OTHER_CLASS_COLOUR = (128, 128, 128)  # classes the painting cannot produce (cloth, ...)
CANVAS = 512  # px of the drawing canvases (the aligned face is shown at this size)
STAGES = ("aligning", "embedding", "bald proxy", "proxy", "sketch proxy", "blending", "colour proxy", "pasting back")
DEMO_WARNING = "Random weights (no --weights): the pictures are meaningless; they show that the pipeline runs."
DOWNLOAD_SUFFIX = {"aligned": "_aligned", "bald": "_bald", "proxy": "_proxy", "edit": "_edit", "photo": "_edited"}
PAINT_NAMES = {0: "background", 1: "face", 6: "ear", 10: "hair"}
# the fields each mode reads (the others are hidden while it is chosen)
MODE_FIELD_ORDER = ("text", "reference", "colour_text", "rgb")
MODE_FIELDS = {
    "text": ("text",),
    "reference": ("reference",),
    "sketch": (),
    "mask": (),
    "colour (text)": ("colour_text",),
    "colour (RGB)": ("rgb",),
}


def shown_at_canvas_size(image: Image.Image | None) -> Image.Image | None:
    """A small result shown at the canvas size with nearest upscaling (its pixels as computed)."""
    if image is None or image.width >= CANVAS:
        return image
    return image.resize((CANVAS, CANVAS * image.height // image.width), Image.NEAREST)


def readable_preview(path: str | None) -> Image.Image | None:
    """The upload as it will be read (upright), or nothing where it cannot be read (the edit says why)."""
    try:
        return open_rgb(path) if path else None
    except (EditError, ValueError, OSError):
        return None


def legend() -> str:
    """The mask canvas's colours, as Markdown swatches."""
    return " ".join(
        f'<span style="display:inline-block;width:12px;height:12px;background:#{r:02x}{g:02x}{b:02x};'
        f'border:1px solid #888"></span> {PAINT_NAMES[label]}'
        for label, (r, g, b) in PAINT_COLOURS.items()
    )


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    """'#rrggbb' (or 'rgba(r, g, b, a)' as some browsers send) -> (r, g, b)."""
    value = (value or "").strip()
    if value.startswith("rgb"):
        parts = value[value.index("(") + 1 : value.index(")")].split(",")
        return tuple(int(round(float(p))) for p in parts[:3])
    if len(value) != 7 or value[0] != "#":
        raise EditError(f"a colour must be '#rrggbb', got {value!r}")
    return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))


def label_picture(labels: np.ndarray) -> Image.Image:
    """A label map (L, L) drawn in the painting colours, at the canvas size (nearest)."""
    rgb = np.empty((*labels.shape, 3), np.uint8)
    rgb[:] = OTHER_CLASS_COLOUR
    for label, colour in PAINT_COLOURS.items():
        rgb[labels == label] = colour
    return Image.fromarray(rgb).resize((CANVAS, CANVAS), Image.NEAREST)


def drawn_layer(value: Any) -> np.ndarray | None:
    """The union of the drawn layers of an ImageEditor value, (H, W, 4) uint8, or None without one."""
    if not isinstance(value, dict) or not value.get("layers"):
        return None
    layers = [np.asarray(_as_rgba(layer)) for layer in value["layers"] if layer is not None]
    if not layers:
        return None
    out = layers[0].copy()
    for layer in layers[1:]:
        drawn = layer[..., 3] > 0
        out[drawn] = layer[drawn]
    return out


def _as_rgba(layer: Any) -> Image.Image:
    if isinstance(layer, (str, Path)):
        layer = Image.open(layer)
    elif isinstance(layer, np.ndarray):
        layer = Image.fromarray(layer)
    return layer.convert("RGBA")


def sketch_from_canvas(value: Any, size: int) -> np.ndarray | None:
    """Strokes (size, size) uint8 (255 on a stroke) from the sketch canvas; None if nothing is drawn."""
    layer = drawn_layer(value)
    if layer is None or not (layer[..., 3] > 0).any():
        return None
    strokes = Image.fromarray(np.where(layer[..., 3] > 0, 255, 0).astype(np.uint8))
    return np.asarray(strokes.resize((size, size), Image.NEAREST))


def mask_from_canvas(value: Any, labels: np.ndarray) -> np.ndarray | None:
    """The painted label map: the source's labels (L, L) with each painted pixel set to the painting
    class nearest its colour, as HairCLIPv2's `painting_mask` starts from the parser's labels."""
    layer = drawn_layer(value)
    if layer is None or not (layer[..., 3] > 0).any():
        return None
    size = labels.shape[-1]
    small = np.asarray(Image.fromarray(layer).resize((size, size), Image.NEAREST)).astype(np.int64)
    palette = np.array(list(PAINT_COLOURS.values()))
    nearest = ((small[..., None, :3] - palette) ** 2).sum(-1).argmin(-1)
    painted = np.array(list(PAINT_COLOURS))[nearest]
    return np.where(small[..., 3] > 0, painted, labels).astype(np.int64)


@dataclass
class Form:
    """The page's fields, in the order of the `/edit` API: uploads are file paths, canvases are
    ImageEditor values, `rgb` is '#rrggbb'."""

    photo: str | None
    mode: str = "text"
    text: str = ""
    reference: str | None = None
    sketch: Any = None
    mask: Any = None
    colour_text: str = ""
    rgb: str = "#b43228"


class EditorApp:
    """The app's state and callbacks, independent of the page layout (tests call them directly).

    `make_editor` builds the PhotoEditor on the first request (the networks load once); one lock keeps
    edits one at a time even if the queue were bypassed.
    """

    def __init__(self, make_editor: Callable[[], PhotoEditor], out_dir: str | Path | None = None):
        self.make_editor, self._editor = make_editor, None
        self.lock = threading.Lock()
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="hairclipv2_app_"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.edits_started = 0

    @property
    def editor(self) -> PhotoEditor:
        if self._editor is None:
            self._editor = self.make_editor()
        return self._editor

    def open_photo(self, path: str | None) -> tuple[Image.Image, np.ndarray]:
        """The photo's aligned crop and its parser labels (L, L)."""
        if not path:
            raise EditError("upload a photo first")
        crop = self.editor.largest_face(open_rgb(path), name=Path(path).name)
        return crop, self.editor.labels(crop)

    def canvases(self, path: str | None) -> tuple[Image.Image, Image.Image]:
        """On upload: the aligned face for the sketch canvas and its labels for the mask canvas."""
        crop, labels = self.open_photo(path)
        return crop.resize((CANVAS, CANVAS), Image.LANCZOS), label_picture(labels)

    def condition(self, form: Form) -> Condition:
        """The page's fields as an edit's condition (mode, then what the mode reads)."""
        mode = form.mode
        if mode not in MODES:
            raise EditError(f"mode must be one of {MODES}, got {mode!r}")
        strokes = sketch_from_canvas(form.sketch, self.editor.size)
        painted = None
        if form.mask is not None and drawn_layer(form.mask) is not None:
            painted = mask_from_canvas(form.mask, self.open_photo(form.photo)[1])
        if mode == "sketch" and strokes is None:
            raise EditError("draw hair strokes on the sketch canvas first")
        if mode == "mask" and painted is None:
            raise EditError("paint the hair region on the mask canvas first")
        extras = {"sketch": strokes if mode in ("text", "reference", "sketch") else None}
        extras["mask"] = painted if mode in ("text", "reference", "mask") else None
        if mode == "text":
            return Condition(text=form.text or "", **extras)
        if mode == "reference":
            if not form.reference:
                raise EditError("upload a reference photo for the reference mode")
            return Condition(reference=open_rgb(form.reference), **extras)
        if mode == "colour (text)":
            return Condition(colour_text=form.colour_text or "")
        if mode == "colour (RGB)":
            return Condition(rgb=hex_to_rgb(form.rgb))
        return Condition(**extras)

    def run(self, form: Form, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """One edit: {"bald", "proxy", "edit", "photo": PIL images or None, "files": [paths]}."""
        if not form.photo:
            raise EditError("upload a photo first")
        with self.lock:
            photo = open_rgb(form.photo)
            wanted = self.condition(form)
            self.edits_started += 1  # bad input stops above, before any edit starts
            with torch.enable_grad():
                result = self.editor.edit(photo, wanted, name=Path(form.photo).name, progress=progress)
            face = result.faces[0]
            run_dir = Path(tempfile.mkdtemp(dir=self.out_dir, prefix="edit_"))
            images = {
                "aligned": face.crop,
                "bald": face.bald,
                "proxy": face.proxy,
                "edit": face.edit,
                "photo": result.photo,
            }
            stem = Path(form.photo).stem  # downloads named after the photo, as the command names them
            files = [
                save_image_atomic(img, run_dir / f"{stem}{DOWNLOAD_SUFFIX[name]}.png")
                for name, img in images.items()
                if img
            ]
            return {**images, "files": [str(f) for f in files]}


def build_app(app: EditorApp, warning: str | None = None):
    """The Gradio page of an EditorApp."""
    import gradio as gr

    def user_error(exc: Exception, *uploads: str | None) -> gr.Error:
        """The message, with Gradio's temporary copies of uploads named by their file names."""
        message = str(exc)
        for path in filter(None, uploads):
            message = message.replace(str(path), Path(path).name)
        return gr.Error(message, print_exception=False)

    def on_upload(path):
        if not path:
            return None, None
        try:
            face, labels = app.canvases(path)
        except (EditError, ValueError, FileNotFoundError) as exc:
            raise user_error(exc, path) from None
        return {"background": face, "layers": [], "composite": face}, {
            "background": labels,
            "layers": [],
            "composite": labels,
        }

    def on_run(*fields, progress=gr.Progress()):
        def stage(name: str) -> None:
            key = "proxy" if name.endswith(" proxy") and name not in STAGES else name
            progress((STAGES.index(key) + 1) / (len(STAGES) + 1), desc=name)

        form = Form(*fields)
        try:
            out = app.run(form, progress=stage)
        except (EditError, ValueError, FileNotFoundError) as exc:
            raise user_error(exc, form.photo, form.reference) from None
        shown = [shown_at_canvas_size(out[k]) for k in ("aligned", "bald", "proxy", "edit", "photo")]
        return (*shown, out["files"])

    def on_mode(chosen: str):
        return [gr.update(visible=name in MODE_FIELDS.get(chosen, ())) for name in MODE_FIELD_ORDER]

    paint = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in PAINT_COLOURS.values()]
    with gr.Blocks(title="HairCLIPv2 editor", analytics_enabled=False) as page:
        gr.Markdown("## Hair editing: text, reference, sketch, mask or colour")
        if warning:
            gr.Markdown(f"**{warning}**", elem_id="warning")
        with gr.Row():
            with gr.Column():
                photo = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="photo")
                preview = gr.Image(label="Uploaded photo", interactive=False, elem_id="preview", height=200)
                mode = gr.Radio(list(MODES), value="text", label="Mode", elem_id="mode")
                text = gr.Textbox(label="Hairstyle text", placeholder="short bob haircut", elem_id="text")
                reference = gr.File(
                    label="Reference photo", file_types=["image"], type="filepath", elem_id="ref", visible=False
                )
                reference_preview = gr.Image(
                    label="Reference", interactive=False, elem_id="ref_preview", height=200, visible=False
                )
                colour_text = gr.Textbox(
                    label="Colour text", placeholder="red hair", elem_id="colour_text", visible=False
                )
                rgb = gr.ColorPicker(value="#b43228", label="Colour (RGB)", elem_id="rgb", visible=False)
                run = gr.Button("Edit", variant="primary", elem_id="run")
            with gr.Column():
                sketch = gr.ImageEditor(
                    label="Sketch: draw hair strokes",
                    type="numpy",
                    brush=gr.Brush(colors=["#808080"], color_mode="fixed", default_size=4),
                    eraser=gr.Eraser(),
                    sources=[],
                    elem_id="sketch",
                )
                mask = gr.ImageEditor(
                    label="Mask: paint background / face / ear / hair",
                    type="numpy",
                    brush=gr.Brush(colors=paint, default_color=paint[-1], color_mode="fixed", default_size=20),
                    sources=[],
                    elem_id="mask",
                )
                gr.Markdown(legend(), elem_id="legend")
        with gr.Row():
            shown = {"type": "pil", "format": "png", "interactive": False}  # png: the pixels as computed
            before = gr.Image(label="Before (the aligned face)", elem_id="before", **shown)
            edit = gr.Image(label="After (the edit)", elem_id="edit", **shown)
            pasted = gr.Image(label="Photo with the edit", elem_id="pasted", **shown)
        with gr.Row():
            bald = gr.Image(label="Bald proxy", elem_id="bald", **shown)
            proxy = gr.Image(label="Hairstyle proxy", elem_id="proxy", **shown)
        files = gr.File(label="Download", file_count="multiple", elem_id="files", interactive=False)
        photo.upload(on_upload, photo, [sketch, mask], api_name="canvases")
        photo.change(readable_preview, photo, preview, api_name=False)
        reference.change(readable_preview, reference, reference_preview, api_name=False)
        fields = {"text": text, "reference": reference, "colour_text": colour_text, "rgb": rgb}
        mode.change(on_mode, mode, [fields[name] for name in MODE_FIELD_ORDER], api_name=False)
        mode.change(lambda chosen: gr.update(visible=chosen == "reference"), mode, reference_preview, api_name=False)
        run.click(
            on_run,
            [photo, mode, text, reference, sketch, mask, colour_text, rgb],
            [before, bald, proxy, edit, pasted, files],
            api_name="edit",
            trigger_mode="once",  # a click while an edit runs starts nothing
            concurrency_limit=1,
        )
    return page.queue(default_concurrency_limit=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hairclipv2.app", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="HairCLIPv2's pretrained_models/ folder (official weights)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a Hydra override of the editor")
    p.add_argument(
        "--fast", action="store_true", help="about a tenth of the optimisation steps: a quick CPU try, coarser edits"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the edits (and the demo's random networks); default 0")
    p.add_argument(
        "--aligned", action="store_true", help="uploads are aligned faces already (square FFHQ crops, world faces)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    silence_known_noise()
    # The user's photos and edits (ours and Gradio's upload copies) live in one folder, removed at exit.
    with tempfile.TemporaryDirectory(prefix="hairclipv2_app_") as scratch:
        os.environ["GRADIO_TEMP_DIR"] = str(Path(scratch) / "uploads")
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
        return serve(args, Path(scratch))


def serve(args: argparse.Namespace, scratch: Path) -> int:
    overrides = ["editing.source_cache=8", *args.set]  # edits of one photo embed it once
    try:  # every setting and file checked before any network loads
        cfg, shortened = command_config(args.weights, overrides, args.fast, args.seed)
    except Exception as exc:
        return refuse(exc, args.weights)
    if args.fast:
        print("--fast: " + (", ".join(shortened) or "nothing to shorten"), file=sys.stderr)
    app = EditorApp(lambda: PhotoEditor(from_config(cfg), aligned=args.aligned), scratch / "edits")
    try:
        app.editor  # noqa: B018 -- networks load before the page opens, and a missing file stops here
    except Exception as exc:
        return refuse(exc, args.weights)
    page = build_app(app, None if args.weights else DEMO_WARNING)
    page.launch(server_name=args.host, server_port=args.port, share=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
