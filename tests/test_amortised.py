"""The amortised text proxy: a TextMapper answers the proxy's rows in one pass; the editor uses it
with editing.text.method=encoder (plus refinement steps of the official optimisation), through the
same TextProxy module, objective and generator as the official path."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from test_editing import SMALL, ThresholdParser, small_generator

from hairclipv2.config import ConfigError
from hairclipv2.editing.amortised import TextMapper, load_text_mapper, save_text_mapper
from hairclipv2.pipeline import build_hair_editor, command_config
from hairclipv2.weights import MissingCheckpointError

TEXTS = ["short hair", "long wavy hair", "afro"]
VIT_B_32_TEXT_DIM = 512  # the demo editor's CLIP (random ViT-B-32): its text embedding width


def random_mapper(text_dim: int, rows: int, seed: int = 0) -> TextMapper:
    torch.manual_seed(seed)
    mapper = TextMapper(text_dim, 512, rows, hidden=64, layers=2)
    torch.nn.init.normal_(mapper.out.weight, std=0.02)  # a trained mapper's answer is not the start
    return mapper


@pytest.fixture(scope="module")
def editor_and_mapper(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mapper")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = save_text_mapper(random_mapper(VIT_B_32_TEXT_DIM, SMALL["text"]["rows"]), folder / "text_mapper.pt")
        settings = {**SMALL, "text": {**SMALL["text"], "method": "encoder", "refinement": 0}}
        editor = build_hair_editor(
            small_generator(), random_weights=True, parser=ThresholdParser(), text_mapper_weights=str(path), **settings
        )
    return editor, path


def test_an_untrained_mapper_answers_the_optimisations_start():
    mapper = TextMapper(32, 512, 4, hidden=16, layers=1)
    mean = torch.randn(512)
    rows = mapper(torch.randn(3, 32), torch.randn(3, 10, 512), mean)
    assert rows.shape == (3, 4, 512) and torch.equal(rows, mean.expand(3, 4, 512))


def test_the_mapper_file_round_trips_and_a_missing_one_is_named(tmp_path):
    mapper = random_mapper(32, 4)
    loaded = load_text_mapper(save_text_mapper(mapper, tmp_path / "m.pt"))
    text, codes, mean = torch.randn(2, 32), torch.randn(2, 10, 512), torch.randn(512)
    assert torch.equal(loaded(text, codes, mean), mapper(text, codes, mean).detach())
    with pytest.raises(MissingCheckpointError, match="no text mapper file .*experiment=world_text_mapper"):
        load_text_mapper(tmp_path / "nowhere.pt")


def test_method_encoder_without_a_mapper_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="editing.text.method=encoder needs editing.text_mapper_weights"):
        command_config(None, ["editing.text.method=encoder"])


def test_the_encoder_path_is_the_mapper_then_k_official_steps_on_the_same_objective(editor_and_mapper):
    editor, _ = editor_and_mapper
    proxy, g = editor.text_proxy, editor.generator
    torch.manual_seed(1)
    sources_codes = editor.latent_avg + 0.5 * torch.randn(3, g.n_latent, g.style_dim)
    with torch.no_grad():
        sources = g.synthesis(sources_codes).clamp(-1, 1)
    answer = proxy.optimise(sources, TEXTS, editor.latent_avg, source_codes=sources_codes)
    rows = proxy.mapper(proxy.clip_loss.clip.encode_text(TEXTS), sources_codes, editor.latent_avg)
    assert answer.losses == [] and torch.equal(answer.codes[:, : rows.shape[1]], rows)
    assert torch.equal(answer.codes[:, rows.shape[1] :], editor.latent_avg.expand(3, g.n_latent, -1)[:, 4:])
    proxy.cfg = dataclasses.replace(proxy.cfg, refinement=3)
    try:
        refined = proxy.optimise(sources, TEXTS, editor.latent_avg, source_codes=sources_codes)
    finally:
        proxy.cfg = dataclasses.replace(proxy.cfg, refinement=0)
    assert len(refined.losses) == 3
    with torch.no_grad():  # the first refinement step's loss is the official objective at the mapper's answer
        at_answer = proxy.objective(g.synthesis(answer.codes), TEXTS, None)
    assert torch.allclose(refined.losses[0], at_answer, atol=1e-5)
    with pytest.raises(ValueError, match="pass source_codes"):
        proxy.optimise(sources, TEXTS, editor.latent_avg)


def test_method_encoder_gives_the_same_edit_batched_and_one_by_one(editor_and_mapper):
    from hairclipv2.editing.editor import EditBatch

    editor, _ = editor_and_mapper
    g = editor.generator
    torch.manual_seed(2)
    with torch.no_grad():
        sources = g.synthesis(editor.latent_avg + 0.5 * torch.randn(3, g.n_latent, g.style_dim)).clamp(-1, 1)
    fs = editor.embed(sources)
    batched = editor.global_proxy(EditBatch(sources, "text", texts=TEXTS), sources, fs.codes).codes
    for i in range(3):
        alone = editor.global_proxy(
            EditBatch(sources[i : i + 1], "text", texts=TEXTS[i : i + 1]), sources[i : i + 1], fs.codes[i : i + 1]
        )
        assert torch.allclose(alone.codes, batched[i : i + 1], atol=1e-6)


@pytest.mark.slow  # 40 s on 2 cores
def test_the_mappers_objective_falls_in_a_short_training():
    """The world's text mapper module on one fixed batch: its objective (the text proxy's own) falls
    below the optimisation's start within 20 Adam steps."""
    from omegaconf import OmegaConf

    from hairclipv2.training.text_mapper import TextMapperModule

    cfg, _ = command_config(None, ["experiment=hairclipv2_world"])
    model_cfg = OmegaConf.load("conf/model/world_text_mapper.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hydra.utils import instantiate

        module = TextMapperModule(
            instantiate(cfg.generator),
            cfg.editing.stylegan_weights,
            cfg.editing.clip_model,
            None,
            OmegaConf.to_container(model_cfg.proxy),
            hidden=128,
            layers=2,
        )
    z = module.world.z(8, 11)
    with torch.no_grad():
        start = module.answer(z, use_mapper=False)[0].mean()
    optimiser = torch.optim.Adam(module.mapper.parameters(), lr=3e-3)
    for _ in range(20):
        optimiser.zero_grad()
        objective, delta = module.answer(z)
        (objective.mean() + module.hparams.delta_lambda * delta.mean()).backward()
        optimiser.step()
    with torch.no_grad():
        trained, delta = module.answer(z)
    assert trained.mean() < start - 0.01, (float(start), float(trained.mean()))
    assert delta.mean() < 1.0  # among the generator's codes (the unregularised mapper went to ~1000)
