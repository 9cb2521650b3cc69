"""Write docs/reference/configuration.md from conf/: every entry point, group, option and key, with
the comments the YAML files carry (they are the documentation of each key).

    python scripts/config_reference.py            # rewrite the page
    python scripts/config_reference.py --check    # exit 1 when the page is out of date (a test runs it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PAGE = ROOT / "docs" / "reference" / "configuration.md"
ENTRY_POINTS = {"train.yaml": "python train.py", "evaluate.yaml": "python evaluate.py"}

HEADER = """# Configuration reference

Generated from `conf/` by `python scripts/config_reference.py` (a test fails when this page and
`conf/` disagree). Every key is shown with the comment its YAML file carries. Choose a group's option
on the command line (`python train.py data=world`), set a key (`model.optimizer.lr=1e-4`), or print
the composed config of a command with `--cfg job` (`python train.py experiment=e4e_demo --cfg job`).
"""


def first_comment(text: str) -> str:
    """The file's leading comment lines (its description), joined."""
    lines = []
    for line in text.splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def yaml_block(text: str) -> str:
    body = "\n".join(line for line in text.rstrip().splitlines() if not line.startswith("# @package"))
    return f"```yaml\n{body}\n```\n"


def page() -> str:
    parts = [HEADER]
    parts.append("## Entry points\n")
    for name, command in ENTRY_POINTS.items():
        text = (CONF / name).read_text()
        parts.append(f"### `{command}` (`conf/{name}`)\n")
        parts.append(yaml_block(text))
    parts.append("## Groups\n")
    for group in sorted(p for p in CONF.iterdir() if p.is_dir()):
        parts.append(f"### {group.name}\n")
        for option in sorted(group.rglob("*.yaml")):
            name = option.relative_to(group).with_suffix("").as_posix()
            text = option.read_text()
            about = first_comment(text)
            parts.append(f"#### `{group.name}={name}`\n")
            if about:
                parts.append(f"{about}\n")
            parts.append(yaml_block(text))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the page is out of date, write nothing")
    args = p.parse_args(argv)
    text = page()
    if args.check:
        current = PAGE.read_text() if PAGE.is_file() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    tmp = PAGE.with_name(f".{PAGE.name}.tmp")
    tmp.write_text(text)
    tmp.replace(PAGE)
    print(PAGE.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
