"""A pre-training checkpoint downstream: extract + probe with its knobs, upstream, finetune."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from layerprobe.backbones import ModelConfig, load
from layerprobe.errors import ConfigError
from layerprobe.extract import ExtractConfig, extract
from layerprobe.extract.cache import read_info, read_upstream
from layerprobe.pretrain import (
    FinetuneConfig,
    PretrainConfig,
    finetune,
    pretrain,
    upstream_accuracy,
)
from layerprobe.probe import ProbeConfig, probe_cache
from layerprobe.results import load as load_results
from tests.helpers_pretrain import CHANCE, lp_home_fixture  # noqa: F401 - fixture

RUN = dict(
    data_fraction=0.2,
    epochs=2,
    batch_size=32,
    lr=5e-3,
    warmup_epochs=0.1,
    head_wd=0.5,
    head_lr_mult=2.0,
    device="cpu",
)
TASK = "builtin/objects-colour"  # 10 classes, 500 train / 200 val / 500 test


@pytest.fixture(scope="module")
def ckpt(lp_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet-run")
    return pretrain(PretrainConfig("resnet-tiny32", **RUN), out, quiet=True)


@pytest.fixture(scope="module")
def probed(ckpt, tmp_path_factory):
    """The checkpoint extracted on TASK and probed at 5 shots."""
    root = tmp_path_factory.mktemp("downstream")
    paths = extract(
        ModelConfig(str(ckpt)), TASK, ExtractConfig(cache_dir=root / "cache", quiet=True)
    )
    probe_cache(root / "cache", root / "results", ProbeConfig(shots=[5], seeds=1))
    return root, paths


def test_tiny_resnet_pretrains_above_chance(ckpt):
    info = load(str(ckpt)).pretrain_info
    assert info["upstream_accuracy"] > 3 * CHANCE, info["upstream_accuracy_per_epoch"]
    assert info["params"] == sum(p.numel() for p in load(str(ckpt)).model.parameters())


def test_checkpoint_knobs_reach_cache_and_results_rows(ckpt, probed):
    root, paths = probed
    info = load(str(ckpt)).pretrain_info
    assert read_info(paths[0]).pretrain["head_wd"] == 0.5
    rows = load_results(root / "results")
    assert len(rows) and (rows["probe"] == "ridge").all()
    expect = {
        "upstream_task": "builtin/upstream",
        "data_fraction": 0.2,
        "epochs": 2.0,
        "head_wd": 0.5,
        "head_lr": 1e-2,
        "params": info["params"],
        "upstream_accuracy": info["upstream_accuracy"],
    }
    for column, value in expect.items():
        assert rows[column].nunique() == 1 and rows[column].iloc[0] == pytest.approx(value), column


def test_upstream_reproduces_the_recorded_accuracy(ckpt, tmp_path, capsys):
    from layerprobe.cli import main

    recorded = load(str(ckpt)).pretrain_info["upstream_accuracy"]
    cache = tmp_path / "cache"
    measured = upstream_accuracy(
        str(ckpt), "builtin/upstream", "val", cache_dir=cache, device="cpu"
    )
    assert abs(measured - recorded) <= 1 / 2400  # one borderline image at most
    key = load(str(ckpt)).model_key("auto")
    record = read_upstream(cache, key)
    assert record["upstream_task"] == "builtin/upstream" and record["split"] == "val"
    assert record["upstream_accuracy"] == measured
    # and from the command line: the same figure, printed
    capsys.readouterr()
    code = main(
        [
            "upstream",
            "--model",
            str(ckpt),
            "--task",
            "builtin/upstream",
            "--cache",
            str(tmp_path / "c2"),
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out.strip()  # labelled: model, task, split, images; 6 decimals
    head, value = out.rsplit(": ", 1)
    n = read_upstream(tmp_path / "c2", key)["n"]
    assert head == f"upstream accuracy of {ckpt} on builtin/upstream (split val, {n} images)"
    assert code == 0 and float(value) == pytest.approx(measured, abs=5e-7)


def test_upstream_record_reaches_probe_rows_of_a_model_without_one(tmp_path, lp_home):
    model = ModelConfig("python:tests.helpers_models:tiny_convnet", image_size=32)
    cache, results = tmp_path / "cache", tmp_path / "results"
    acc = upstream_accuracy(model, TASK, "val", cache_dir=cache, device="cpu")
    extract(model, TASK, ExtractConfig(cache_dir=cache, quiet=True, layers="pre_logits"))
    probe_cache(cache, results, ProbeConfig(shots=[5], seeds=1))
    rows = load_results(results)
    assert (rows["upstream_accuracy"] == acc).all() and (rows["upstream_task"] == TASK).all()


def test_upstream_refuses_a_head_of_other_classes(ckpt):
    with pytest.raises(ConfigError, match="120 outputs but task") as err:
        upstream_accuracy(str(ckpt), TASK, device="cpu")
    assert "\n" not in str(err.value)


def test_finetune_beats_chance_and_sits_beside_probe_rows(ckpt, probed):
    root, _ = probed
    config = FinetuneConfig(epochs=3, batch_size=32, lr_grid=(1e-3, 3e-3), device="cpu")
    part = finetune(str(ckpt), TASK, config, results_dir=root / "results", quiet=True)
    assert part.parent.parent == root / "results"
    rows = load_results(root / "results")
    tuned = rows[rows["probe"] == "finetune"]
    assert len(tuned) == 1 and tuned["test_accuracy"].iloc[0] > 3 * 0.1
    assert tuned["layer"].iloc[0] == "pre_logits" and tuned["depth"].iloc[0] == 1.0
    assert tuned["shots"].iloc[0] == 0 and tuned["selected"].iloc[0]
    assert np.isnan(tuned["l2"].iloc[0]) and tuned["n_train"].iloc[0] == 700
    assert tuned["head_wd"].iloc[0] == 0.5 and tuned["l2_select"].iloc[0] == "val"
    probes = rows[(rows["probe"] == "ridge") & (rows["layer"] == "pre_logits")]
    assert set(tuned["model_key"]) == set(probes["model_key"])
    assert 0 <= tuned["val_accuracy"].iloc[0] <= 1


def test_finetune_cli_bad_input_is_exit_2(ckpt, tmp_path, capsys):
    from layerprobe.cli import main

    for args in (
        ["--task", "builtin/nope"],
        ["--task", TASK, "--epochs", "0"],
        ["--task", TASK, "--lr", "-1"],
    ):
        capsys.readouterr()
        code = main(["finetune", "--model", str(ckpt), "--results", str(tmp_path), *args])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, (args, err)


def test_checkpoint_of_a_newer_format_is_refused(ckpt, tmp_path, capsys):
    from layerprobe.cli import main

    raw = torch.load(ckpt, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, tmp_path / "new.pt")
    code = main(["upstream", "--model", str(tmp_path / "new.pt"), "--task", "builtin/upstream"])
    err = capsys.readouterr().err
    assert code == 2 and "newer" in err and err.count("\n") == 1
    assert json.loads(json.dumps(load(str(ckpt)).pretrain_info))  # JSON-able all through
