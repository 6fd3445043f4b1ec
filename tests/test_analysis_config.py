"""The analysis config builds the fit / report / similarity / results show options."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pandas as pd
import pytest

from layerprobe.analysis import fit_saturation, fit_store, write_report
from layerprobe.analysis.config import (
    AnalysisConfig,
    FitConfig,
    KnobsConfig,
    ReportConfig,
    ShowConfig,
    SimilarityConfig,
)
from layerprobe.analysis.tables import format_fits
from layerprobe.cli import build_parser, main
from layerprobe.errors import ConfigError
from layerprobe.options import KEY, field_default, flag_of, from_args, option_fields
from layerprobe.results.read import read_selected
from layerprobe.results.show import FORMATS as SHOW_FORMATS
from tests.results_data import curve_store

# command path -> (its config, the required options with a value, the fields it does not offer)
COMMANDS = {
    ("fit",): (FitConfig, {"results": "r"}, ()),
    ("report",): (ReportConfig, {"results": "r", "out": "o"}, ("group_by", "max_width")),
    ("similarity",): (SimilarityConfig, {"cache": "c"}, ()),
    ("results", "show"): (ShowConfig, {"results": "r"}, ()),
    ("results", "knobs"): (KnobsConfig, {"results": "r"}, ()),
}


def _subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return curve_store(
        tmp_path_factory.mktemp("anconfig") / "res",
        {"near": (0.9, 1.5, 0.05), "far": (0.6, 2.5, 0.3)},
        n=9,
    )


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_cli_default_is_the_config_fields_default(path):
    config, required, offered_not = COMMANDS[path]
    parser = _subparser(path)
    options = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    # Every option of the command is a field of its config, and every field is an option.
    names = {f.name for f in option_fields(config) if f.name not in offered_not}
    assert set(options) == names
    argv = [x for name, value in required.items() for x in (flag_of(_field(config, name)), value)]
    built = config(**required)
    args = parser.parse_args(argv)
    for f in option_fields(config):
        if f.name in offered_not or f.name in required:
            continue
        # The parser holds no default of its own: the config's applies ...
        assert options[f.name].default is argparse.SUPPRESS
        assert not hasattr(args, f.name)
        assert getattr(built, f.name) == field_default(f)
        # ... and --help shows it.
        shown = f.metadata[KEY]["show_default"]
        if shown is None and field_default(f) not in (None, False, []):
            shown = str(field_default(f))
        if shown:
            assert f"(default {shown})" in options[f.name].help, f.name
    assert vars(args)["run"] is not None

    assert from_args(config, args) == built


def _field(config, name):
    return next(f for f in fields(config) if f.name == name)


def test_the_show_formats_are_the_ones_the_summary_prints():
    assert _field(ShowConfig, "format").metadata[KEY]["choices"] == SHOW_FORMATS


def test_the_same_config_from_python_and_from_the_cli_gives_the_same_fit_json(
    store, tmp_path, capsys
):
    argv = ["--points", "all", "--holdout", "3", "--form", "power", "--shots", "5"]
    assert (
        main(["fit", "--results", str(store), "--format", "json", "--out", str(tmp_path), *argv])
        == 0
    )
    printed = capsys.readouterr().out
    config = AnalysisConfig(points="all", holdout_top=3, form="power", shots=[5])
    fits = fit_store(store, config)
    assert printed == format_fits(fits, "json")
    records = json.loads(printed)
    assert {r["task"] for r in records} == {"near", "far"}
    assert {(r["points"], r["form"], r["holdout"]) for r in records} == {("all", "power", 3)}
    written = pd.read_parquet(tmp_path / "fits.parquet")
    pd.testing.assert_frame_equal(written, fits.reset_index(drop=True))
    # The keyword spelling of the Python API builds the same config.
    table = read_selected(store)
    by_keyword = fit_saturation(table, points="all", holdout_top=3, form="power", shots=[5])
    pd.testing.assert_frame_equal(by_keyword, fit_saturation(table, config))
    # A different config gives a different fit: the options reach the analysis.
    assert format_fits(fit_store(store), "json") != printed


def test_config_checks_hold_for_python_and_the_cli(store, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--holdout 2 is neither"):
        AnalysisConfig(holdout_top=2)
    with pytest.raises(ConfigError, match="form 'logit' is not one of eq1, power"):
        FitConfig(results="r", form="logit")
    with pytest.raises(ConfigError, match="unknown analysis option 'hold_out'.*holdout_top"):
        fit_saturation(pd.DataFrame(), hold_out=3)
    assert main(["fit", "--results", str(store), "--holdout", "2", "--out", str(tmp_path)]) == 2
    assert "--holdout 2 is neither" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="group_by='model' is for `layerprobe fit --group-by`"):
        write_report(store, tmp_path / "report", group_by="model")
    assert not (tmp_path / "report").exists()


def test_required_and_repeatable_options(capsys):
    with pytest.raises(SystemExit) as err:
        _subparser(("fit",)).parse_args([])
    assert err.value.code == 2 and "required: --results" in capsys.readouterr().err
    show = _subparser(("results", "show")).parse_args(
        ["--results", "r", "--task", "a", "--task", "b"]
    )
    similarity = _subparser(("similarity",)).parse_args(["--cache", "c", "--task", "a", "b"])
    assert from_args(ShowConfig, show).task == ["a", "b"]
    assert from_args(SimilarityConfig, similarity).task == ["a", "b"]
    knobs = _subparser(("results", "knobs")).parse_args(
        ["--results", "r", "--knob", "head_lr", "--knob", "head_wd", "--knob", "head_lr"]
    )
    assert from_args(KnobsConfig, knobs).knobs() == ("head_lr", "head_wd")
    assert KnobsConfig(results="r").knobs() == ("head_wd", "head_lr")
    with pytest.raises(ConfigError, match="knob 'head_w' is not one of head_wd, head_lr"):
        KnobsConfig(results="r", knob=["head_lr", "head_w"])


def test_the_module_example_runs():
    import doctest

    import layerprobe.analysis.config as config

    assert doctest.testmod(config).failed == 0
