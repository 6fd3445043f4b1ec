"""Stage configs build the CLI: one default, one choice list and one help line per option.

For every command whose options are generated from a config (``extract``, ``probe``, ``scan``,
``pretrain``, ``finetune``): each config field offered on the command line is an option of the
command spelt from the field, with the field's help and choices and no default of its own; a
command line without options builds the config's defaults; and a job file with the same values
as a command line builds the same config objects.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from layerprobe.cli import build_parser
from layerprobe.commands._common import extract_config_from_args
from layerprobe.extract.config import ExtractConfig
from layerprobe.jobs import load_job
from layerprobe.jobs.configs import extract_config, finetune_config, probe_configs
from layerprobe.options import KEY, flag_of, from_args, given, help_text, option_fields
from layerprobe.pretrain.config import FinetuneConfig, PretrainConfig
from layerprobe.probe.config import ProbeConfig
from tests.jobs_helpers import CONVNET, L2S, SEEDS, SHOTS, job_text, write_job

MODEL = ["--model", "timm:resnet18"]
# command -> (the arguments it requires, {config: the fields the command itself spells})
GENERATED = {
    "extract": (MODEL + ["--task", "builtin/textures", "--cache", "c"], {ExtractConfig: ()}),
    "probe": (["--cache", "c", "--results", "r"], {ProbeConfig: ()}),
    "scan": (
        ["timm:resnet18", "--tasks", "builtin/*", "--out", "o"],
        {
            ExtractConfig: (),
            ProbeConfig: (
                "l2s",
                "l2_select",
                "layers",
                "backend",
                "device",
                "precision",
                "probe",
                "ks",
            ),
        },
    ),
    "pretrain": (["--model", "vit-ti32", "--out", "o"], {PretrainConfig: ()}),
    "finetune": (MODEL + ["--task", "builtin/textures", "--results", "r"], {FinetuneConfig: ()}),
}


def _command(name: str) -> argparse.ArgumentParser:
    root = build_parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _help(name: str) -> str:
    return " ".join(_command(name).format_help().split())  # argparse wraps lines


def _parse(name: str, extra: list[str] = ()) -> argparse.Namespace:
    return build_parser().parse_args([name, *GENERATED[name][0], *extra])


@pytest.mark.parametrize("name", GENERATED)
def test_every_offered_field_is_an_option_spelt_from_the_field(name):
    actions = {a.dest: a for a in _command(name)._actions}
    configs = GENERATED[name][1]
    offered = {
        (config, f.name)
        for config, not_offered in configs.items()
        for f in option_fields(config)
        if f.metadata[KEY]["cli"] and f.name not in not_offered
    }
    for config in configs:
        for f in option_fields(config):
            if (config, f.name) not in offered:  # absent, or another config's option
                assert f.name not in actions or any(f.name == n for _, n in offered), f.name
                continue
            action = actions[f.name]
            assert flag_of(f) in action.option_strings
            assert action.default is argparse.SUPPRESS  # no second copy of the default
            assert action.help == help_text(f) and f.metadata[KEY]["help"] in action.help
            choices = f.metadata[KEY]["choices"]
            assert (tuple(action.choices) if action.choices else None) == choices


def test_help_shows_the_fields_defaults_and_choices():
    text = _help("probe")
    assert "(default 1,5,10,25)" in text and "few-shot draws per shot count (default 3)" in text
    assert "{auto,cpu,cuda}" in text and "{float64,float32}" in text
    text = _help("extract")
    assert "{crop,squash,squash-crop,border}" in text and "(default 64)" in text
    assert "DataLoader worker processes (default 0)" in text
    text = _help("pretrain")
    assert "upstream task (default builtin/upstream)" in text and "(default --wd)" in text


def test_no_options_build_each_configs_defaults():
    args = _parse("extract")
    assert extract_config_from_args(args, cache_dir="c") == ExtractConfig(cache_dir="c")
    assert ProbeConfig.families(**given(ProbeConfig, _parse("probe"))) == [ProbeConfig()]
    args = _parse("scan")
    assert from_args(ProbeConfig, args, only=("shots", "seeds")) == ProbeConfig()
    assert extract_config_from_args(args, cache_dir="o") == ExtractConfig(cache_dir="o")
    assert PretrainConfig(**given(PretrainConfig, _parse("pretrain"))) == PretrainConfig("vit-ti32")
    assert from_args(FinetuneConfig, _parse("finetune")) == FinetuneConfig()
    for config in (ExtractConfig(), ProbeConfig(), PretrainConfig("m"), FinetuneConfig()):
        assert {f.name for f in fields(config)} == {f.name for f in option_fields(config)}


def test_options_given_reach_the_config():
    args = _parse(
        "probe",
        "--probe ridge,knn --shots 2,1 --seeds 2 --k 3,5 --device cpu --layers a,b".split(),
    )
    ridge, knn = ProbeConfig.families(**given(ProbeConfig, args))
    assert (ridge.probe, knn.probe, ridge.shots, knn.seeds) == ("ridge", "knn", [1, 2], 2)
    assert (knn.ks, ridge.ks, ridge.device, ridge.layers) == ([3, 5], None, "cpu", ["a", "b"])
    args = _parse("pretrain", ["--lr", "0.01", "--snapshots", "1,2", "--device", "cpu"])
    config = PretrainConfig(**given(PretrainConfig, args))
    assert (config.lr, config.snapshots, config.device, config.epochs) == (0.01, (1, 2), "cpu", 7)


def test_bad_choices_exit_2_on_the_cli(capsys):
    for name, flag in [("probe", "--device"), ("extract", "--resize"), ("finetune", "--precision")]:
        with pytest.raises(SystemExit) as err:
            _parse(name, [flag, "nope"])
        assert err.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_a_job_file_and_the_cli_build_the_same_configs(tmp_path):
    tables = (
        '\n[probe]\nprobe = "ridge,knn_weighted"\nshots = [5, 1]\nseeds = 2\nl2s = [0.5, 2.0]\n'
        'ks = [3, 7]\ndevice = "cpu"\n'
        '\n[extract]\nbatch_size = 16\ndtype = "float32"\nresize = "squash"\nlayers = "stem"\n'
        "\n[finetune]\nepochs = 2\nlr = 0.01\nseeds = 2\n"
    )
    text = job_text("same", tmp_path, tasks=("builtin/textures",), models=CONVNET)
    text = text[: text.index("\n[probe]")] + tables
    job = load_job(write_job(tmp_path / "same.toml", text))
    cli = _parse(
        "probe",
        "--probe ridge,knn_weighted --shots 5,1 --seeds 2 --l2 0.5,2 --k 3,7 --device cpu".split(),
    )
    from_job = probe_configs(job)
    assert from_job == ProbeConfig.families(**given(ProbeConfig, cli))
    assert [c.probe for c in from_job] == ["ridge", "knn_weighted"]
    root = ["--data-root", str(job.data_root)] if job.data_root else []
    cli = _parse(
        "extract",
        [
            "--batch-size",
            "16",
            "--dtype",
            "float32",
            "--resize",
            "squash",
            "--layers",
            "stem",
            "-q",
            *root,
        ],
    )
    assert extract_config(job) == extract_config_from_args(cli, cache_dir=job.cache)
    cli = _parse("finetune", ["--epochs", "2", "--lr", "0.01", "--seeds", "2", *root])
    assert finetune_config(job) == from_args(FinetuneConfig, cli)


@pytest.mark.slow
def test_a_job_with_two_families_writes_the_parts_the_cli_writes(tmp_path):
    from layerprobe.cli import main
    from layerprobe.jobs import run_job
    from layerprobe.results import load

    text = job_text("two", tmp_path, tasks=("builtin/textures",), models=CONVNET)
    text = text.replace("\n[probe]\n", '\n[probe]\nprobe = ["ridge", "knn"]\nks = [1, 3]\n')
    report = run_job(write_job(tmp_path / "two.toml", text), quiet=True)
    job = report.plan.job
    by_job = load(job.results)
    assert sorted(set(by_job["probe"])) == ["knn", "ridge"]
    other = tmp_path / "cli"
    args = [
        "probe",
        "--cache",
        str(job.cache),
        "--results",
        str(other),
        "--probe",
        "ridge,knn",
        "--k",
        "1,3",
        "--shots",
        ",".join(map(str, SHOTS)),
        "--seeds",
        str(SEEDS),
        "--l2",
        ",".join(map(str, L2S)),
        "-q",
    ]
    assert main(args) == 0
    parts = sorted(p.name for p in Path(job.results).rglob("*.parquet"))
    assert len(parts) == 2 and parts == sorted(p.name for p in other.rglob("*.parquet"))
    key = ["probe", "layer", "shots", "seed", "l2", "k"]
    cols = key + ["val_accuracy", "test_accuracy", "selected"]
    by_cli = load(other)
    assert (
        by_job.sort_values(key)[cols]
        .reset_index(drop=True)
        .equals(by_cli.sort_values(key)[cols].reset_index(drop=True))
    )
