"""Argument parsers shared by the sub-commands, and the CLI's start-up."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from layerprobe.commands._common import parse_float_list


def test_float_lists_take_powers_in_both_spellings():
    assert parse_float_list("0.5, 2**-1,2^3,,1e-3") == [0.5, 0.5, 8.0, 1e-3]


@pytest.mark.parametrize("text", ["a", "2^^3", "10**400", "(-2)**0.5", "-2**0.5"])
def test_bad_numbers_are_argument_errors_not_tracebacks(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected comma-separated numbers"):
        parse_float_list(text)


def test_help_does_not_import_torch():
    code = "import sys; from layerprobe.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bare_command_prints_the_command_map_and_where_to_start(capsys):
    from layerprobe.cli import main

    assert main([]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert "demo" in out and "scan" in out and "Start with `layerprobe demo --quick`" in out
