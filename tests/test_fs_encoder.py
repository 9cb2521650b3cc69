"""The FS encoder (#15): HairCLIPv2's (S, F) embedding in one forward pass, its training objective,
its file, and the editor's `embedding.method=encoder` with refinement steps."""

from __future__ import annotations

import warnings

import pytest
import torch

from hairclipv2.models.encoders import Encoder4Editing, SketchEncoder
from hairclipv2.models.encoders.fs import FSEncoder, load_fs_encoder, save_fs_encoder
from hairclipv2.weights import MissingCheckpointError

from conftest import small_decoder as small_generator


def first_stage(g) -> SketchEncoder:
    """The small image encoder of a small world: HairCLIPv2's first-stage backbone on RGB."""
    return SketchEncoder(
        3, 18, style_dim=g.style_dim, n_latent=g.n_latent, depths=(16, 16, 32, 32), pool=2, input_size=32,
        last_stage=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    g = small_generator().eval().requires_grad_(False)
    latent_avg = g.mean_latent(1000)[0]
    fs = FSEncoder(first_stage(g), g, latent_avg, hairstyle_block=1).eval()
    with torch.no_grad():
        w = (latent_avg + 0.5 * torch.randn(4, 1, g.style_dim)).expand(-1, g.n_latent, -1).contiguous()
        images = g.synthesis(w).clamp(-1, 1)
    return g, fs, w, images


def test_an_untrained_head_is_e4e_and_the_file_round_trips(world, tmp_path):
    g, small, _, images = world
    e4e = FSEncoder(Encoder4Editing(50, "ir_se", g.size, input_size=32), g, small.latent_avg, hairstyle_block=1)
    for fs in (e4e.eval(), small):  # e4e's IR-SE50, and the first-stage backbone of a small world
        codes, feature, base = fs(images)
        assert codes.shape == (4, g.n_latent, g.style_dim) and feature.shape == (4, *fs.feature_shape)
        assert torch.equal(feature, base)  # the head's last layer starts at zero
        with torch.no_grad():
            fs.head.out.bias.fill_(0.5)  # as if trained
        loaded = load_fs_encoder(save_fs_encoder(fs, tmp_path / "fs_encoder.pt"), g)
        assert type(loaded.encoder) is type(fs.encoder)
        for a, b in zip(fs(images), loaded(images)):
            assert torch.equal(a, b)
    fs = small
    with pytest.raises(ValueError, match="for a 64 px generator, not 32 px"):
        load_fs_encoder(tmp_path / "fs_encoder.pt", small_generator(32))
    with pytest.raises(MissingCheckpointError, match="editing.fs_encoder_weights"):
        load_fs_encoder(tmp_path / "none.pt", g)
    with torch.no_grad():
        fs.head.out.bias.zero_()


def test_the_objective_falls_and_uses_the_true_codes_of_the_synthetic_world(world):
    from hairclipv2.training.fs_module import FSEncoderModule

    g, _, w, images = world
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = FSEncoderModule(
            g,
            first_stage(g),
            hairstyle_block=1,
            random_loss_networks=True,
            loss={"w_lambda": 1.0, "f_lambda": 1.0},
        )
    batch = {"image": images, "w": w}
    terms, _ = module.losses(batch)
    assert set(terms) == {"l2", "lpips", "feature", "w", "f"}
    assert "w" not in module.losses({"image": images})[0]  # real photos: reconstruction terms only
    module.fs.eval()  # batch statistics fixed: plain descent on one batch
    opt = torch.optim.Adam(module.fs.parameters(), lr=3e-4)
    first = None
    for _ in range(10):
        loss = sum(module.losses(batch)[0].values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
    assert all(p.grad is None for p in g.parameters())  # the generator stays frozen


@pytest.mark.slow  # 7 to 21 s on 2 cores
def test_the_editor_embeds_with_the_encoder_and_refinement_lowers_the_loss(world, tmp_path):
    from hairclipv2.pipeline import build_hair_editor

    g, fs, _, images = world
    path = save_fs_encoder(fs, tmp_path / "fs_encoder.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = build_hair_editor(
            g,
            random_weights=True,
            use_landmarks=False,
            hairstyle_block=1,
            colour_block=3,
            fs_encoder_weights=str(path),
            embedding={"method": "encoder", "randomize_noise": False, "w_steps": 10**6},
        )
    losses = {}
    for steps in (0, 10):
        editor.embedding.cfg.refinement = steps
        code = editor.embed(images)
        if steps == 0:
            expected = fs(images)
            assert torch.equal(code.codes, expected[0]) and torch.equal(code.feature, expected[1])
        low = editor.embedding.low(images)
        losses[steps] = editor.embedding.per_sample_loss(code.image, images, code.codes, low).mean().item()
    assert losses[10] < losses[0]
    from hairclipv2.editing.editor import EditBatch

    references = images.flip(0)  # their W+ too come from the encoder: w_steps=10**6 would take hours
    batch = editor.with_reference_codes(EditBatch(images, "reference", references=references))
    assert torch.equal(batch.reference_codes, fs(references)[0])
    with pytest.raises(ValueError, match="needs the FS encoder"):
        build_hair_editor(g, random_weights=True, use_landmarks=False, hairstyle_block=1, colour_block=3,
                          embedding={"method": "encoder"})  # fmt: skip


@pytest.mark.slow  # 8 s on 2 cores
def test_the_refinement_has_its_own_adam_and_the_official_fs_step_keeps_lr(world, tmp_path):
    from hairclipv2.editing.embedding import EmbeddingConfig
    from hairclipv2.editing.optim import run_adam
    from hairclipv2.pipeline import build_hair_editor

    g, fs, _, images = world
    path = save_fs_encoder(fs, tmp_path / "fs_encoder.pt")
    embedding = {"method": "encoder", "randomize_noise": False, "refinement": 1, "pre_step_codes": False,
                 "refinement_lr": [0.001, 0.05], "refinement_betas": [0.8, 0.99]}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = build_hair_editor(g, random_weights=True, use_landmarks=False, hairstyle_block=1, colour_block=3,
                                   fs_encoder_weights=str(path), embedding=embedding)  # fmt: skip
    emb = editor.embedding
    assert emb.cfg.fs_adam(refining=True) == ((0.001, 0.05), (0.8, 0.99))
    assert emb.cfg.fs_adam(refining=False) == ((0.01, 0.01), (0.9, 0.999))
    with torch.no_grad():
        codes, feature, _ = fs(images)
    # Adam's first step moves every element with a gradient by its learning rate
    refined = editor.embed(images)
    assert (refined.feature - feature).abs().amax().item() == pytest.approx(0.05, rel=1e-3)
    assert (refined.codes[:, 3:] - codes[:, 3:]).abs().amax().item() == pytest.approx(0.001, rel=1e-3)
    assert torch.equal(refined.codes[:, :3], codes[:, :3])  # the rows of blocks 0 and 1, which F replaces
    official = emb.fs_step(images, codes, feature, steps=1)
    assert (official.feature - feature).abs().amax().item() == pytest.approx(0.01, rel=1e-3)
    with pytest.raises(ValueError, match="refinement_lr must be two rates > 0"):
        EmbeddingConfig(refinement_lr=(0.0, 0.1))
    with pytest.raises(ValueError, match="refinement_lr must be two rates > 0"):
        EmbeddingConfig(refinement_lr=(0.1,))
    with pytest.raises(ValueError, match=r"refinement_betas must be two values in \[0, 1\)"):
        EmbeddingConfig(refinement_betas=(1.0, 0.9))
    with pytest.raises(ValueError, match=r"refinement_betas must be two values in \[0, 1\)"):
        EmbeddingConfig(refinement_betas=(0.8, 0.9, 0.99))
    with pytest.raises(ValueError, match="3 learning rates for 2 parameters"):
        run_adam([codes.clone(), feature.clone()], [0.1, 0.1, 0.1], 1, lambda: codes.sum())


def test_the_fs_space_with_the_skip_gives_back_the_image_and_the_encoder_must_match_the_editor(world, tmp_path):
    from hairclipv2.editing.embedding import FSEmbedding
    from hairclipv2.pipeline import build_hair_editor

    g, fs, w, images = world
    with torch.no_grad():
        feature = g.features(w, 1)[0]
        with_skip = g.resume_from_feature(w, 1, feature, with_skip=True)
        assert torch.allclose(with_skip, g.synthesis(w), atol=1e-5)
        without = g.resume_from_feature(w, 1, feature)
        assert torch.equal(without, g.resume(w, 2, feature))
        assert (without - with_skip).abs().mean() > 0.1  # HairCLIPv2's space leaves the skip out
    skip_fs = FSEncoder(fs.encoder, g, fs.latent_avg, hairstyle_block=1, resume_with_skip=True)
    path = save_fs_encoder(skip_fs, tmp_path / "fs_encoder_skip.pt")
    assert load_fs_encoder(path, g).resume_with_skip
    embedding = {"method": "encoder", "randomize_noise": False, "refinement": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = build_hair_editor(
            g, random_weights=True, use_landmarks=False, hairstyle_block=1, colour_block=3,
            fs_encoder_weights=str(path), embedding=embedding, resume_with_skip=True,
        )  # fmt: skip
    emb = editor.embedding
    with pytest.raises(ValueError, match="trained with resume_with_skip=True.*editing.resume_with_skip=False"):
        FSEmbedding(g, emb.lpips, emb.prior, fs.latent_avg, 1, emb.cfg, emb.encoder, resume_with_skip=False)
    code = editor.embed(images)
    with torch.no_grad():  # the embedding's image is the one every edit resumes from
        assert torch.allclose(code.image, editor.blender.resume(code.codes, code.feature), atol=1e-6)
    start = emb.fs_step(images, w, feature, steps=0)  # the true (S, F) reproduce the image
    assert torch.allclose(start.image, g.synthesis(w), atol=1e-5)


def test_the_benchmark_error_bar_is_of_the_paired_difference(monkeypatch):
    import importlib.util
    import math
    import sys
    from pathlib import Path

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on it
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "fs_encoder.py"
    spec = importlib.util.spec_from_file_location("fs_encoder_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    official = [28.0, 36.0, 31.0, 34.0]  # images differ by several dB
    ours = [p - 0.4 + e for p, e in zip(official, [0.1, -0.1, 0.2, -0.2])]
    expected = torch.tensor([0.1, -0.1, 0.2, -0.2]).std().item() / 2
    # 0.091 dB; unpaired, the two means' errors would add up to 2.4 dB
    assert bench.paired_sem(ours, official) == pytest.approx(expected, rel=1e-5)
    assert bench.paired_sem(official, official) == 0.0
    assert math.isnan(bench.paired_sem([30.0], [31.0]))  # one image: no error bar


@pytest.mark.parametrize(
    ("editing", "refinement"),
    [("hairclipv2_demo", ((0.005, 0.1), (0.85, 0.95))), ("hairclipv2", ((0.01, 0.01), (0.9, 0.999)))],
)
def test_the_demo_editor_refines_with_the_tuned_adam_and_the_official_one_with_the_fs_steps(editing, refinement):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from hairclipv2.config import build, register_resolvers
    from hairclipv2.editing.embedding import EmbeddingConfig

    register_resolvers()
    conf = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"editing={editing}"])
    embedding = build(EmbeddingConfig, cfg.editing.embedding, "editing.embedding")
    assert embedding.fs_adam(refining=True) == refinement
    assert embedding.fs_adam(refining=False) == ((0.01, 0.01), (0.9, 0.999))  # the official FS step either way


def test_the_world_fs_encoder_embeds_world_faces_in_one_pass():
    """weights/world/fs_encoder.pt on eight world faces drawn by the renderer (it trained on the world
    generator's pictures, never on these). Measured: 23.2-29.8 dB (mean 26.9) in one forward pass; the
    mean face scores 11.4-17.4 dB."""
    from hairclipv2.pipeline import world_generator
    from hairclipv2.weights import load_generator
    from hairclipv2.world import World

    from conftest import WORLD_WEIGHTS

    g = world_generator()
    latent_avg = load_generator(g, WORLD_WEIGHTS / "generator.pt")
    g.eval().requires_grad_(False)
    fs = load_fs_encoder(WORLD_WEIGHTS / "fs_encoder.pt", g)
    world = World(g.size)
    images = world.render_z(world.z(8, 777)).image
    with torch.no_grad():
        codes, feature, _ = fs(images)
        embedded = fs.image(codes, feature)
        mean_face = g.synthesis(latent_avg.reshape(1, 1, -1).expand(8, g.n_latent, -1))

    def psnr(x: torch.Tensor) -> torch.Tensor:
        return -10 * torch.log10(((x.clamp(-1, 1) - images) / 2).pow(2).mean(dim=(1, 2, 3)))

    assert psnr(embedded).mean() > 25 and (psnr(embedded) > 22).all()
    assert (psnr(embedded) > psnr(mean_face) + 8).all()


def test_one_setting_puts_the_world_editor_on_its_fs_encoder():
    """`editing.embedding.method=encoder`: the world editor's config names the shipped encoder and its
    refinement; with 0 refinement steps the embedding is the encoder's own (S, F)."""
    from hairclipv2.pipeline import editor_config, from_config
    from hairclipv2.world import World

    overrides = ["experiment=hairclipv2_world", "editing.embedding.method=encoder", "editing.embedding.refinement=0"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = from_config(editor_config(overrides=overrides), "")
    world = World(editor.generator.size)
    images = world.render_z(world.z(2, 777)).image
    code = editor.embed(images)
    with torch.no_grad():
        codes, feature, _ = editor.embedding.encoder(images)
    assert torch.equal(code.codes, codes) and torch.equal(code.feature, feature)
    psnr = -10 * torch.log10(((code.image.clamp(-1, 1) - images) / 2).pow(2).mean(dim=(1, 2, 3)))
    assert (psnr > 22).all()
