"""Project-level checks: the environment files agree, the conf generators build, the demo works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from hairclipv2.io import save_image_grid

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_and_pyproject_name_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    extras = project["optional-dependencies"]
    env_text = (ROOT / "environment.yml").read_text()
    env = yaml.safe_load(env_text)
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert {_name(r) for r in pip_list} == {_name(r) for r in deps + extras["dev"]}
    pins = {_name(r): r for r in deps}
    for r in pip_list:  # pinned versions agree too
        if "==" in r:
            assert pins.get(_name(r), r) == r
    # facenet-pytorch cannot be a plain pip dependency (it would downgrade torch): both files and the
    # setup script install it with --no-deps at the same version.
    (facenet,) = extras["facenet"]
    assert f"--no-deps {facenet}" in env_text
    assert f"--no-deps {facenet}" in (ROOT / "scripts" / "setup.sh").read_text()


@pytest.mark.parametrize("name, size, n_latent", [("stylegan2_tiny", 64, 10), ("stylegan2_ffhq", 1024, 18)])
def test_generator_configs_instantiate(name, size, n_latent):
    G = instantiate(OmegaConf.load(ROOT / "conf" / "generator" / f"{name}.yaml"))
    assert (G.size, G.n_latent) == (size, n_latent)


def test_image_grid_layout_and_values(tmp_path):
    rows = torch.full((2, 3, 3, 4, 5), -1.0)
    rows[1, 2] = 1.0
    path = save_image_grid(rows, tmp_path / "sub" / "grid.png", pad=1)
    img = np.asarray(Image.open(path))
    assert img.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    assert (img[1:5, 1:6] == 0).all() and (img[6:10, 13:18] == 255).all()
    assert not list(tmp_path.glob("sub/.*.tmp"))
    with pytest.raises(ValueError, match=r"\(R, C, 3, H, W\)"):
        save_image_grid(torch.zeros(3, 4, 4), tmp_path / "x.png")


def test_saved_pixels_are_truncated_as_hairclipv2_saves_them():
    from hairclipv2.io import to_uint8

    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 0.99, 1.0, 1.5]).view(1, 7, 1).expand(3, 7, 1)
    # 255 * (x + 1) / 2 = 0, 0.1275, 127.5, 191.25, 253.7, 255, 318.75 -> truncated, clipped
    assert to_uint8(x)[:, 0, 0].tolist() == [0, 0, 127, 191, 253, 255, 255]
    assert to_uint8(x, rounding="round")[:, 0, 0].tolist() == [0, 0, 128, 191, 254, 255, 255]


@pytest.mark.slow
def test_demo_shows_split_consistency(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hairclipv2.demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    with_skip = float(re.search(r"with skip\|\s+= (\S+)", out).group(1))
    without = float(re.search(r"without skip\|\s+= (\S+)", out).group(1))
    assert with_skip == 0.0 and without > 0.1
    assert Image.open(tmp_path / "split_generator.png").size == (4 * 66 + 2, 4 * 66 + 2)


def test_known_noise_is_silenced_and_the_runs_own_warnings_are_kept():
    import warnings

    from hairclipv2.quiet import silence_known_noise

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        warnings.warn("`.fit(ckpt_path=None)` was called without a model. The last model ...", stacklevel=1)
        warnings.warn("Found 120 module(s) in eval mode at the start of training. This may ...", stacklevel=1)
        warnings.warn("Using ModelCheckpoint with manual optimization and every_n_train_steps, but ...", stacklevel=1)
        warnings.warn("LPIPS(alex) with a random backbone: the distances are meaningless", stacklevel=1)
    assert [str(w.message) for w in caught] == ["LPIPS(alex) with a random backbone: the distances are meaningless"]


def test_known_log_noise_is_dropped_and_other_lines_pass(caplog):
    import logging

    from hairclipv2.quiet import silence_known_noise

    silence_known_noise()
    silence_known_noise()
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert sum(type(f).__name__ == "_DropMessages" for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing ...")
        logger.info("💡 Tip: For seamless cloud uploads and versioning, try installing ...")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    root, chatty = logging.getLogger(), "/site-packages/open_clip/factory.py"
    with caplog.at_level(logging.INFO):
        caplog.clear()
        for level, path in [(logging.INFO, chatty), (logging.WARNING, chatty), (logging.INFO, "/work/x.py")]:
            root.handle(root.makeRecord("root", level, path, 1, f"{level} {path}", None, None))
    assert [r.getMessage() for r in caplog.records] == [f"{logging.WARNING} {chatty}", f"{logging.INFO} /work/x.py"]


def test_the_run_log_file_gets_lightnings_lines_and_the_closing_lines(tmp_path, capsys):
    """Hydra's <run>/train.log hangs on the root logger, which Lightning's loggers do not reach."""
    import logging

    import pytorch_lightning  # noqa: F401 -- sets its loggers up (INFO, their own stderr handler)

    from hairclipv2.run_log import say, share_run_log

    handler = logging.FileHandler(tmp_path / "train.log")
    root, lightning = logging.getLogger(), logging.getLogger("pytorch_lightning")
    root.addHandler(handler)
    propagate, lightning.propagate = lightning.propagate, False  # as Lightning sets it up
    try:
        share_run_log()
        share_run_log()  # idempotent
        assert logging.getLogger("pytorch_lightning").handlers.count(handler) == 1
        logging.getLogger("pytorch_lightning").info("`Trainer.fit` stopped: `max_steps=2` reached.")
        say("run folder: /x\nbest checkpoint: /x/best.ckpt")
    finally:
        lightning.propagate = propagate
        for name in ("", "pytorch_lightning", "lightning_fabric"):
            logging.getLogger(name).removeHandler(handler)
        handler.close()
    assert capsys.readouterr().out == "run folder: /x\nbest checkpoint: /x/best.ckpt\n"
    logged = (tmp_path / "train.log").read_text().splitlines()
    assert logged == [
        "`Trainer.fit` stopped: `max_steps=2` reached.",
        "run folder: /x",
        "best checkpoint: /x/best.ckpt",
    ]
