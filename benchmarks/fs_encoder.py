"""Reconstruction and seconds of the FS embedding: the FS encoder alone, the encoder + k refinement
steps, and HairCLIPv2's optimisation (1100 W+ steps + 250 FS steps), on held-out images of the world
the encoder was trained on.

    python train.py experiment=fs_encoder_demo hydra.run.dir=RUN
    python benchmarks/fs_encoder.py RUN [--images 8] [--seed 12345] [--refinement 50 150] [--out FILE]
        [--refinement-adam LR_S LR_F BETA1 BETA2 [--refinement-adam ...]]

RUN is the training run folder: its `fs_encoder.pt` and, for the generator's weights, its
`checkpoints/last.ckpt` (the demo's generator has random weights that only the run knows). Test images
are rendered by that generator from a seed the training never used.

    python benchmarks/fs_encoder.py --world [RUN] [--images 16] [--refinement 25 50] [--hairclipv2-row]
        [--override paths.world_dir=CHAIN/world ...]

`--world`: the world's pictures (the renderer's, not the generator's) with the world generator and
the world editor's FS space (weights/world/, `editing=hairclipv2_world`), the FS encoder of
weights/world/fs_encoder.pt (or RUN's), and as the reference the world editor's own optimisation
(`editing.embedding`: 400 W+ + 150 FS steps, no P-norm), and with `--hairclipv2-row` HairCLIPv2's
1100 + 250 beside it. PSNR on [0, 1], its difference to
the official embedding's with the standard error of that mean over the images (`diff_sem`, paired:
the same images); LPIPS with random weights drawn from a fixed seed (comparable between rows only).
`--override` adds Hydra overrides to the world's configuration (a retrained world before it is
installed: its `paths.world_dir`, the generator's `blur_kernel`).
`--refinement-adam` (repeatable) adds, for each k, the refinement with that Adam
(`editing.embedding.refinement_lr` and `refinement_betas`) beside the official FS step's.

The rows are in the FS space the encoder was trained for (`model.resume_with_skip`); an encoder trained
with the skip adds the official schedule in that space, and every ratio is against the official
embedding in HairCLIPv2's space (no skip), the reference of #15.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datamodules.synthetic import SyntheticInversionDataModule  # noqa: E402
from hairclipv2.editing.embedding import EmbeddingConfig, FSEmbedding  # noqa: E402
from hairclipv2.editing.prior import PNormPrior  # noqa: E402
from hairclipv2.losses import LPIPSLoss  # noqa: E402
from hairclipv2.models.encoders.fs import FSEncoder, load_fs_encoder  # noqa: E402
from hairclipv2.models.stylegan2 import Generator  # noqa: E402

from common import device_name, print_table, write_json  # noqa: E402


def run_generator(run: Path) -> Generator:
    """The run's generator: the demo architecture with the weights of its last checkpoint."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    g: Generator = instantiate(OmegaConf.load(run / ".hydra" / "config.yaml").generator)
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    g.load_state_dict({k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")})
    return g.eval().requires_grad_(False)


def world_setting(
    run: Path | None, images: int, seed: int, overrides: list[str]
) -> tuple[Generator, FSEncoder, torch.Tensor, dict]:
    """The world generator, its FS encoder, `images` world pictures from `seed`, and the world
    editor's embedding settings; `overrides` are Hydra overrides of the world's configuration."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from hairclipv2.config import register_resolvers
    from hairclipv2.weights import load_generator
    from hairclipv2.world import World

    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["experiment=hairclipv2_world", *overrides])
    g: Generator = instantiate(cfg.generator)
    load_generator(g, cfg.editing.stylegan_weights)
    g = g.eval().requires_grad_(False)
    fs = load_fs_encoder(run / "fs_encoder.pt" if run else cfg.paths.world_dir + "/fs_encoder.pt", g)
    world = World(g.size)
    embedding = OmegaConf.to_container(cfg.editing.embedding)
    return g, fs, world.render_z(world.z(images, seed)).image, embedding


def paired_sem(psnr: list[float], reference: list[float]) -> float:
    """Standard error of the mean per-image PSNR difference to the reference (the same images): how far
    the "vs official" column can move with other held-out images."""
    diff = torch.tensor(psnr) - torch.tensor(reference)
    return (diff.std() / len(diff) ** 0.5).item() if len(diff) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?")
    parser.add_argument("--world", action="store_true", help="the world's pictures and networks (weights/world)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--hairclipv2-row", action="store_true", help="--world: also HairCLIPv2's 1100 + 250 steps")
    parser.add_argument("--seed", type=int, default=12345, help="of the held-out images (not the training stream)")
    parser.add_argument("--refinement", type=int, nargs="+", default=[50, 150])
    parser.add_argument("--out", default=None)
    parser.add_argument("--override", nargs="+", default=[], help="--world: Hydra overrides of its configuration")
    parser.add_argument(
        "--refinement-adam", type=float, nargs=4, action="append", default=[], metavar=("LR_S", "LR_F", "B1", "B2")
    )
    args = parser.parse_args()
    if args.run is None and not args.world:
        parser.error("give a training run folder, or --world")
    official = dict(w_steps=1100, fs_steps=250)
    if args.world:
        g, fs, targets, world_embedding = world_setting(args.run, args.images, args.seed, args.override)
        reference = dict(w_steps=world_embedding["w_steps"], fs_steps=world_embedding["fs_steps"], p_norm_lambda=0.0)
    else:
        g = run_generator(args.run)
        fs = load_fs_encoder(args.run / "fs_encoder.pt", g)
        data = SyntheticInversionDataModule(n_train=1, n_val=1, batch_size=1, image_size=g.size)
        data.use_generator(g, fs.latent_avg)
        targets = data.render(args.images, torch.Generator().manual_seed(args.seed)).images
        reference = official
    torch.manual_seed(0)  # the random loss networks: the same in every run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lpips = LPIPSLoss("vgg", random_backbone=True)
        prior = partial(PNormPrior.from_mapping, g, samples=20_000)  # computed if a row has a P-norm weight
        lpips_alex = LPIPSLoss("alex", random_backbone=True)
    skip = fs.resume_with_skip
    space = "with the skip of S" if skip else "HairCLIPv2's, no skip"
    settings = {"encoder alone": dict(method="encoder", refinement=0)}
    for k in args.refinement:
        settings[f"encoder + {k} FS steps"] = dict(method="encoder", refinement=k)
        for lr_s, lr_f, b1, b2 in args.refinement_adam:
            adam = dict(refinement_lr=(lr_s, lr_f), refinement_betas=(b1, b2))
            settings[f"encoder + {k} FS steps, Adam {lr_s:g}/{lr_f:g} ({b1:g}, {b2:g})"] = dict(
                method="encoder", refinement=k, **adam
            )
    if skip:  # the official schedule in the encoder's FS space, then in HairCLIPv2's (the reference)
        settings["optimisation 1100 + 250 steps, with the skip"] = dict(method="optimisation", skip=True, **official)
    if args.world:
        if args.hairclipv2_row:
            settings["optimisation 1100 + 250 steps (HairCLIPv2's, no P-norm)"] = dict(
                method="optimisation", skip=False, **official, p_norm_lambda=0.0
            )
        name = f"optimisation {reference['w_steps']} + {reference['fs_steps']} steps (the world editor's)"
    else:
        name = "optimisation 1100 + 250 steps (official)"
    settings[name] = dict(method="optimisation", skip=False, **reference)
    rows = []
    for name, values in settings.items():
        with_skip = values.pop("skip", skip)
        cfg = EmbeddingConfig(randomize_noise=False, **{**official, **values})
        encoder = fs if with_skip == skip else None
        embedding = FSEmbedding(g, lpips, prior, fs.latent_avg, fs.hairstyle_block, cfg, encoder, with_skip)
        torch.manual_seed(0)
        tic = time.perf_counter()
        code = embedding.invert_fs(targets)
        seconds = (time.perf_counter() - tic) / args.images
        with torch.no_grad():
            err = ((code.image.clamp(-1, 1) - targets) / 2).pow(2).mean(dim=(1, 2, 3))
            psnr = 10 * torch.log10(1 / err)
            dist = lpips_alex.distance(code.image.clamp(-1, 1), targets).mean().item()
        rows.append(
            dict(embedding=name, psnr_db=psnr.mean().item(), lpips=dist, s_per_image=seconds, per_image=psnr.tolist())
        )
    official = rows[-1]
    for row in rows:
        row["psnr_minus_official"] = row["psnr_db"] - official["psnr_db"]
        row["diff_sem"] = paired_sem(row["per_image"], official["per_image"])
        row["speedup"] = official["s_per_image"] / row["s_per_image"]
    source = f"the world ({' '.join(args.override) or 'weights/world'})" if args.world else str(args.run)
    info = f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, {g.size} px generator of {source}"
    print(f"device: {info}; {args.images} held-out images (seed {args.seed}); the encoder's FS space: {space}")
    print(f"reference (the last row; ratios and differences against it): {rows[-1]['embedding']}")
    columns = ["embedding", "psnr_db", "psnr_minus_official", "diff_sem", "lpips", "s_per_image", "speedup"]
    print_table(rows, columns)
    write_json(
        "fs_encoder",
        {"device": info, "images": args.images, "seed": args.seed, "fs_space": space, "rows": rows},
        args.out,
    )


if __name__ == "__main__":
    main()
