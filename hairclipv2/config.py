"""Checked settings: the dataclass configs built from Hydra mappings with typed, named errors, and the
run-folder resolver.

A wrong setting stops the run before anything is built: `ConfigError` names the key, what it expects
and what it found; the entry points print it and exit with status 2, without a traceback.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A setting of the wrong type or out of range (names the key, expected and found)."""


def plain(values: Any) -> Any:
    """OmegaConf containers as plain dicts and lists (so checkpoints stay loadable with weights_only)."""
    if isinstance(values, (DictConfig, ListConfig)):
        return OmegaConf.to_container(values, resolve=True)
    return values


def _check(value: Any, kind: Any, key: str) -> Any:
    """`value` as `kind` (int, float, bool, str, tuple[...], a union with None), or ConfigError."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, found {value!r}")
        args = typing.get_args(kind)
        items = args * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise ConfigError(f"{key}: expected {len(items)} values, found {value!r}")
        return tuple(_check(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{key}: expected {kind.__name__}, found {value!r}")


def build(cls: type, values: Mapping[str, Any] | None, key: str) -> Any:
    """An instance of the dataclass `cls` from a mapping, every field checked against its annotation;
    unknown keys, wrong types, negative counts and negative loss weights (`*_lambda`) are ConfigErrors
    naming `key.field`. Fields named `steps` or `*_steps` must be at least 1 (0 would silently skip an
    optimisation)."""
    values = dict(plain(values) or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{key}: unknown keys {unknown}; expected some of {sorted(known)}")
    checked = {}
    for name, value in values.items():
        full = f"{key}.{name}"
        checked[name] = v = _check(value, hints[name], full)
        if isinstance(v, int) and not isinstance(v, bool):
            least = 1 if name == "steps" or name.endswith("_steps") else 0
            if v < least:
                raise ConfigError(f"{full}: expected an integer >= {least}, found {v}")
        if isinstance(v, float) and (name.endswith("_lambda") or name == "lambda") and v < 0:
            raise ConfigError(f"{full}: a loss weight must be >= 0 (a negative one rewards the error), found {v}")
    return cls(**checked)


def positive_int(value: Any, key: str, allow: tuple[int, ...] = ()) -> int:
    """A whole number >= 1 (or one of `allow`, e.g. -1 for "no limit"), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or (value < 1 and value not in allow):
        extra = f" (or {', '.join(map(str, allow))})" if allow else ""
        raise ConfigError(f"{key}: expected an integer >= 1{extra}, found {value!r}")
    return value


def instantiate_group(group: Any) -> list[Any]:
    """The objects of a callbacks / logger group (lightning-hydra-template's instantiators): every
    entry with a `_target_`; entries set to null are left out."""
    from hydra.utils import instantiate

    if not group:
        return []
    if not isinstance(group, (Mapping, DictConfig)):
        raise ConfigError(f"a callbacks / logger group must be a mapping of configs, found {type(group).__name__}")
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


def unique_run_dir(path: str) -> str:
    """`path`, or `path_1`, `path_2`, ... : the first that did not exist, created here (atomically), so
    that two runs started in the same second never share a folder."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = base if n == 0 else base.with_name(f"{base.name}_{n}")
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            continue
    raise ConfigError(f"hydra.run.dir: no free run folder next to {base}")


def run_dir(resume: str | None, path: str) -> str:
    """The run folder: `resume` (an earlier run's folder, continued in place) or a new unique one."""
    if resume:
        if not Path(resume).is_dir():
            raise ConfigError(f"resume_dir: expected an earlier run's folder, found {resume!r} (no such folder)")
        return str(resume)
    return unique_run_dir(path)


def register_resolvers() -> None:
    """`${run_dir:RESUME,PATH}` for the Hydra run folders (idempotent)."""
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", run_dir)


def config_tree(cfg: DictConfig, first: tuple[str, ...] = ("tags", "data", "model", "trainer")) -> str:
    """The composed config as lightning-hydra-template prints it: one branch per top-level key
    (`first` at the top, then the others in order), each as YAML; resolved where it can be."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("CONFIG", guide_style="dim")
    keys = [k for k in first if k in cfg] + [k for k in cfg if k not in first and k != "hydra"]
    for key in keys:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
            text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else str(value)
        except Exception:  # a resolver that needs the running Hydra app: shown unresolved
            text = OmegaConf.to_yaml(cfg[key]) if isinstance(cfg[key], (DictConfig, ListConfig)) else str(cfg[key])
        tree.add(key).add(Syntax(text.rstrip(), "yaml", background_color="default"))
    console = Console(width=110, record=True, force_terminal=False, color_system=None)
    with console.capture() as captured:
        console.print(tree)
    return captured.get()


def show_config(cfg: DictConfig, out_dir: str | Path) -> None:
    """Print the config tree (`extras.print_config`) and keep it in <run>/config_tree.log, and the
    run's tags in <run>/tags.log."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = config_tree(cfg)
    (out / "config_tree.log").write_text(text)
    (out / "tags.log").write_text("\n".join(str(t) for t in cfg.get("tags") or []) + "\n")
    if cfg.get("extras", {}).get("print_config", True):
        from .run_log import say

        say(text.rstrip("\n"))
