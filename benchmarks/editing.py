"""Seconds per edit of each HairCLIPv2 stage at the official step counts: this project's path against a
baseline loop that does HairCLIPv2's per-step work in HairCLIPv2's order, in the same run.

    python benchmarks/editing.py [--sources 4] [--steps 3] [--size 64] [--device cpu|cuda] [--out FILE]

Both paths share the networks. The baseline edits one sample at a time and caches nothing, as
HairCLIPv2's scripts do: CLIP encodes the text at every step (`criteria/clip_loss.py` calls
`model(image, text)`), the background loss parses the fixed image and the style loss runs VGG on the
fixed reference at every step, and every edit embeds its source again. The project's path batches the
sources, embeds each text, parses each fixed image and takes the reference's Gram matrices once, and
keeps a source's embedding for its next edit (`editing.source_cache`).

Optimised stages run `--steps` steps; seconds per step x HairCLIPv2's step count (`utils/options.py`)
gives the seconds per edit at the official schedule. The last rows time one source edited with five
hairstyles and three colours, with the source cache against the same edits without it. Small
random-weight models on a CPU; `--size 1024` on a GPU times the official resolution (skipped
without one).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hairclipv2.editing.cache import SourceCache  # noqa: E402
from hairclipv2.editing.editor import EditBatch  # noqa: E402
from hairclipv2.editing.proxies import ColourCondition  # noqa: E402
from hairclipv2.models.stylegan2 import Generator  # noqa: E402
from hairclipv2.pipeline import build_hair_editor  # noqa: E402

from common import device_name, print_table, write_json  # noqa: E402

OFFICIAL_STEPS = {  # HairCLIPv2 utils/options.py
    "embedding W+": 1100,
    "embedding FS": 250,
    "text proxy": 200,
    "reference proxy": 200,
    "colour proxy": 200,  # 100 edit + 100 final steps
}
SMALL = {64: dict(hairstyle_block=1, colour_block=3), 1024: dict(hairstyle_block=3, colour_block=6)}


def build(size: int, steps: int, device: torch.device, **settings):
    """The benchmark's editor: random weights, `steps` steps per optimised stage; `settings` are more
    `build_hair_editor` arguments (a dict merges into the one given here, e.g. text=dict(method=...))."""
    torch.manual_seed(0)
    channels = {4: 64, 8: 64, 16: 32, 32: 32, 64: 16} if size == 64 else None
    g = Generator(size, 512, 8 if size == 1024 else 2, channels=channels)
    rows = dict(text=dict(steps=steps, rows=4, augment=False), reference=dict(steps=steps, rows=3))
    colour = dict(edit_steps=steps, final_steps=steps, edit_rows=(5, 8), final_rows=(6, 10))
    if size == 1024:
        rows, colour = (
            dict(text=dict(steps=steps), reference=dict(steps=steps)),
            dict(edit_steps=steps, final_steps=steps),
        )
    given = dict(embedding=dict(w_steps=steps, fs_steps=steps, randomize_noise=False), colour=colour, **rows)
    for key, value in settings.items():
        given[key] = {**given[key], **value} if isinstance(value, dict) and key in given else value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = build_hair_editor(
            g, random_weights=True, randomize_proxy_noise=False, use_landmarks=False, **given, **SMALL[size]
        )
    return editor.to(device)


@contextlib.contextmanager
def as_hairclipv2(editor):
    """HairCLIPv2's per-step work: text encoded at every CLIP call, the fixed image of the background
    loss parsed and the reference's Gram matrices computed at every step, no source cache."""
    clip, background, cache = editor.clip, editor.colour_proxy.background, editor.cache
    style = editor.ref_proxy.style_loss
    encode_text, forward, style_forward = clip.encode_text, background.forward, style.forward

    def encode_every_time(texts):
        clip._text_cache.clear()
        return encode_text(texts)

    clip.encode_text = encode_every_time
    background.forward = lambda x, x_hat, x_hair=None: forward(x, x_hat)
    style.forward = lambda target, image, target_mask, image_mask, grams=None: style_forward(
        target, image, target_mask, image_mask
    )
    editor.cache = None
    try:
        yield
    finally:
        clip.encode_text, background.forward, editor.cache = encode_text, forward, cache
        style.forward = style_forward


def timed(fn, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    tic = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - tic


def stage_calls(editor, sources: torch.Tensor, steps: int) -> dict:
    """Each stage as a function of the sample indices it edits."""
    n = sources.shape[0]
    texts = ["short hair", "afro", "long wavy hair", "buzz cut"] * n
    colours = [ColourCondition(rgb=(200, 40, 40))] * n
    refs = sources.flip(0)
    with torch.enable_grad():  # the inputs of the later stages
        fs = editor.embed(sources)
        ref_codes = editor.embedding.invert_w(refs, steps=1).detach()
    bald, labels = editor.bald(fs.codes).detach(), editor.labels(sources)
    e, b = editor.embedding, editor.blender
    return {
        "embedding W+": lambda i: e.invert_w(sources[i], steps=steps),
        "embedding FS": lambda i: e.invert_fs(sources[i], w_steps=0, fs_steps=steps),
        "bald proxy": lambda i: editor.bald(fs.codes[i]),
        "text proxy": lambda i: editor.text_proxy.optimise(sources[i], texts[: len(i)], editor.latent_avg),
        "reference proxy": lambda i: editor.ref_proxy.optimise(sources[i], refs[i], ref_codes[i]),
        "colour proxy": lambda i: editor.colour_proxy.edit(colours[: len(i)], fs.image[i], fs.codes[i], fs.feature[i]),
        "blending": lambda i: b.hairstyle(fs.codes[i], fs.feature[i], labels[i], bald[i], ref_codes[i]),
        "final decode": lambda i: b.resume(fs.codes[i], fs.feature[i]),
    }


def parse_size_and_device(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments every editing benchmark takes: --size (64 or 1024 px), --device, --out."""
    parser.add_argument("--size", type=int, default=64, choices=sorted(SMALL))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None)
    return parser.parse_args()


def chosen_device(args: argparse.Namespace) -> torch.device | None:
    """The device to time on; None (said) when the 1024 px rows are asked of a CPU."""
    device = torch.device(args.device)
    if args.size == 1024 and device.type != "cuda":
        print("the 1024 px rows need a GPU (--device cuda): skipped")
        return None
    return device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parse_size_and_device(parser)
    device = chosen_device(args)
    if device is None:
        return
    editor = build(args.size, args.steps, device)
    n, s = args.sources, args.steps
    with torch.no_grad():
        w = editor.latent_avg + 0.6 * torch.randn(n, editor.generator.n_latent, 512, device=device)
        sources = editor.generator.synthesis(w).clamp(-1, 1)
    calls = stage_calls(editor, sources, s)
    for fn in calls.values():  # warm-up: the first call of each path pays for allocations and caches
        with torch.enable_grad():
            fn([0])
    rows = []
    for name, fn in calls.items():
        with torch.enable_grad():
            project = timed(lambda: fn(list(range(n))), device) / n
            with as_hairclipv2(editor):
                baseline = sum(timed(lambda i=i: fn([i]), device) for i in range(n)) / n
        steps = OFFICIAL_STEPS.get(name)
        scale = steps / s if steps else 1.0
        rows.append(
            dict(
                stage=name,
                official_steps=steps,
                project_s_per_step=project / s if steps else None,
                baseline_s_per_step=baseline / s if steps else None,
                project_s_per_edit=project * scale,
                baseline_s_per_edit=baseline * scale,
                speedup=baseline / project,
            )
        )
    rows += source_cache_rows(editor, sources[:1], device)
    info = f"{device_name(device)}, torch {torch.__version__}, {args.size} px generator, random weights"
    print(f"device: {info}; {n} sources, {s} measured steps per optimised stage")
    columns = ["stage", "official_steps", "project_s_per_step", "baseline_s_per_step"]
    print_table(rows, [*columns, "project_s_per_edit", "baseline_s_per_edit", "speedup"])
    write_json(f"editing_{args.size}", {"device": info, "sources": n, "steps": s, "rows": rows}, args.out)


HAIRSTYLES = ["bob cut", "afro", "long wavy hair", "buzz cut", "braids"]
COLOURS = [(200, 40, 40), (30, 30, 30), (230, 200, 120)]


def source_cache_rows(editor, source: torch.Tensor, device: torch.device) -> list[dict]:
    """One photo edited several times (five hairstyles, then three colours) with the source cache
    against the same edits each embedding the photo; the last row must stay under 1 (#15: five edits
    of one source cost less than twice one embedding plus the five proxies)."""
    hairstyles = [EditBatch(source, "text", texts=[t]) for t in HAIRSTYLES]
    colours = [EditBatch(source, "colour", colours=[ColourCondition(rgb=c)]) for c in COLOURS]
    n = len(hairstyles) + len(colours)
    with torch.enable_grad():
        editor.cache = SourceCache(4)
        cached_hairstyles = timed(lambda: [editor.edit(b) for b in hairstyles], device)
        cached = cached_hairstyles + timed(lambda: [editor.edit(b) for b in colours], device)
        editor.cache = None
        uncached_hairstyles = timed(lambda: [editor.edit(b) for b in hairstyles], device)
        uncached = uncached_hairstyles + timed(lambda: [editor.edit(b) for b in colours], device)
        embedding = timed(lambda: editor.embed(source), device)
    proxies = uncached_hairstyles - len(hairstyles) * embedding  # the five proxies, blending, decoding
    bound = 2 * (embedding + proxies)
    return [
        dict(stage=f"{len(hairstyles)} hairstyles + {len(colours)} colours of one source", project_s_per_edit=cached / n,
             baseline_s_per_edit=uncached / n, speedup=uncached / cached),
        dict(stage=f"{len(hairstyles)} hairstyles of one source / 2 x (embedding + {len(hairstyles)} proxies)",
             speedup=cached_hairstyles / bound),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
