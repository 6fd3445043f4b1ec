"""`layerprobe probe`'s start-up: a named command imports only what its own parser needs, and
says exactly what the full parser says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from layerprobe.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "pandas", "pyarrow", "h5py", "matplotlib", "scipy", "sklearn", "timm")


def test_probe_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from layerprobe.cli import main\n"
        "try:\n"
        "    main(['probe', '--help'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--cache DIR" in out.stdout  # the probe command's own help was printed
    assert out.stdout.splitlines()[-1] == ""  # and none of the heavy libraries was imported


def _subparser(parser, name):
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


@pytest.fixture(scope="module")
def full_parser():
    return build_parser()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_named_command_gets_the_same_parser_as_the_full_one(name, full_parser):
    alone, full = build_parser(name), full_parser
    action = next(a for a in alone._actions if a.dest == "command")
    assert list(action.choices) == [name]  # only this command's module was asked for
    assert _subparser(alone, name).format_help() == _subparser(full, name).format_help()


@pytest.mark.parametrize(
    "argv", [["probe", "--cache", "x"], ["probe", "--cache", "x", "--results", "y", "--shots", "a"]]
)
def test_bad_arguments_read_the_same_with_one_sub_parser(capsys, argv):
    messages = []
    for parser in (build_parser(), None):  # the full parser, then the CLI's own choice
        with pytest.raises(SystemExit) as exit:
            parser.parse_args(argv) if parser else main(argv)
        assert exit.value.code == 2
        messages.append(capsys.readouterr().err)
    assert messages[0] == messages[1]
    assert messages[1].startswith("layerprobe: error: ")
    assert messages[1].rstrip().endswith("see `layerprobe probe --help`")


def test_an_unknown_command_still_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["prob"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'prob'" in err and "'probe'" in err and "'report'" in err
