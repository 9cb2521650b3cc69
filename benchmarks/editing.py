"""Seconds per edit of each HairCLIPv2 stage on the small demo models, batched and one by one.

    python benchmarks/editing.py [--batch 4] [--steps 5] [--out results.json]

Stages: FS embedding, text proxy, reference proxy (+ its W+ inversion), colour proxy. Each runs
`--steps` optimisation steps; "batched" edits --batch pairs at once, "alone" the same pairs one by
one. Seconds per edit = stage time / pairs; the ratio alone/batched is the batching gain.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hairclipv2.editing.editor import EditBatch  # noqa: E402
from hairclipv2.editing.factory import build_hair_editor  # noqa: E402
from hairclipv2.editing.proxies import ColourCondition  # noqa: E402
from hairclipv2.models.stylegan2 import Generator  # noqa: E402

from common import device_name, print_table, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    s = args.steps
    torch.manual_seed(0)
    g = Generator(64, 512, 2, channels={4: 64, 8: 64, 16: 32, 32: 32, 64: 16})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = build_hair_editor(
            g,
            random_weights=True,
            hairstyle_block=1,
            colour_block=3,
            randomize_proxy_noise=False,
            use_landmarks=False,
            embedding=dict(w_steps=s, fs_steps=s, randomize_noise=False),
            text=dict(steps=s, rows=4, augment=False),
            reference=dict(steps=s, rows=3),
            colour=dict(edit_steps=s, final_steps=s, edit_rows=(5, 8), final_rows=(6, 10)),
        )
    n = args.batch
    with torch.no_grad():
        sources = g.synthesis(editor.latent_avg + 0.6 * torch.randn(n, g.n_latent, g.style_dim)).clamp(-1, 1)
    texts = ["short hair", "afro", "long wavy hair", "buzz cut"] * (n // 4 + 1)
    colours = [ColourCondition(rgb=(200, 40, 40))] * n
    fs_all = editor.embed(sources)
    stages = {
        "embedding": lambda idx: editor.embed(sources[idx]),
        "text_proxy": lambda idx: editor.text_proxy.optimise(sources[idx], texts[: len(idx)], editor.latent_avg),
        "reference_proxy": lambda idx: editor.ref_proxy.optimise(
            sources[idx], sources.flip(0)[idx], editor.embedding.invert_w(sources.flip(0)[idx])
        ),
        "colour_proxy": lambda idx: editor.colour_proxy.edit(
            colours[: len(idx)], fs_all.image[idx], fs_all.codes[idx], fs_all.feature[idx]
        ),
    }
    rows = []
    for name, run in stages.items():
        tic = time.perf_counter()
        run(list(range(n)))
        batched = (time.perf_counter() - tic) / n
        tic = time.perf_counter()
        for i in range(n):
            run([i])
        alone = (time.perf_counter() - tic) / n
        rows.append(
            dict(
                stage=name,
                steps=s,
                pairs=n,
                s_per_edit_batched=batched,
                s_per_edit_alone=alone,
                alone_over_batched=alone / batched,
            )
        )
    end_to_end = EditBatch(sources, "text", texts=texts[:n])
    tic = time.perf_counter()
    editor.edit(end_to_end)
    rows.append(
        dict(stage="text edit end to end", steps=s, pairs=n, s_per_edit_batched=(time.perf_counter() - tic) / n)
    )
    print(f"device: {device_name(torch.device('cpu'))}, torch {torch.__version__}, 64 px generator, random weights")
    print_table(rows, ["stage", "steps", "pairs", "s_per_edit_batched", "s_per_edit_alone", "alone_over_batched"])
    write_json("editing", {"device": device_name(torch.device("cpu")), "rows": rows}, args.out)


if __name__ == "__main__":
    main()
