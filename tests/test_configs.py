"""Every config of every group composes with the entry point that reads it, and the model, data,
callbacks, loggers and trainers they describe are built by Hydra alone."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from hairclipv2.config import instantiate_group, register_resolvers

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
# Which entry point reads each group (experiment entries: by name, below).
GROUPS = {
    "data": "train",
    "model": "train",
    "debug": "train",
    "hparams_search": "train",
    "task": "evaluate",
    "editing": "evaluate",
    "generator": "both",
    "callbacks": "both",
    "logger": "both",
    "trainer": "both",
    "paths": "both",
    "hydra": "both",
    "experiment": "both",
}
EXPERIMENTS = {
    "e4e_demo": "train",
    "e4e_ffhq": "train",
    "e4e_world": "train",
    "fs_encoder_demo": "train",
    "fs_encoder_ffhq": "train",
    "hairclipv2_demo": "evaluate",
    "hairclipv2_ffhq": "evaluate",
    "hairclipv2_world": "evaluate",
    "world_generator": "train",
    "world_generator_finish": "train",
    "world_generator_mixing": "train",
    "world_parser": "train",
    "world_clip": "train",
    "world_bald": "train",
    "world_text_mapper": "train",
    "world_reference_mapper": "train",
    "world_colour_mapper": "train",
    "world_sketch": "train",
    "world_fs_encoder": "train",
    "ffhq_mapper": "train",
}
OWN = {"callbacks": {"evaluate": "evaluate"}}  # group options meant for one entry point only


def options() -> list[tuple[str, str, str]]:
    cases = []
    for folder in sorted(p for p in CONF.iterdir() if p.is_dir()):
        assert folder.name in GROUPS, f"conf/{folder.name}: a new group; say which entry point reads it in GROUPS"
        for option in sorted(p.stem for p in folder.glob("*.yaml")):
            reader = (
                EXPERIMENTS.get(option)
                if folder.name == "experiment"
                else OWN.get(folder.name, {}).get(option, GROUPS[folder.name])
            )
            assert reader is not None, f"conf/experiment/{option}.yaml: say which entry point it is for in EXPERIMENTS"
            for entry in ("train", "evaluate") if reader == "both" else (reader,):
                cases.append((entry, folder.name, option))
    return cases


@pytest.mark.parametrize(("entry", "group", "option"), options())
def test_every_option_of_every_group_composes(entry, group, option):
    register_resolvers()
    override = f"{group}={option}"
    if group == "hydra":
        override = f"hydra={option}"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(entry, overrides=[override], return_hydra_config=group in ("hparams_search", "hydra"))
    assert cfg.paths.weights_dir and cfg.seed == 0


def test_evaluate_defaults_to_the_world_and_the_demo_keeps_the_astronaut():
    """No arguments: the world's networks (weights/world) on world pairs with exact answers; make demo
    trains e4e on the world with the true-codes term."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        world = compose("evaluate")
        demo = compose("evaluate", overrides=["experiment=hairclipv2_demo"])
        e4e = compose("train", overrides=["experiment=e4e_world"])
    assert world.embedded == "world" and world.editing.parser_kind == "world" and world.generator.size == 64
    assert not world.editing.random_weights and world.editing.sketch_weights.endswith("weights/world/sketch_proxy.pt")
    assert demo.embedded == "astronaut" and demo.editing.random_weights
    assert e4e.model.loss.w_lambda > 0 and e4e.model.stylegan_weights.endswith("weights/world/generator.pt")
    assert "experiment=e4e_world" in (ROOT / "Makefile").read_text()


def test_the_world_fs_encoder_is_small_and_trained_in_the_world_editors_fs_space():
    from hairclipv2.models.encoders import SketchEncoder

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=world_fs_encoder"])
        editing = compose("evaluate", overrides=["experiment=hairclipv2_world"]).editing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = instantiate(cfg.model).fs
    assert (fs.hairstyle_block, fs.resume_with_skip) == (editing.hairstyle_block, editing.resume_with_skip)
    assert isinstance(fs.encoder, SketchEncoder) and fs.encoder.input_nc == 3 and fs.input_size == 64
    assert fs.feature_shape == (96, 16, 16) and sum(p.numel() for p in fs.parameters()) < 4_000_000


@pytest.mark.parametrize(
    "experiment", [name for name, entry in EXPERIMENTS.items() if entry == "train" and "ffhq" not in name]
)
def test_every_training_run_can_resume_with_weights_only(experiment, tmp_path):
    """What a checkpoint stores of the model's and the data's hyperparameters loads with
    torch.load(weights_only=True), as Lightning reads last.ckpt to resume: no OmegaConf containers."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, model = instantiate(cfg.data), instantiate(cfg.model)
    torch.save({"model": dict(model.hparams), "data": dict(data.hparams)}, tmp_path / "hparams.pt")
    stored = torch.load(tmp_path / "hparams.pt", weights_only=True)
    assert set(stored["model"]) == set(model.hparams) and set(stored["data"]) == set(data.hparams)


def e4e_demo(*overrides: str):
    """conf/train.yaml with experiment=e4e_demo (a 32 px encoder input) and the overrides."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["experiment=e4e_demo", "model.encoder.input_size=32", *overrides])


def test_hydra_builds_the_module_optimisers_callbacks_and_loggers(tmp_path):
    cfg = e4e_demo(f"paths.output_dir={tmp_path}", "logger=csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = instantiate(cfg.model)
    assert isinstance(module.optimizer, partial) and module.optimizer.func.__name__ == "Ranger"
    assert module.optimizer.keywords["lr"] == 1e-3 and module.discriminator_optimizer.keywords["lr"] == 2e-5
    encoder_opt, disc_opt = module.configure_optimizers()
    assert {id(p) for g in encoder_opt.param_groups for p in g["params"]} == {
        id(p) for p in module.model.encoder.parameters()
    }
    assert type(disc_opt).__name__ == "Adam"
    names = sorted(type(c).__name__ for c in instantiate_group(cfg.callbacks))
    assert names == [
        "ImageGridCallback",
        "LastCheckpoint",
        "LearningRateMonitor",
        "ModelCheckpoint",
        "OfficialExport",
        "RequeueOnSignal",
        "ResumedLogs",
        "SafeExceptionCheckpoint",
        "TQDMProgressBar",
    ]
    assert [type(logger).__name__ for logger in instantiate_group(cfg.logger)] == ["AppendingCSVLogger"]
    cfg = e4e_demo(
        "+model.scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 1, gamma: 0.5}"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = instantiate(cfg.model)
    optimisers, schedulers = module.configure_optimizers()
    assert schedulers[0]["interval"] == "step" and type(schedulers[0]["scheduler"]).__name__ == "StepLR"
