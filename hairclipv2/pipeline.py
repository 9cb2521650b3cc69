"""The hair-editing pipeline by folder: `from_pretrained(folder)` builds the HairEditor of the files in
HairCLIPv2's `pretrained_models/` layout (ffhq.pt, seg.pth, bald_proxy.pt, sketch_proxy.pt,
ffhq_PCA.npz) at 1024 px; without a folder, the embedded demo (small generator, random weights).

Both are the configs `conf/experiment/hairclipv2_ffhq.yaml` and `conf/editing/hairclipv2_demo.yaml`
composed with Hydra, so the command line, evaluate.py, the photo command and the browser editor build
the same editor from the same keys; `overrides` are Hydra overrides of conf/evaluate.yaml.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .editing.editor import HairEditor
from .editing.factory import editor_from_config

CONF = Path(__file__).resolve().parents[1] / "conf"
DEMO_WARNING = "RANDOM WEIGHTS (no weights folder): the edit is a meaningless picture; it shows that the pipeline runs"


def editor_config(weights_dir: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """conf/evaluate.yaml composed for the demo editor, or for the official files in `weights_dir`."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from .config import ConfigError, register_resolvers

    register_resolvers()
    base = ["experiment=hairclipv2_ffhq", f"paths.weights_dir={weights_dir}"] if weights_dir else []
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("evaluate", overrides=[*base, *overrides])
    except HydraException as exc:  # an unknown key or a malformed override: one line naming it
        first = str(exc).strip().splitlines()[0]
        cause = f" ({str(exc.__cause__).splitlines()[0]})" if exc.__cause__ else ""
        raise ConfigError(f"{first}{cause}") from None


def from_config(cfg: DictConfig, warning: str = DEMO_WARNING, **parts: Any) -> HairEditor:
    """The editor of a composed config's `editing` group; `parts` replace factory arguments."""
    return editor_from_config(cfg.editing, warning, **parts)


def from_pretrained(
    weights_dir: str | Path | None = None, overrides: Sequence[str] = (), warning: str = DEMO_WARNING, **parts: Any
) -> HairEditor:
    """One call from a weights folder to the editor that owns every part (generator, segmenter, CLIP,
    proxies, encoder). A missing file stops with one error listing each file, its conf key and source."""
    if weights_dir is not None and not Path(weights_dir).expanduser().is_dir():
        raise FileNotFoundError(f"weights folder {weights_dir} does not exist (HairCLIPv2's pretrained_models/)")
    return from_config(editor_config(weights_dir, overrides), warning, **parts)
