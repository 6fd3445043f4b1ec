"""The `layerprobe` command: parses arguments and calls the rooms. No logic of its own.

Each sub-command lives in ``layerprobe/commands/<name>.py`` with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``, and is registered in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from layerprobe import __version__
from layerprobe.errors import UserError
from layerprobe.registry import Registry
from layerprobe.runtime.warn import one_line_warnings

# Sub-command name -> its module, in the order `--help` lists them.
COMMANDS: Registry[str] = Registry("command", hint="Run `layerprobe --help` to list them.")
for _name in (
    "layers",
    "extract",
    "tasks",
    "probe",
    "results",
    "scan",
    "fit",
    "report",
    "similarity",
    "pretrain",
    "upstream",
    "finetune",
    "run",
    "status",
    "sweep",
    "demo",
):
    COMMANDS.register(_name, f"layerprobe.commands.{_name}")


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line, like every other user error (sub-parsers inherit this)."""

    def error(self, message: str):
        self.exit(2, f"layerprobe: error: {message}; see `{self.prog} --help`\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``layerprobe`` parser with every sub-command, or with ``only`` that one: a command's
    run then imports its own module alone, not every command's options and their rooms."""
    parser = _Parser(
        prog="layerprobe",
        description="How good is every layer of a vision backbone for every downstream task?",
        epilog="New here? Start with `layerprobe demo --quick` (offline, a few minutes), then "
        "`layerprobe scan MODEL --tasks ...` on your own model and images. "
        "`layerprobe COMMAND --help` tells more.",
    )
    parser.add_argument("--version", action="version", version=f"layerprobe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(COMMANDS.get(name)).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default ``sys.argv[1:]``); returns the exit status. Warnings
    read like the command's other messages: one line each on stderr."""
    with one_line_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `layerprobe probe ...` needs only the probe command's parser; anything else (no command,
    # an unknown one, top-level options) gets them all, for the full help and did-you-mean.
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except UserError as err:
        print(f"layerprobe: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:  # Ctrl-C; SIGTERM where a command turns it into this
        print(f"layerprobe: {str(err) or 'interrupted'}", file=sys.stderr)
        return getattr(err, "exit_code", 130)
    except BrokenPipeError:  # `layerprobe ... | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
