"""The world (`hairclipv2/world`): a deterministic prior and renderer whose labels, bald pictures,
sketches and edit targets are exact, so that edits can be scored against a known answer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datamodules.world import WorldDataModule, WorldFaces
from hairclipv2.world import (
    HAIR_COLOURS,
    N_PARAMS,
    STROKE_VALUE,
    WORLD_16,
    World,
    attributes_from_z,
    caption,
    mix_z,
    render,
)

HAIR = WORLD_16.classes["hair"]
WORLD = World()


def faces(n: int = 12, seed: int = 3):
    z = WORLD.z(n, seed)
    z[:, 14] = 1.0  # hair_length: every face has hair (u = 0.84)
    return WORLD.attributes(z)


def test_the_same_z_draws_the_same_face_and_only_the_world_coordinates_matter():
    z = WORLD.z(4, 0)
    a, b = WORLD.render_z(z), WORLD.render_z(z.clone())
    assert torch.equal(a.image, b.image) and torch.equal(a.labels, b.labels)
    moved = z.clone()
    moved[:, N_PARAMS:] = torch.randn(4, z.shape[1] - N_PARAMS)
    assert torch.equal(WORLD.render_z(moved).image, a.image)
    assert a.image.shape == (4, 3, 64, 64) and -1 <= a.image.min() and a.image.max() <= 1
    assert set(a.labels.unique().tolist()) <= set(WORLD_16.classes.values())


def test_edges_are_anti_aliased_and_labels_are_the_majority_class():
    a = faces(4)
    shot, stairs = WORLD.render(a), render(a, 64, supersample=1)
    edge = (shot.hair > 0) & (shot.hair < 1)
    assert edge.float().mean() > 0.02  # the hair's edge pixels are partly covered
    assert ((stairs.hair == 0) | (stairs.hair == 1)).all()  # without supersampling: one-pixel stairs
    blended = (shot.image - stairs.image).abs().amax(1, keepdim=True) > 0.02
    assert blended[edge].float().mean() > 0.5  # and their colour mixes the two sides
    hair = shot.labels == HAIR
    assert (hair[shot.hair > 0.5]).all() and (shot.hair[hair] >= 1 / 8).all()


def test_the_bald_picture_removes_the_hair_and_keeps_everything_it_did_not_cover():
    a = faces(8)
    shot, bald = WORLD.render(a), WORLD.render(a.bald())
    assert (bald.labels == HAIR).sum() == 0 and (shot.labels == HAIR).float().mean() > 0.05
    untouched = F.max_pool2d(shot.hair, 3, stride=1, padding=1) == 0
    assert torch.equal(shot.image * untouched, bald.image * untouched)
    under = shot.labels == HAIR
    assert (bald.labels[under] != HAIR).all()  # under the hair: forehead, ears, background


def test_a_colour_edit_target_changes_only_the_hair():
    a = faces(6)
    red = torch.tensor(HAIR_COLOURS["red"])
    shot, target = WORLD.render(a), WORLD.render(a.with_hair_colour(red))
    assert torch.equal(shot.labels, target.labels)
    outside = shot.hair == 0
    assert torch.equal(shot.image * outside, target.image * outside)
    inside = (shot.hair == 1).expand_as(shot.image)
    mean_rgb = lambda img: torch.stack([img[:, c][inside[:, c]].mean() for c in range(3)])  # noqa: E731
    r, g, b = (mean_rgb(target.image) + 1) / 2
    assert r > g + 0.2 and r > b + 0.2


def test_a_hairstyle_transfer_target_carries_the_reference_hair_onto_the_source_head():
    a = faces(6, seed=5)
    source, reference = a.index(slice(0, 3)), a.index(slice(3, 6))
    target = source.with_hair_of(reference)
    assert torch.equal(target.hair_rgb, reference.hair_rgb) and torch.equal(target.skin, source.skin)
    assert torch.equal(target.face_cx, source.face_cx)
    shot_t, shot_s, shot_r = WORLD.render(target), WORLD.render(source), WORLD.render(reference)
    iou = lambda x, y: ((x == HAIR) & (y == HAIR)).sum() / ((x == HAIR) | (y == HAIR)).sum()  # noqa: E731
    assert iou(shot_t.labels, shot_r.labels) > iou(shot_s.labels, shot_r.labels)
    assert torch.equal(WORLD.render(target.with_hair_of(source)).image, shot_s.image)


def test_the_sketch_follows_the_hair():
    a = faces(6)
    shot = WORLD.render(a)
    strokes = shot.sketch > 0
    assert shot.sketch.dtype == torch.uint8 and set(shot.sketch.unique().tolist()) <= {0, STROKE_VALUE}
    near_hair = F.max_pool2d(shot.hair, 3, stride=1, padding=1) > 0
    assert strokes.any() and (strokes <= near_hair).all()
    assert (WORLD.render(a.bald()).sketch == 0).all()


def test_the_prior_covers_bald_to_long_hair_and_every_colour():
    z = WORLD.z(2000, 11)
    a = attributes_from_z(z)
    bald = (a.hair_amount == 0).float().mean()
    assert 0.08 < bald < 0.16  # BALD_FRACTION = 0.12
    words = caption(a)
    assert {"bald"} <= set(words)
    for w in ("long", "short", "curly", "straight", "with bangs", *HAIR_COLOURS):
        assert any(w in c for c in words), w


def test_captions_name_the_hair():
    z = torch.zeros(2, 512)
    z[0, 14] = -3  # u = 0.001: bald
    z[1, 14], z[1, 18], z[1, 16] = 2.5, 2.5, 2.5  # long, curly, bangs
    a = attributes_from_z(z).with_hair_colour(torch.tensor(HAIR_COLOURS["blonde"]))
    assert caption(a) == ["bald", "long blonde curly hair with bangs"]


def test_the_data_module_gives_each_index_the_same_face_on_any_read():
    dm = WorldDataModule(n_train=100, n_val=4, batch_size=4, outputs=("image", "bald"))
    dm.setup()
    item = dm.train_set[7]
    again = WorldFaces(dm.world, 100, 0, outputs=("image", "bald"))[7]
    assert torch.equal(item["image"], again["image"]) and set(item) == {"z", "image", "bald"}
    assert not torch.equal(dm.val_set[0]["z"], dm.train_set[0]["z"])  # validation faces are apart


def test_style_mixing_keeps_the_first_faces_shapes_in_the_second_faces_colours():
    structure, appearance = faces(4, seed=8), faces(4, seed=9)
    z1, z2 = WORLD.z(4, 8), WORLD.z(4, 9)
    z1[:, 14] = z2[:, 14] = 1.0
    mixed = WORLD.attributes(mix_z(z1, z2))
    shot, first = WORLD.render(mixed), WORLD.render(structure)
    assert torch.equal(shot.labels, first.labels) and torch.equal(shot.hair, first.hair)  # every shape is z1's
    for name in ("skin", "hair_rgb", "background", "cloth", "iris"):
        assert torch.equal(getattr(mixed, name), getattr(appearance, name)), name
    assert not torch.equal(shot.image, first.image)
    assert torch.equal(mix_z(z1, z1), z1)
    with pytest.raises(ValueError, match="shapes differ"):
        mix_z(z1, z2[:2])


def test_mixed_training_items_are_drawn_from_their_index_alone():
    data = WorldFaces(WORLD, 200, seed=0, outputs=("image",), mixing=0.5)
    items = [data[i] for i in range(40)]
    mixed = [not torch.equal(it["z"], it["z_appearance"]) for it in items]
    assert 10 < sum(mixed) < 30  # about half, each decided by its index
    i = mixed.index(True)
    again = WorldFaces(WORLD, 200, seed=0, outputs=("image",), mixing=0.5)[i]
    assert torch.equal(again["image"], items[i]["image"]) and torch.equal(
        again["z_appearance"], items[i]["z_appearance"]
    )
    want = WORLD.render_z(mix_z(items[i]["z"][None], items[i]["z_appearance"][None])).image[0]
    assert torch.equal(items[i]["image"], want)
    plain_item = WorldFaces(WORLD, 200, seed=0, outputs=("image",))[i]
    assert "z_appearance" not in plain_item and torch.equal(plain_item["z"], items[i]["z"])
    with pytest.raises(ValueError, match="data.mixing"):
        WorldFaces(WORLD, 10, seed=0, mixing=1.5)


def test_the_generator_draws_mixed_items_with_the_appearance_codes_from_the_mixing_row():
    from hairclipv2.training.world_generator import WorldGeneratorModule

    g = tiny_world_generator().eval()
    z1, z2 = World(size=16, z_dim=32, supersample=2).z(2, 0), World(size=16, z_dim=32, supersample=2).z(2, 1)
    with torch.no_grad():
        w1, w2 = (g.mapping(z).unsqueeze(1).expand(-1, g.n_latent, -1) for z in (z1, z2))
        want = g.synthesis(torch.cat([w1[:, :3], w2[:, 3:]], dim=1))
        assert torch.equal(WorldGeneratorModule.draw(g, z1, z2, mixing_row=3), want)
        assert torch.equal(WorldGeneratorModule.draw(g, z1, z1), WorldGeneratorModule.draw(g, z1))


def test_zeroed_early_rgb_makes_hairclipv2s_resume_exact_and_stays_zero():
    from functools import partial

    from hairclipv2.training.world_generator import WorldGeneratorModule, early_rgb

    module = WorldGeneratorModule(tiny_world_generator(), partial(torch.optim.Adam, lr=1e-2), zero_rgb_through=1)
    g, z = module.generator, World(size=16, z_dim=32, supersample=2).z(2, 0)
    optimiser = module.configure_optimizers()
    trained = {id(p) for group in optimiser.param_groups for p in group["params"]}
    frozen = [p for layer in early_rgb(g, 1) for p in layer.parameters()]
    assert frozen and not any(id(p) in trained for p in frozen)
    module.draw(g, z).square().mean().backward()
    optimiser.step()
    assert all((p == 0).all() for p in frozen)
    with torch.no_grad():
        w = g.mapping(z).unsqueeze(1).expand(-1, g.n_latent, -1)
        resumed = g.resume_from_feature(w, 1, g.features(w, 1)[0])  # HairCLIPv2's: no RGB skip
        assert torch.allclose(resumed, g.synthesis(w), atol=1e-6)
        plain = tiny_world_generator()
        assert not torch.allclose(plain.resume_from_feature(w, 1, plain.features(w, 1)[0]), plain.synthesis(w))
    with pytest.raises(ValueError, match="zero_rgb_through"):
        WorldGeneratorModule(tiny_world_generator(), zero_rgb_through=2)


def test_world_data_hyperparameters_are_plain_so_checkpoints_load_weights_only(tmp_path):
    from omegaconf import OmegaConf

    dm = WorldDataModule(n_train=100, n_val=2, batch_size=4, outputs=OmegaConf.create(["image"]))
    torch.save(dict(dm.hparams), tmp_path / "h.pt")
    assert torch.load(tmp_path / "h.pt", weights_only=True)["outputs"] == ("image",)


def tiny_world_generator():
    from hairclipv2.models.stylegan2 import Generator

    torch.manual_seed(0)
    return Generator(16, 32, 2, lr_mlp=0.1, channels={4: 32, 8: 32, 16: 16})


def test_the_world_generator_learns_the_world_and_exports_an_official_container(tmp_path):
    from functools import partial

    from hairclipv2.training.world_generator import WorldGeneratorModule
    from hairclipv2.weights import load_generator

    world = World(size=16, z_dim=32, supersample=2)
    z = world.z(8, 0)
    target = world.render_z(z).image
    module = WorldGeneratorModule(tiny_world_generator(), partial(torch.optim.Adam, lr=5e-3), ema_decay=0.9)
    assert (module.generator.style[1].weight[:, N_PARAMS:] == 0).all()  # blind to what the world ignores
    optimiser = module.configure_optimizers()
    losses = []
    for _ in range(40):
        loss, _ = module.loss(module.draw(module.generator, z), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        module.on_train_batch_end()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    path = module.export_generator(tmp_path / "generator.pt")
    again = tiny_world_generator()
    latent_avg = load_generator(again, path)  # strict, rosinality's {"g_ema", "latent_avg"}
    assert latent_avg.shape == (32,)
    with torch.no_grad():
        assert torch.equal(module.draw(again, z), module.draw(module.g_ema, z))
    resumed = WorldGeneratorModule(tiny_world_generator(), init_weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(resumed.g_ema.parameters(), module.g_ema.parameters(), strict=True))


def test_validation_reads_the_hair_the_world_parser_finds_in_g_of_z():
    from hairclipv2.pipeline import world_generator
    from hairclipv2.training.world_generator import WorldGeneratorModule

    from conftest import WORLD_WEIGHTS as weights

    batch = WorldFaces(WORLD, 8, seed=3, outputs=("image", "hair"))
    batch = {k: torch.stack([batch[i][k] for i in range(8)]) for k in ("z", "image", "hair")}
    ious = {}
    for name, init in (("shipped", str(weights / "generator.pt")), ("untrained", None)):
        torch.manual_seed(0)
        module = WorldGeneratorModule(world_generator(), init_weights=init, parser_weights=str(weights / "parser.pt"))
        module.log = lambda *args, **kwargs: None  # no trainer to log to
        module.validation_step(batch, 0)
        ious[name] = float(module.parser_hair_iou())
        assert not any(k.startswith("segmenter") for k in module.state_dict())  # checkpoints without it resume
    assert ious["shipped"] > 0.7 and ious["untrained"] < 0.3, ious


def test_mapping_lr_scale_speeds_up_the_mapping_network_alone():
    from functools import partial

    from hairclipv2.training.world_generator import WorldGeneratorModule

    z = World(size=16, z_dim=32, supersample=2).z(4, 0)
    moves = []
    for scale in (1.0, 10.0):
        module = WorldGeneratorModule(
            tiny_world_generator(), partial(torch.optim.Adam, lr=1e-3), mapping_lr_scale=scale
        )
        before = [p.detach().clone() for p in (module.generator.style[1].weight, module.generator.to_rgb1.conv.weight)]
        optimiser = module.configure_optimizers()
        module.draw(module.generator, z).square().mean().backward()
        optimiser.step()  # Adam's first step: lr x sign(gradient)
        after = (module.generator.style[1].weight, module.generator.to_rgb1.conv.weight)
        moves.append([(a - b).abs().max() for a, b in zip(after, before, strict=True)])
    (mapping_1, synthesis_1), (mapping_10, synthesis_10) = moves
    assert torch.isclose(mapping_10, 10 * mapping_1, rtol=1e-3) and torch.isclose(synthesis_10, synthesis_1)


def test_captions_vary_their_wording_but_name_only_true_traits():
    from hairclipv2.world.captions import phrasing

    a = faces(64, seed=9)
    texts = phrasing(a, torch.Generator().manual_seed(0))
    colours = caption(a)
    assert len(set(texts)) > 20 and all(t.endswith(("hair", "with bangs")) for t in texts)
    for text, full in zip(texts, colours, strict=True):
        named = [w for w in HAIR_COLOURS if f" {w} " in f" {text} "]
        assert all(w in full for w in named)  # a colour named is the face's colour


def test_the_world_clip_trains_both_towers_and_loads_as_an_open_clip_folder(tmp_path):
    from hairclipv2.models.clip import CLIPModel, clip_input
    from hairclipv2.training.world_clip import WorldCLIPModule, export_clip

    torch.manual_seed(0)
    cfg = {
        "embed_dim": 16,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    }
    module = WorldCLIPModule(cfg)
    z = WORLD.z(8, 1)
    batch = {"z": z, "image": WORLD.render_z(z).image}
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and 1.0 < float(loss) < 10.0
    grads = {n.split(".")[0]: p.grad for n, p in module.clip.named_parameters() if p.grad is not None}
    assert {"visual", "transformer", "token_embedding"} <= set(grads)
    assert all(g.abs().sum() > 0 for g in grads.values())
    folder = export_clip(module.clip, cfg, tmp_path / "clip")
    loaded = CLIPModel(f"local-dir:{folder}", pretrained=None)
    x = clip_input((batch["image"][:2] + 1) / 2)
    ours = module.clip.encode_image((x - module.mean) / module.std)
    assert torch.allclose(loaded.encode_image(x), ours, atol=2e-2)  # the export is half precision
    assert loaded.encode_text(["red hair"]).shape == (1, 16)
    continued = WorldCLIPModule(cfg, init_weights=str(folder))  # model.init_weights: the export, strictly
    exported = {k: v.half().float() if v.is_floating_point() else v for k, v in module.clip.state_dict().items()}
    assert all(torch.equal(v, exported[k]) for k, v in continued.clip.state_dict().items())
    with pytest.raises(ValueError, match="architecture"):
        WorldCLIPModule({**cfg, "embed_dim": 32}, init_weights=str(folder))
    with pytest.raises(FileNotFoundError, match="experiment=world_clip"):
        WorldCLIPModule(cfg, init_weights=str(tmp_path / "nowhere"))


def test_the_bald_mapper_learns_the_bald_codes_in_code_space_and_exports_hairclipv2s_file(tmp_path):
    from functools import partial

    from hairclipv2.editing.bald import load_bald_proxy
    from hairclipv2.models.stylegan2 import Generator
    from hairclipv2.training.world_bald import WorldBaldModule, bald_z

    torch.manual_seed(0)
    generator = Generator(32, 512, 2, lr_mlp=0.1, channels={4: 16, 8: 16, 16: 8, 32: 8})  # 8 W+ rows
    module = WorldBaldModule(generator, optimizer=partial(torch.optim.Adam, lr=0.05), jitter=0.0)
    z = WORLD.z(16, 2)
    z[:, 14] = 1.0
    batch = {"z": z}
    assert (WORLD.render_z(bald_z(z)).labels == HAIR).sum() == 0  # the bald code draws no hair
    optimiser = module.configure_optimizers()
    losses = []
    for _ in range(30):
        loss = module.training_step(batch, 0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    proxy = load_bald_proxy(str(module.export_mapper(tmp_path / "bald_proxy.pt")))  # strict, HairCLIPv2's format
    codes = module.codes(z)
    assert torch.allclose(proxy(codes), module.bald_codes(codes).detach(), atol=1e-6)


def test_the_generator_benchmark_measures_hairclipv2s_resume_against_the_mixed_picture(tmp_path, monkeypatch):
    """benchmarks/world_generator.py on the shipped generator (trained with style mixing, the RGB of
    blocks 0..2 zeroed) and on an untrained one: the shipped F of one face finished by another's codes
    draws the world's mix (measured on 8 pairs: 31.1 dB, its hair IoU 0.87 against 0.48 with the
    other face's hair); without the zeroed RGB HairCLIPv2's resume is not the mixed codes' picture."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    from hairclipv2.pipeline import world_generator
    from hairclipv2.training.world_generator import WorldGeneratorModule

    from conftest import WORLD_WEIGHTS

    torch.manual_seed(0)
    WorldGeneratorModule(world_generator()).export_generator(tmp_path / "untrained.pt")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on it
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "world_generator.py"
    spec = importlib.util.spec_from_file_location("world_generator_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    files = [str(WORLD_WEIGHTS / "generator.pt"), str(tmp_path / "untrained.pt")]
    assert bench.main([*files, "--faces", "8", "--out", str(out)]) == 0
    shipped, untrained = json.loads(out.read_text())["rows"]
    assert shipped["psnr"] > 27 and shipped["hair_iou"] > 0.7
    assert shipped["resume_psnr"] == pytest.approx(shipped["mixed_psnr"], abs=1e-3) and shipped["resume_psnr"] > 27
    assert shipped["resume_hair_iou"] > shipped["resume_z2_hair_iou"] + 0.25
    assert abs(untrained["resume_psnr"] - untrained["mixed_psnr"]) > 0.3 and untrained["psnr"] < 15
    assert bench.main([str(tmp_path / "missing.pt")]) == 2
