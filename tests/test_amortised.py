"""The amortised proxies: a latent mapper answers a proxy's rows in one pass; the editor uses it with
editing.<mode>.method=encoder (plus refinement steps of the official optimisation), through the same
proxy module, objective and generator as the official path."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from test_editing import SMALL, ThresholdParser, small_generator

from hairclipv2.config import ConfigError
from hairclipv2.editing.amortised import LatentMapper, load_mapper, save_mapper
from hairclipv2.editing.editor import EditBatch
from hairclipv2.editing.proxies import ColourCondition
from hairclipv2.losses import rgb_to_lab
from hairclipv2.losses.colour import masked_spread
from hairclipv2.pipeline import build_hair_editor, command_config
from hairclipv2.training.mappers import MapperAnswer
from hairclipv2.weights import MissingCheckpointError

TEXTS = ["short hair", "long wavy hair", "afro"]
COLOURS = [ColourCondition(rgb=(200, 40, 30)), ColourCondition(text="blond hair"), ColourCondition(rgb=(20, 20, 20))]
VIT_B_32_TEXT_DIM = 512  # the demo editor's CLIP (random ViT-B-32): its text embedding width
COLOUR_ROWS = SMALL["colour"]["edit_rows"][1] - SMALL["colour"]["edit_rows"][0]
MAPPERS = {  # kind -> (condition width, rows, rows read) for the small editor of test_editing
    "text": (VIT_B_32_TEXT_DIM, SMALL["text"]["rows"], SMALL["text"]["rows"]),
    "reference": (0, SMALL["reference"]["rows"], 2 * SMALL["reference"]["rows"]),
    "colour": (VIT_B_32_TEXT_DIM + 4, COLOUR_ROWS, COLOUR_ROWS),
}


def random_mapper(kind: str, seed: int = 0) -> LatentMapper:
    condition, rows, reads = MAPPERS[kind]
    torch.manual_seed(seed)
    mapper = LatentMapper(kind, condition, 512, rows, reads, hidden=64, layers=2)
    torch.nn.init.normal_(mapper.out.weight, std=0.02)  # a trained mapper's answer is not the start
    return mapper


def small_editor(folder, refinement: int = 0, **changes):
    settings = {**SMALL, **changes}
    for mode in MAPPERS:
        settings[mode] = {**settings[mode], "method": "encoder", "refinement": refinement}
    weights = {
        f"{kind}_mapper_weights": str(save_mapper(random_mapper(kind), folder / f"{kind}.pt"))
        for kind in MAPPERS
        if f"{kind}_mapper_weights" not in changes
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_hair_editor(
            small_generator(), random_weights=True, parser=ThresholdParser(), **settings, **weights
        )


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    return small_editor(tmp_path_factory.mktemp("mappers"))


@pytest.fixture(scope="module")
def sources(editor):
    g = editor.generator
    torch.manual_seed(1)
    codes = editor.latent_avg + 0.5 * torch.randn(3, g.n_latent, g.style_dim)
    with torch.no_grad():
        return g.synthesis(codes).clamp(-1, 1), codes


@pytest.fixture
def refinement(editor):
    """Sets every proxy's refinement steps for one test."""
    proxies = (editor.text_proxy, editor.ref_proxy, editor.colour_proxy)
    saved = [p.cfg for p in proxies]

    def set_steps(k: int) -> None:
        for p, cfg in zip(proxies, saved, strict=True):
            p.cfg = dataclasses.replace(cfg, refinement=k)

    yield set_steps
    for p, cfg in zip(proxies, saved, strict=True):
        p.cfg = cfg


def test_an_untrained_mapper_answers_the_optimisations_start():
    mapper = LatentMapper("colour", 36, 512, 4, hidden=16, layers=1)
    start = torch.randn(3, 4, 512)
    rows = mapper(torch.randn(3, 36), torch.randn(3, 4, 512), start, torch.randn(512))
    assert rows.shape == (3, 4, 512) and torch.equal(rows, start)


def test_a_mapper_with_gains_answers_offsets_linear_in_its_gains_and_keeps_them_in_its_file(tmp_path):
    torch.manual_seed(0)
    mapper = LatentMapper("colour", 36, 512, 4, hidden=16, layers=1, gains=4)
    torch.nn.init.normal_(mapper.out.weight, std=0.02)
    condition, codes, start, mean = torch.randn(3, 36), torch.randn(3, 4, 512), torch.randn(3, 4, 512), torch.randn(512)
    gains = torch.randn(3, 4)
    with torch.no_grad():
        one, two = (mapper(condition, codes, start, mean, k * gains) - start for k in (1, 2))
        assert torch.equal(mapper(condition, codes, start, mean, torch.zeros(3, 4)), start)
        only_a = mapper(condition, codes, start, mean, gains * torch.tensor([0.0, 1, 0, 0])) - start
    torch.testing.assert_close(two, 2 * one)
    assert one.abs().mean() > 1e-3 and not torch.allclose(only_a, one)
    with pytest.raises(ValueError, match="answers 4 offsets: pass their gains"):
        mapper(condition, codes, start, mean)
    with pytest.raises(ValueError, match=r"gains: expected \(3, 4\), found \(3, 3\)"):
        mapper(condition, codes, start, mean, torch.zeros(3, 3))
    loaded = load_mapper(save_mapper(mapper, tmp_path / "m.pt"), "colour")
    assert loaded.n_gains == 4
    torch.testing.assert_close(
        loaded(condition, codes, start, mean, gains), mapper(condition, codes, start, mean, gains)
    )


@pytest.fixture
def lab_gains_mapper(editor):
    """The small editor's colour proxy with a random Lab-gains mapper, for one test."""
    from hairclipv2.editing.proxies import LAB_GAINS

    proxy, saved = editor.colour_proxy, editor.colour_proxy.mapper
    condition, rows, reads = MAPPERS["colour"]
    torch.manual_seed(0)
    proxy.mapper = LatentMapper("colour", condition, 512, rows, reads, hidden=64, layers=2, gains=LAB_GAINS)
    torch.nn.init.normal_(proxy.mapper.out.weight, std=0.02)
    yield proxy.mapper
    proxy.mapper = saved


def test_a_lab_gains_colour_mapper_leaves_the_rows_when_the_asked_colour_is_the_hairs_own(
    editor, sources, lab_gains_mapper
):
    """Its gains are the Lab change asked: asking for the colour the hair already has moves nothing,
    another colour moves the rows, and a text moves them by the text's own offset."""
    proxy, codes = editor.colour_proxy, sources[1]
    lo, hi = proxy.edit_span
    own = torch.tensor([[50.0, 10.0, 20.0]]).expand(3, 3)
    asked = [ColourCondition(rgb=(200, 40, 30)), ColourCondition(rgb=(20, 20, 20)), ColourCondition(text="blond hair")]
    targets = torch.cat([own[:1], torch.tensor([[10.0, 0.0, 0.0]])])
    with torch.no_grad():
        answer = proxy.mapper_rows(asked, targets, codes, editor.latent_avg, own)
    torch.testing.assert_close(answer[0], codes[0, lo:hi])  # asked: the hair's own colour
    assert (answer[1] - codes[1, lo:hi]).abs().mean() > 1e-3  # another colour
    assert (answer[2] - codes[2, lo:hi]).abs().mean() > 1e-3  # a text
    with pytest.raises(ValueError, match="needs the source hair's Lab"):
        proxy.mapper_rows(asked, targets, codes, editor.latent_avg)


def test_a_relative_mapper_loss_weighs_each_item_by_its_objective_at_the_start():
    """Each item's objective over its start value, or over model.relative_floor below it (a colour
    asked as the hair already is starts near zero)."""
    module = world_module("colour", "model.relative=true", "model.relative_floor=0.01", "model.delta_lambda=0.5")
    plain = world_module(
        "colour", "model.relative=false", "model.export_metric=val/objective", "model.delta_lambda=0.5"
    )

    def answer(z: torch.Tensor, with_start: bool = False) -> MapperAnswer:
        start = torch.tensor([1.0, 8.0, 0.001]) if with_start else None
        return MapperAnswer(torch.tensor([2.0, 4.0, 0.02]), torch.tensor([0.2, 0.4, 0.3]), start)

    z = torch.zeros(3, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a trainer
        for m in (module, plain):
            m.answer = answer
        relative, absolute = module.training_step({"z": z}, 0), plain.training_step({"z": z}, 0)
    assert float(relative) == pytest.approx((2 / 1 + 4 / 8 + 0.02 / 0.01) / 3 + 0.5 * 0.3)
    assert float(absolute) == pytest.approx((2 + 4 + 0.02) / 3 + 0.5 * 0.3)
    with pytest.raises(ValueError, match="model.relative_floor must be > 0 .*got 0.0"):
        type(module)(module.editor, relative=True, relative_floor=0.0)
    with pytest.raises(ValueError, match="export_metric=val/relative_objective needs model.relative=true"):
        type(plain)(plain.editor, export_metric="val/relative_objective")
    with pytest.raises(
        ValueError, match="model.export_metric: val/objective or val/relative_objective, got 'val/loss'"
    ):
        type(plain)(plain.editor, export_metric="val/loss")


def test_the_mapper_file_round_trips_and_a_wrong_or_missing_one_is_named(tmp_path):
    mapper = random_mapper("reference")
    loaded = load_mapper(save_mapper(mapper, tmp_path / "m.pt"), "reference")
    codes, start, mean = torch.randn(2, 6, 512), torch.randn(2, 3, 512), torch.randn(512)
    assert torch.equal(
        loaded(torch.zeros(2, 0), codes, start, mean), mapper(torch.zeros(2, 0), codes, start, mean).detach()
    )
    with pytest.raises(
        ValueError, match=r"m.pt \(editing.colour_mapper_weights\): expected a colour mapper, found 'reference'"
    ):
        load_mapper(tmp_path / "m.pt", "colour")
    with pytest.raises(MissingCheckpointError, match="no colour mapper file .*experiment=world_colour_mapper"):
        load_mapper(tmp_path / "nowhere.pt", "colour")


def test_a_mapper_for_other_rows_is_refused_naming_the_setting():
    from hairclipv2.editing.proxies import checked_mapper

    mapper = random_mapper("text")  # 4 rows
    assert checked_mapper("encoder", mapper, "text", 4) is mapper
    with pytest.raises(
        ValueError, match=r"editing.text_mapper_weights: the mapper answers 4 rows, editing.text frees 7"
    ):
        checked_mapper("optimisation", mapper, "text", 7)


@pytest.mark.parametrize(
    "kind, layout",
    [("text", r"CLIP's text embedding 512"), ("colour", r"CLIP's text embedding 512, a Lab colour 3, a text flag")],
)
def test_a_mapper_trained_with_another_clip_is_refused_naming_its_condition(tmp_path, kind, layout):
    """Text and colour mappers read CLIP's text embedding (colour: with the target's Lab and a flag):
    one trained with another CLIP (here the world's 64-d embedding) is refused, not misread."""
    width, rows, reads = MAPPERS[kind]
    other = LatentMapper(kind, width - VIT_B_32_TEXT_DIM + 64, 512, rows, reads, hidden=16, layers=1)
    with pytest.raises(
        ValueError,
        match=rf"editing.{kind}_mapper_weights: the mapper reads a condition of {width - 448} values, this editor "
        rf"gives {width} \({layout}\)",
    ):
        small_editor(tmp_path, **{f"{kind}_mapper_weights": str(save_mapper(other, tmp_path / "other.pt"))})


@pytest.mark.parametrize("mode", list(MAPPERS))
def test_method_encoder_without_a_mapper_is_refused_before_any_work(mode):
    with pytest.raises(ConfigError, match=f"editing.{mode}.method=encoder needs editing.{mode}_mapper_weights"):
        command_config(None, ["experiment=hairclipv2_demo", f"editing.{mode}.method=encoder"])


@pytest.mark.slow  # 13 s on 2 cores
def test_the_encoder_and_official_paths_share_every_module(editor):
    """The encoder path adds the mappers and nothing else: every other module is the official one's."""
    names = {name for name, _ in editor.named_modules()}
    proxies = ("text_proxy", "ref_proxy", "colour_proxy")
    mappers = {name for name in names if name.startswith(tuple(f"{p}.mapper" for p in proxies))}
    assert {n.split(".")[0] for n in mappers} == set(proxies)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = build_hair_editor(small_generator(), random_weights=True, parser=ThresholdParser(), **SMALL)
    assert names - mappers == {name for name, _ in official.named_modules()}
    assert editor.ref_proxy.generator is editor.generator is editor.colour_proxy.blender.generator


def test_the_text_path_is_the_mapper_then_k_official_steps_on_the_same_objective(editor, sources, refinement):
    proxy, g = editor.text_proxy, editor.generator
    images, codes = sources
    answer = proxy.optimise(images, TEXTS, editor.latent_avg, source_codes=codes)
    rows = proxy.mapper_rows(TEXTS, codes, editor.latent_avg)
    assert answer.losses == [] and torch.equal(answer.codes[:, : rows.shape[1]], rows)
    assert torch.equal(answer.codes[:, rows.shape[1] :], editor.latent_avg.expand(3, g.n_latent, -1)[:, 4:])
    refinement(3)
    refined = proxy.optimise(images, TEXTS, editor.latent_avg, source_codes=codes)
    assert len(refined.losses) == 3
    with torch.no_grad():  # the first refinement step's loss is the official objective at the mapper's answer
        at_answer = proxy.objective(g.synthesis(answer.codes), TEXTS, None)
    assert torch.allclose(refined.losses[0], at_answer, atol=1e-5)
    with pytest.raises(ValueError, match="pass source_codes"):
        proxy.optimise(images, TEXTS, editor.latent_avg)


@pytest.mark.slow  # 10 s on 2 cores
def test_the_reference_path_moves_the_references_first_rows_then_k_official_steps(editor, sources, refinement):
    proxy, g = editor.ref_proxy, editor.generator
    images, codes = sources
    ref_codes, ref_images = codes.roll(1, 0), images.roll(1, 0)
    answer = proxy.optimise(images, ref_images, ref_codes, source_codes=codes, latent_avg=editor.latent_avg)
    k = proxy.mapper.rows
    rows = proxy.mapper_rows(ref_codes, codes, editor.latent_avg)
    assert answer.losses == [] and torch.equal(answer.codes[:, :k], rows) and not torch.equal(rows, ref_codes[:, :k])
    assert torch.equal(answer.codes[:, k:], ref_codes[:, k:])  # the rows it leaves are the reference's
    refinement(2)
    refined = proxy.optimise(images, ref_images, ref_codes, source_codes=codes, latent_avg=editor.latent_avg)
    with torch.no_grad():  # the first step's loss: the objective at the answer (delta-w is 0 there)
        at_answer = proxy.objective(g.synthesis(answer.codes), proxy.targets(images, ref_images))
    assert len(refined.losses) == 2 and torch.allclose(refined.losses[0], at_answer, rtol=1e-4)


def test_the_colour_path_answers_the_edit_rows_and_keeps_the_source_outside_the_hair(editor, sources, refinement):
    proxy, b = editor.colour_proxy, editor.blender
    images, codes = sources
    feature = editor.generator.features(codes, b.hairstyle_block)[0]
    result = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
    lo, hi = proxy.cfg.edit_rows
    labs = proxy.target_labs(COLOURS, images.shape[-1], images.device)
    rows = proxy.mapper_rows(COLOURS, labs, codes, editor.latent_avg)
    assert result.edit_losses == [] and result.final_losses == []
    assert torch.equal(result.colour_codes[:, lo:hi], rows) and torch.equal(result.codes, codes)
    with torch.no_grad():  # blended with the RGB skip: the source's own picture away from the hair
        source_picture = b.resume(codes, feature)
    reach = 13  # the later blocks' convolutions reach a few pixels past the blended mask
    outside = torch.nn.functional.max_pool2d(result.hair_mask, reach, stride=1, padding=reach // 2) == 0
    assert outside.float().mean() > 0.1
    torch.testing.assert_close(result.image * outside, source_picture * outside, rtol=0, atol=1e-5)
    assert not torch.allclose(result.image, source_picture, atol=1e-3)  # the hair did change
    condition = proxy.mapper_condition(COLOURS, labs, codes.device)  # text, Lab colour and flag per kind
    assert condition[[0, 2], :-4].abs().sum() == 0 and condition[1, -4:-1].abs().sum() == 0
    assert condition[:, -1].tolist() == [0, 1, 0] and torch.allclose(condition[[0, 2], -4:-1], labs / 100)
    refinement(2)
    refined = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
    assert len(refined.edit_losses) == 2 and len(refined.final_losses) == 2
    with pytest.raises(ValueError, match="pass latent_avg"):
        proxy.edit(COLOURS, images, codes, feature)


def test_the_colour_refinement_takes_its_own_steps_per_phase_and_rates(editor, sources):
    proxy, b = editor.colour_proxy, editor.blender
    images, codes = sources
    feature = editor.generator.features(codes, b.hairstyle_block)[0]
    saved = proxy.cfg
    lo, hi = proxy.cfg.edit_rows
    rows = proxy.mapper_rows(
        COLOURS, proxy.target_labs(COLOURS, images.shape[-1], images.device), codes, editor.latent_avg
    )
    try:
        proxy.cfg = dataclasses.replace(saved, refinement=2, refinement_final=1, refinement_lr=(0.05, 0.01, 0.01))
        result = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
    finally:
        proxy.cfg = saved
    assert len(result.edit_losses) == 2 and len(result.final_losses) == 1
    # the colour codes are those before the last step: one Adam step, which moves an element by its rate
    moved = (result.colour_codes[:, lo:hi] - rows).abs().amax()
    assert 0.045 < moved <= 0.05 + 1e-6
    for bad, match in (({"refinement_lr": (0.1, 0.1)}, "three rates"), ({"refinement_final": -1}, ">= 0")):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(saved, **bad)


def test_the_lab_solve_gives_the_returned_pictures_hair_the_asked_rgb_and_leaves_text_to_the_refinement(
    editor, sources
):
    """`editing.colour.lab_solve`: Gauss-Newton steps from the mapper's answer on the RGB conditions
    (samples 0 and 2 of COLOURS); the text condition (1) gets the refinement's Adam steps as it would
    without the solve, and a batch of RGB conditions alone runs no Adam step. On the official path
    (no mapper) the solve starts from the source's own rows and the text sample is HairCLIPv2's edit."""
    proxy, b = editor.colour_proxy, editor.blender
    images, codes = sources
    feature = editor.generator.features(codes, b.hairstyle_block)[0]
    labs = proxy.target_labs(COLOURS, images.shape[-1], images.device)
    saved = proxy.cfg
    try:
        ring = {"lab_solve_ring": True, "lab_solve_mask": "enlarged"}
        proxy.cfg = dataclasses.replace(saved, refinement=2, lab_solve=3, **ring)
        solved = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
        rgb_only = proxy.edit(
            [COLOURS[0], COLOURS[2]], images[[0, 2]], codes[[0, 2]], feature[[0, 2]], editor.latent_avg
        )
        reference = [ColourCondition(image=images[2])]  # a reference's hair colour is solved as an RGB one
        by_reference = proxy.edit(reference, images[:1], codes[:1], feature[:1], editor.latent_avg)
        proxy.cfg = dataclasses.replace(saved, lab_solve=3)  # by default the hair's colour alone
        hair_only = proxy.edit([COLOURS[0]], images[:1], codes[:1], feature[:1], editor.latent_avg)
        proxy.cfg = dataclasses.replace(saved, lab_solve=2, lab_solve_spread=True)  # and its spread
        with_spread = proxy.edit([COLOURS[2]], images[2:], codes[2:], feature[2:], editor.latent_avg)
        proxy.cfg = dataclasses.replace(saved, refinement=2)
        plain = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
        official_cfg = dataclasses.replace(saved, method="optimisation", edit_steps=2, final_steps=1)
        proxy.cfg = official_cfg
        official = proxy.edit(COLOURS, images, codes, feature)
        proxy.cfg = dataclasses.replace(official_cfg, lab_solve=3)  # no mapper: from the source's own rows
        mapper_free = proxy.edit(COLOURS, images, codes, feature)
    finally:
        proxy.cfg = saved
    residuals = solved.solve_residuals
    assert len(residuals) == 4 and residuals[0].shape == (2, 6)  # hair Lab and ring Lab, before each step, after
    norms = [r.norm(dim=1) for r in residuals]  # measured: 70.8 kept (each step refused on this random
    assert all((later <= earlier).all() for earlier, later in zip(norms, norms[1:]))  # generator), 258 -> 31
    assert norms[-1][1] < 0.2 * norms[0][1]
    with torch.no_grad():  # solved on the picture the edit returns
        returned = proxy.avg_lab.hair_lab(solved.image[[0, 2]]) - labs
    torch.testing.assert_close(returned, residuals[-1][:, :3], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(solved.image[1], plain.image[1])
    torch.testing.assert_close(solved.codes[1], plain.codes[1])
    edit_losses = torch.stack(solved.edit_losses)
    assert (edit_losses[:, [0, 2]] == 0).all() and (edit_losses[:, 1] > 0).all()
    assert torch.equal(solved.codes[[0, 2]], codes[[0, 2]])  # no final step either
    assert rgb_only.edit_losses == [] and rgb_only.final_losses == []
    torch.testing.assert_close(rgb_only.image, solved.image[[0, 2]], rtol=1e-4, atol=1e-5)
    assert official.solve_residuals == [] and len(official.edit_losses) == 2 and len(official.final_losses) == 1
    with torch.no_grad():  # the solve's start: the returned picture of the source's own rows
        source_picture = b.colour_resume(codes, *b.colour_with_skip(images, codes, codes, feature)[:2])
    start = proxy.avg_lab.hair_lab(source_picture[[0, 2]]) - labs
    torch.testing.assert_close(mapper_free.solve_residuals[0][:, :3], start, rtol=1e-3, atol=1e-3)
    with torch.no_grad():
        reached = proxy.avg_lab.hair_lab(mapper_free.image[[0, 2]]) - labs
    torch.testing.assert_close(reached, mapper_free.solve_residuals[-1], rtol=1e-3, atol=1e-3)
    assert mapper_free.solve_residuals[-1].norm() < mapper_free.solve_residuals[0].norm()
    torch.testing.assert_close(mapper_free.image[1], official.image[1])  # the text sample: HairCLIPv2's edit
    torch.testing.assert_close(mapper_free.codes[1], official.codes[1])
    assert [r.shape for r in hair_only.solve_residuals] == [(1, 3)] * 4
    assert [r.shape for r in with_spread.solve_residuals] == [(1, 6)] * 3
    with torch.no_grad():  # the last three: the hair's Lab spread against the source hair's
        lab = [rgb_to_lab((x + 1) / 2) for x in (with_spread.image, images[2:])]
        spread = [masked_spread(x, editor.hair(y)) for x, y in zip(lab, (with_spread.image, images[2:]))]
    torch.testing.assert_close(spread[0] - spread[1], with_spread.solve_residuals[-1][:, 3:], rtol=1e-3, atol=1e-3)
    reference_lab = proxy.target_labs(reference, images.shape[-1], images.device)
    assert torch.allclose(reference_lab, proxy.avg_lab.hair_lab(images[2:3]))
    with torch.no_grad():
        reached = proxy.avg_lab.hair_lab(by_reference.image) - reference_lab
    torch.testing.assert_close(reached, by_reference.solve_residuals[-1][:, :3], rtol=1e-3, atol=1e-3)
    first, last = by_reference.solve_residuals[0], by_reference.solve_residuals[-1]
    assert by_reference.edit_losses == [] and last.norm() <= first.norm()
    for bad in ({"lab_solve": -1}, {"lab_solve_damping": -0.5}):
        with pytest.raises(ValueError, match="lab_solve"):
            dataclasses.replace(saved, **bad)


def test_the_refit_after_the_lab_solve_keeps_the_solved_hair_and_brings_the_rest_back(editor, sources):
    """`editing.colour.lab_solve_final`: Adam steps of the final fit for the solved samples, from the
    solve's picture: inside the edited image's hair that picture is the target (its first loss is the
    rest's MSE alone), outside it the edited image, which the steps come nearer. The text sample is
    untouched, and the solved samples refit alone as in the batch."""
    proxy, b = editor.colour_proxy, editor.blender
    images, codes = sources
    feature = editor.generator.features(codes, b.hairstyle_block)[0]
    saved = proxy.cfg
    try:
        proxy.cfg = dataclasses.replace(saved, refinement=2, lab_solve=2)
        solved = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
        proxy.cfg = dataclasses.replace(saved, refinement=2, lab_solve=2, lab_solve_final=3)
        refit = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
        rgb_only = proxy.edit(
            [COLOURS[0], COLOURS[2]], images[[0, 2]], codes[[0, 2]], feature[[0, 2]], editor.latent_avg
        )
    finally:
        proxy.cfg = saved
    assert solved.refit_losses == [] and len(refit.refit_losses) == 3 and refit.refit_losses[0].shape == (2,)
    torch.testing.assert_close(refit.image[1], solved.image[1])
    torch.testing.assert_close(refit.feature[1], solved.feature[1])
    torch.testing.assert_close(refit.solve_residuals[-1], solved.solve_residuals[-1])
    rest = 1 - editor.hair(images[[0, 2]])

    def rest_mse(image: torch.Tensor) -> torch.Tensor:
        return ((image - images[[0, 2]]) * rest).pow(2).mean(dim=(1, 2, 3))

    start = rest_mse(solved.image[[0, 2]])
    torch.testing.assert_close(refit.refit_losses[0], saved.not_hair_mse_lambda * start, rtol=1e-4, atol=1e-7)
    assert (rest_mse(refit.image[[0, 2]]) < start).all()
    assert not torch.allclose(refit.feature[[0, 2]], solved.feature[[0, 2]])
    torch.testing.assert_close(rgb_only.image, refit.image[[0, 2]], rtol=1e-4, atol=1e-5)
    # by default the solved samples blend in the parsed hair with the enlarged mask's ring at half
    # weight, the text sample in HairCLIPv2's enlarged hair; lab_solve_mask=hair: the parsed hair
    plain, enlarged = b.colour_hair_masks(images)
    assert (enlarged - plain).sum() > 0
    assert torch.equal(refit.hair_mask[[0, 2]], (plain[[0, 2]] + enlarged[[0, 2]]) / 2)
    assert torch.equal(refit.hair_mask[1], enlarged[1])
    try:
        proxy.cfg = dataclasses.replace(saved, refinement=2, lab_solve=2, lab_solve_mask="hair")
        in_hair = proxy.edit(COLOURS, images, codes, feature, editor.latent_avg)
    finally:
        proxy.cfg = saved
    assert torch.equal(in_hair.hair_mask[[0, 2]], plain[[0, 2]]) and torch.equal(in_hair.hair_mask[1], enlarged[1])
    torch.testing.assert_close(in_hair.image[1], solved.image[1])
    for bad, match in (
        ({"lab_solve_final": -1}, "lab_solve_final"),
        ({"lab_solve_mask": "dilated"}, "lab_solve_mask"),
        ({"lab_solve_ring": True}, "lab_solve_mask=enlarged"),
    ):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(saved, **bad)


@pytest.mark.parametrize("kind", ["text", "reference", "colour", "colour, Lab gains"])
def test_method_encoder_gives_the_same_edit_batched_and_one_by_one(editor, sources, kind, request):
    """The mappers' path without refinement: each pair's edit (proxy, blending, decoding) is its own.
    (Refinement steps are Adam's, whose float noise test_editing bounds.) The references' codes are
    given: their inversion is the embedding's."""
    if kind == "colour, Lab gains":
        request.getfixturevalue("lab_gains_mapper")
        kind = "colour"
    images = sources[0]
    conditions = {
        "text": dict(texts=TEXTS),
        "reference": dict(references=images.roll(1, 0), reference_codes=sources[1].roll(1, 0)),
        "colour": dict(colours=COLOURS),
    }[kind]
    fs = editor.embed(images)
    torch.manual_seed(0)
    batched = editor.edit(EditBatch(images, kind, **conditions), source_code=fs)
    for i in range(3):
        one = {k: v[i : i + 1] for k, v in conditions.items()}
        code = dataclasses.replace(
            fs, codes=fs.codes[i : i + 1], feature=fs.feature[i : i + 1], image=fs.image[i : i + 1]
        )
        torch.manual_seed(0)
        alone = editor.edit(EditBatch(images[i : i + 1], kind, **one), source_code=code)
        torch.testing.assert_close(alone.result, batched.result[i : i + 1], rtol=1e-4, atol=1e-5)
        if kind != "colour":  # a colour edit has no hairstyle proxy
            torch.testing.assert_close(alone.proxy_codes, batched.proxy_codes[i : i + 1], rtol=1e-4, atol=1e-5)


def train_briefly(module, steps: int = 20, lr: float = 3e-3, n: int = 8) -> tuple[float, float, float]:
    """(objective at the start, at the mapper's answer after `steps` Adam steps on one fixed batch
    of n sources, the answer's mean squared offset)."""
    z = module.world.z(n, 11)
    torch.manual_seed(0)
    with torch.no_grad():
        start = float(module.answer(z, with_start=True).start.mean())
    optimiser = torch.optim.Adam(module.mapper.parameters(), lr=lr)
    for step in range(steps):
        optimiser.zero_grad()
        torch.manual_seed(step)
        out = module.answer(z)
        (out.objective.mean() + module.hparams.delta_lambda * out.delta.mean()).backward()
        optimiser.step()
    torch.manual_seed(0)
    with torch.no_grad():
        trained = module.answer(z)
    return start, float(trained.objective.mean()), float(trained.delta.mean())


def world_module(kind: str, *extra: str):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from hairclipv2.config import register_resolvers
    from hairclipv2.pipeline import CONF

    register_resolvers()
    overrides = [f"experiment=world_{kind}_mapper", "model.hidden=128", "model.layers=2", *extra]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return instantiate(cfg.model)


def test_a_mapper_trains_on_the_generators_codes_or_on_the_fs_encoders_of_the_worlds_pictures():
    """model.sources: mapping reads w = mapping(z) with the generator's own F; encoder reads the FS
    encoder's (S, F) of the world's picture of z, as the fast path embeds a photo."""
    from hairclipv2.world import World

    mapping, encoder = world_module("colour"), world_module("colour", "model.sources=encoder")
    g = mapping.editor.generator
    z = World(g.size, g.style_dim).z(2, seed=3)
    codes, feature = mapping.embedded(z)
    with torch.no_grad():
        w = g.mapping(z)
        s, f, _ = encoder.editor.embedding.encoder(World(g.size, g.style_dim).render_z(z).image)
    assert torch.equal(codes, w[:, None].expand_as(codes))
    assert torch.allclose(feature, g.features(codes, mapping.editor.hairstyle_block)[0])
    enc_codes, enc_feature = encoder.embedded(z)
    assert torch.equal(enc_codes, s) and torch.equal(enc_feature, f)
    assert torch.equal(encoder.sources(z), s)
    assert not torch.allclose(enc_codes, codes, atol=0.1)  # the encoder's codes are not the mapping's
    with pytest.raises(ValueError, match="model.sources must be 'mapping' or 'encoder', got 'photo'"):
        type(mapping)(mapping.editor, sources="photo")


@pytest.mark.parametrize("kind", ["text", "colour"])
def test_an_untrained_mapper_modules_answer_is_measured_where_its_start_is(kind):
    """`answer(z, with_start=True)`: the start's objective comes from the same sources and conditions
    as the answer's, so an untrained mapper (zero offsets) scores exactly its start; a trained one
    does not."""
    module = world_module(kind)
    z = module.world.z(4, 5)
    with torch.no_grad():
        out = module.answer(z, with_start=True)
        assert module.answer(z).start is None
        torch.testing.assert_close(out.objective, out.start)
        assert torch.equal(out.delta, torch.zeros(4))
        torch.nn.init.normal_(module.mapper.out.weight, std=0.01)
        moved = module.answer(z, with_start=True)
    torch.testing.assert_close(moved.start, out.start)
    assert (moved.objective - moved.start).abs().max() > 1e-4 and (moved.delta > 0).all()


@pytest.mark.slow  # 40 s on 2 cores
def test_the_text_mappers_objective_falls_in_a_short_training():
    """The world's text mapper on one fixed batch: its objective (the text proxy's own) falls below
    the optimisation's start within 20 Adam steps, its answers among the generator's codes."""
    start, trained, delta = train_briefly(world_module("text"))
    assert trained < start - 0.01, (start, trained)
    assert delta < 1.0  # among the generator's codes (the unregularised mapper went to ~1000)


@pytest.mark.slow  # 15 s on 2 cores
def test_the_colour_mappers_objective_falls_in_a_short_training():
    """The world's colour mapper: the colour edit's objective (background, Lab colour, CLIP) falls."""
    start, trained, delta = train_briefly(world_module("colour"))
    assert trained < 0.8 * start, (start, trained)
    assert delta < 1.0


@pytest.mark.slow  # 55 s on 2 cores
def test_the_reference_mappers_objective_falls_in_a_short_training(tmp_path):
    """The reference mapper of an editor with a landmark term (FAN, random here: the world has no
    landmark network): style and landmark losses fall from the jittered reference codes. (The style
    loss at the 64 px generator's own size: FAN at 256 px is the cost here.)"""
    from hairclipv2.training.mappers import ReferenceMapperModule

    settings = {**SMALL, "use_landmarks": True, "reference": {**SMALL["reference"], "style_size": 64}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = build_hair_editor(small_generator(), random_weights=True, parser=ThresholdParser(), **settings)
    module = ReferenceMapperModule(editor, hidden=128, layers=2)
    start, trained, delta = train_briefly(module, steps=8, n=2)
    assert trained < 0.9 * start, (start, trained)


def test_the_benchmark_rows_refine_at_the_official_rate_beside_the_world_editors_schedule(monkeypatch):
    """benchmarks/amortised.py: the "mapper + K" rows use K steps per phase at the official rate, the
    world editor's colour refinement and its Gauss-Newton solve (and its variants: HairCLIPv2's mask,
    final steps, no mapper) are rows of their own (the other rows, the official one too, solve
    nothing), and the fast path's rows are the mapper rows again from the FS encoder's embedding."""
    import importlib.util
    import sys
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from hairclipv2.config import build, register_resolvers
    from hairclipv2.editing.proxies import ColourProxyConfig

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on it
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("amortised_benchmark", root / "benchmarks" / "amortised.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    register_resolvers()
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["editing=hairclipv2_world"])
    world = build(ColourProxyConfig, cfg.editing.colour, "editing.colour")
    assert world.schedule(True) == ((15, 5), (0.02, 0.01, 0.01))
    assert world.schedule(False) == ((10, 10), (0.01, 0.01, 0.01))  # the optimisation keeps its own
    rows = bench.methods("colour", [10], False, world)
    k10 = dataclasses.replace(world, **rows["mapper + 10 steps"])
    assert k10.schedule(True) == ((10, 10), (0.01, 0.01, 0.01))
    (tuned,) = [name for name in rows if "world editor, rates" in name]
    assert dataclasses.replace(world, **rows[tuned]).schedule(True) == world.schedule(True)
    solved = [name for name in rows if "Gauss-Newton" in name]  # the world editor's RGB colours, and variants
    settings = {name: dataclasses.replace(world, **rows[name]) for name in solved}
    assert world.lab_solve == 3 and all(s.lab_solve == 3 for s in settings.values())
    (editor_row,) = [name for name in solved if "(world editor)" in name]
    assert settings[editor_row] == world
    assert world.lab_solve_final == 10  # the world editor's solve ends with 10 final steps; one row without
    assert sorted((s.method, s.lab_solve_mask, s.lab_solve_final) for s in settings.values()) == [
        ("encoder", "enlarged", 10),
        ("encoder", "hair", 10),
        ("encoder", "soft", 0),
        ("encoder", "soft", 10),
        ("optimisation", "soft", 10),
    ]
    others = [name for name in rows if name not in solved]
    assert others and all(dataclasses.replace(world, **rows[name]).lab_solve == 0 for name in others)
    fast = bench.fast_path(rows, 50)
    assert len(fast) == 7 and all(s["embedding"] == "encoder" and s["method"] == "encoder" for s in fast.values())
    assert "world editor, rates" not in " ".join(bench.methods("colour", [10], False, ColourProxyConfig()))
