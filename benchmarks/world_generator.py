"""What a world generator file draws, and whether HairCLIPv2's blending can use it: on held-out faces
of the world, G(z) against the world's picture, and style mixing as the editor uses it.

    python benchmarks/world_generator.py [GENERATOR.pt ...] [--faces 256] [--block 2] [--out FILE]

Each file (default: weights/world/generator.pt) is loaded into the world's generator
(`conf/generator/stylegan2_world.yaml`) and measured on pairs of held-out faces (z1, z2):

- `psnr`, `hair_iou`: G(z1) against the world's picture of z1, and the world parser's hair in G(z1)
  against z1's exact hair (pooled over the faces: the pixels both hold over those either holds);
  `renderer_hair_iou`: the same parser on the world's own pictures (what a perfect G would score);
  `outline_share`: the share of G's hair disagreements that lie on the exact hair's outline (pixels
  with the other class among their 8 neighbours);
- `mixed_psnr`: G with rows 0..2 * block from z1 and the later rows from z2, against the world's
  picture of z1's shapes in z2's colours (`hairclipv2.world.mix_z`);
- `resume_psnr`, `resume_hair_iou`: HairCLIPv2's resume, the feature F of z1 after `block` finished by
  z2's codes without the RGB of the earlier blocks, against the same picture and its hair; this is how
  every hairstyle edit draws the proxy's hair with the source's codes. `resume_z2_hair_iou`: the same
  picture's hair against z2's own hair, which it should not follow;
- `w_std`: the per-dimension spread of w = mapping(z) (the scale the editor's learning rates act on).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hairclipv2.evaluation.ground_truth import hair_overlap  # noqa: E402
from hairclipv2.models.parsing import HairSegmenter  # noqa: E402
from hairclipv2.models.parsing.world_unet import load_world_parser  # noqa: E402
from hairclipv2.pipeline import world_generator  # noqa: E402
from hairclipv2.training.world_generator import WorldGeneratorModule  # noqa: E402
from hairclipv2.weights import load_generator  # noqa: E402
from hairclipv2.world import World, mix_z  # noqa: E402

from common import print_table, write_json  # noqa: E402

SEEDS = (50_001, 50_002)  # the faces z1 and z2: streams no training reads
COLUMNS = [
    "generator",
    "psnr",
    "hair_iou",
    "renderer_hair_iou",
    "outline_share",
    "mixed_psnr",
    "resume_psnr",
    "resume_hair_iou",
    "resume_z2_hair_iou",
    "w_std",
]


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] over the whole set."""
    return float(10 * torch.log10(4 / (image.clamp(-1, 1) - target).pow(2).mean()))


def pooled_iou(segmenter: HairSegmenter, images: torch.Tensor, hair: torch.Tensor) -> float:
    both, either = hair_overlap(segmenter.hair(images.clamp(-1, 1)), hair)
    return float(both / either)


def outline_share(segmenter: HairSegmenter, images: torch.Tensor, hair: torch.Tensor) -> float:
    """The share of the parsed hair's disagreements with the exact hair that lie on its outline."""
    truth = (hair > 0.5).float()
    outline = F.max_pool2d(truth, 3, 1, 1) != -F.max_pool2d(-truth, 3, 1, 1)
    wrong = (segmenter.hair(images.clamp(-1, 1)) > 0.5) != (truth > 0.5)
    return float((wrong & outline).sum() / wrong.sum().clamp_min(1))


@torch.no_grad()
def measure(path: Path, segmenter: HairSegmenter, faces: int, block: int) -> dict[str, float | str]:
    world, g = World(), world_generator()
    load_generator(g, path)
    g.eval()
    z1, z2 = world.z(faces, SEEDS[0]), world.z(faces, SEEDS[1])
    first, second, mixed = world.render_z(z1), world.render_z(z2), world.render_z(mix_z(z1, z2))
    w1, w2 = (g.mapping(z).unsqueeze(1).expand(-1, g.n_latent, -1) for z in (z1, z2))
    plain = g.synthesis(w1)
    # rows from 2 * block + 1 on are the ones the blocks after `block` read
    both = WorldGeneratorModule.draw(g, z1, z2, mixing_row=2 * block + 1)
    resumed = g.resume_from_feature(w2, block, g.features(w1, block)[0])
    return {
        "generator": str(path),
        "psnr": psnr(plain, first.image),
        "hair_iou": pooled_iou(segmenter, plain, first.hair),
        "renderer_hair_iou": pooled_iou(segmenter, first.image, first.hair),
        "outline_share": outline_share(segmenter, plain, first.hair),
        "mixed_psnr": psnr(both, mixed.image),
        "resume_psnr": psnr(resumed, mixed.image),
        "resume_hair_iou": pooled_iou(segmenter, resumed, mixed.hair),
        "resume_z2_hair_iou": pooled_iou(segmenter, resumed, second.hair),
        "w_std": float(w1[:, 0].std(0).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("generators", nargs="*", type=Path, default=[ROOT / "weights" / "world" / "generator.pt"])
    p.add_argument("--faces", type=int, default=256)
    p.add_argument("--block", type=int, default=2, help="the block F is taken after (the world editor's 2)")
    p.add_argument("--parser", type=Path, default=ROOT / "weights" / "world" / "parser.pt")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    missing = [str(f) for f in [*args.generators, args.parser] if not f.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segmenter = HairSegmenter(load_world_parser(args.parser)).eval()
        rows = [measure(path, segmenter, args.faces, args.block) for path in args.generators]
    print_table(rows, COLUMNS)
    write_json("world_generator", {"faces": args.faces, "block": args.block, "seeds": SEEDS, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
