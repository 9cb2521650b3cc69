"""Every command of the README and of the documentation site at least parses: Hydra entry points
compose with their overrides, argparse commands accept their arguments, make targets and scripts
exist, `python -c` code compiles. And the configuration reference is the one conf/ gives."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_FENCES = ("", "bash", "sh", "shell", "console")
COMMAND = re.compile(r"^(\w+=\S+ )*(python|make|bash|mkdocs)\b")


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines of shell code blocks: fenced (no language or a shell) and
    indented by four spaces (not a list item or a table)."""
    lines, fence, found = text.split("\n"), None, []
    for number, line in enumerate(lines, 1):
        if fence is not None:
            if line.strip().startswith("```"):
                fence = None
            elif fence in SHELL_FENCES:
                found.append((number, line.strip()))
            continue
        opened = re.match(r"^\s*```(\w*)", line)
        if opened:
            fence = opened.group(1)
        elif line.startswith("    ") and not line.lstrip().startswith(("-", "|", "*")):
            found.append((number, line.strip()))
    return found


def documented_commands() -> list[tuple[str, str]]:
    """(page:line, command) of every command in a code block, continuation lines joined."""
    commands = []
    for page in PAGES:
        if page.name == "configuration.md":  # generated from conf/, YAML only
            continue
        pending = ""
        for number, line in code_lines(page.read_text()):
            line = pending + line
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if COMMAND.match(line):
                commands.append((f"{page.relative_to(ROOT)}:{number}", line))
    return commands


def arguments(command: str) -> list[str]:
    """The words of a command without comments, environment assignments, `...` (the rest as
    before) and `[optional]` parts (a usage line)."""
    command = re.sub(r"\[[^\]]*\]", "", command)
    words = shlex.split(command, comments=True)
    while words and re.match(r"^\w+=", words[0]):
        words.pop(0)
    return [w for w in words if w != "..."]


def first_choice(override: str) -> str:
    """A sweep's `key=a,b` as `key=a` (compose takes one value)."""
    key, _, value = override.partition("=")
    if "," in value and not value.startswith(("[", "{", "'", '"')):
        return f"{key}={value.split(',')[0]}"
    return override


def check_hydra(config: str, args: list[str]) -> None:
    overrides = [first_choice(a) for a in args if a not in ("-m", "--multirun")]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        compose(config, overrides=overrides, return_hydra_config=True)


def check_module(module: str, args: list[str]) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"no module {module}"
    loaded = importlib.import_module(module)
    if hasattr(loaded, "parse_args"):
        loaded.parse_args(args)  # argparse: SystemExit(2) on a wrong argument


def check(command: str) -> None:
    words = arguments(command)
    tool, args = words[0], words[1:]
    if tool == "make":
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
        assert set(args) <= targets, f"no make target {set(args) - targets}"
    elif tool == "bash":
        assert (ROOT / args[0]).is_file(), f"no script {args[0]}"
    elif tool == "mkdocs":
        assert args[0] in ("build", "serve")
    elif args[0] == "-c":
        compile(args[1], "<documented python -c>", "exec")
    elif args[0] == "-m":
        check_module(args[1], args[2:])
    elif args[0] in ("train.py", "evaluate.py"):
        check_hydra(Path(args[0]).stem, args[1:])
    else:
        assert (ROOT / args[0]).is_file(), f"no script {args[0]}"


COMMANDS = documented_commands()


def test_the_readme_starts_with_the_guide():
    readme = (ROOT / "README.md").read_text().split("\n")
    assert len(readme) <= 220
    first_edit = next(i for i, line in enumerate(readme, 1) if "python -m hairclipv2.edit" in line)
    assert first_edit <= 60
    assert len(COMMANDS) >= 40  # the extraction finds the documented commands


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where, command):
    try:
        check(command)
    except SystemExit as exc:
        raise AssertionError(f"{where}: {command}\nargparse refused it (exit {exc.code})") from None


@pytest.mark.parametrize(
    "command",
    [
        "python train.py experiment=e4e_nosuch",
        "python evaluate.py task=hair_text nosuch.key=1",
        "python -m hairclipv2.edit photo.jpg --text bob --nosuch",
        "make nosuch",
        "python scripts/nosuch.py",
    ],
)
def test_a_wrong_command_is_caught(command):
    from hydra.errors import HydraException

    with pytest.raises((AssertionError, SystemExit, HydraException)):
        check(command)


def test_the_configuration_reference_is_up_to_date():
    sys.path.insert(0, str(ROOT / "scripts"))
    import config_reference

    assert config_reference.main(["--check"]) == 0, "run: python scripts/config_reference.py"
    page = config_reference.PAGE.read_text()
    for option in (ROOT / "conf").rglob("*.yaml"):  # every group option has its section
        if option.parent != ROOT / "conf":
            group = option.relative_to(ROOT / "conf").parts[0]
            name = option.relative_to(ROOT / "conf" / group).with_suffix("").as_posix()
            assert f"#### `{group}={name}`" in page
