"""Config fields as command-line options: one default, one choice list, one help line."""

from __future__ import annotations

import argparse
import doctest
from dataclasses import dataclass

import pytest

import layerprobe.options as options
from layerprobe.errors import ConfigError
from layerprobe.options import add_options, check_choices, from_args, option


@dataclass
class Demo:
    seeds: int = option(3, help="draws", type=int, metavar="N")
    device: str = option("auto", help="where to run", choices=("auto", "cpu", "cuda"))
    shots: list = option(
        default_factory=lambda: [1, 5], help="shots", type=lambda t: [int(x) for x in t.split(",")]
    )
    force: bool = option(False, help="again")
    secret: str = option("x", help="api only", cli=False)

    def __post_init__(self):
        check_choices(self)


def _parser():
    parser = argparse.ArgumentParser(prog="demo")
    add_options(parser, Demo)
    return parser


def test_an_option_not_given_takes_the_configs_default():
    assert from_args(Demo, _parser().parse_args([])) == Demo()
    built = from_args(Demo, _parser().parse_args(["--seeds", "7", "--shots", "2,3", "--force"]))
    assert (built.seeds, built.shots, built.force, built.device) == (7, [2, 3], True, "auto")


def test_help_shows_the_fields_default_and_hides_api_only_fields():
    text = _parser().format_help()
    assert "(default 3)" in text and "(default 1,5)" in text and "--secret" not in text


def test_choices_hold_for_the_cli_and_for_python(capsys):
    with pytest.raises(SystemExit) as err:
        _parser().parse_args(["--device", "gpu"])
    assert err.value.code == 2
    with pytest.raises(ConfigError, match="device 'gpu' is not one of auto, cpu, cuda"):
        Demo(device="gpu")


def test_the_module_example_runs():
    assert doctest.testmod(options).failed == 0
