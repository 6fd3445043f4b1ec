"""Write docs/cli.md, the reference of every command, from the parsers themselves.

The reference cannot drift from the CLI: ``tests/test_docs.py`` regenerates it and compares.
Run ``python docs/make_cli_reference.py`` after changing an option.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

OUT = Path(__file__).with_name("cli.md")
WIDTH = "100"  # argparse wraps help to $COLUMNS; a fixed width makes the file reproducible


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _sections(parser: argparse.ArgumentParser, path: str, level: int) -> list[str]:
    text = parser.format_help().rstrip()
    out = [f"{'#' * level} `{path}`", "", "```text", text, "```", ""]
    for name, child in _subcommands(parser).items():
        out += _sections(child, f"{path} {name}", level + 1)
    return out


def reference() -> str:
    """The Markdown reference of every command, as the parsers print their ``--help``."""
    os.environ["COLUMNS"] = WIDTH
    from layerprobe.cli import build_parser

    head = [
        "# Command-line reference",
        "",
        "Generated from the parsers by `python docs/make_cli_reference.py`; do not edit by hand.",
        "Examples of use: [usage.md](usage.md).",
        "",
    ]
    return "\n".join(head + _sections(build_parser(), "layerprobe", 2)).rstrip() + "\n"


if __name__ == "__main__":
    OUT.write_text(reference())
    print(f"wrote {OUT}", file=sys.stderr)
