"""The contracts later stages stand on, end to end from the CLI and from Python: model
arguments in their own namespace, one extraction config, one layer selection, image geometry,
the λ policy, and the real flow extract -> probe -> results with pre-training metadata."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import layerprobe.results as results
from layerprobe.backbones import ModelConfig, Preprocess, load, save_checkpoint
from layerprobe.cli import main
from layerprobe.errors import ConfigError
from layerprobe.extract import ExtractConfig, extract, read_info
from layerprobe.layers import match_item
from layerprobe.probe import ProbeConfig, probe_cache
from layerprobe.results.schema import SCHEMA_VERSION
from layerprobe.tasks import get_task
from tests.conftest import TINY_VIT, TINY_VIT_KWARGS
from tests.limits import HANG

CLASHING = "python:tests.helpers_models:clashing_net"
TASK = "builtin/faces"  # 200 images: seconds to extract with a tiny model


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "layerprobe", *args], capture_output=True, text=True, timeout=HANG
    )


# -- 1. model arguments are their own namespace -----------------------------------------------
def test_factory_arguments_named_like_layerprobe_options_reach_the_factory(tmp_path):
    args = ["pretrained=True", "layers=3", "device='cpu'", "dtype='x'", "mean=1.0", "quiet=True"]
    model_args = sum((["--model-arg", a] for a in args), [])
    run = cli(
        "extract",
        "--model",
        CLASHING,
        *model_args,
        "--image-size",
        "16",
        "--task",
        TASK,
        "--split",
        "test",
        "--cache",
        str(tmp_path),
        "--quiet",
    )
    assert run.returncode == 0, run.stderr
    info = read_info(run.stdout.split()[-1])
    assert info.attrs["dtype"] == "float16"  # layerprobe's own dtype was untouched
    given = {
        "pretrained": True,
        "layers": 3,
        "device": "cpu",
        "dtype": "x",
        "mean": 1.0,
        "quiet": True,
    }
    bb = load(CLASHING, model_args=given, image_size=16)
    assert (
        sum(isinstance(m, torch.nn.Conv2d) for m in bb.model) == 3 and bb.model[0].out_channels == 6
    )
    assert info.model_key == bb.model_key()  # the CLI built exactly this model


def test_an_argument_the_factory_does_not_take_names_its_parameters(tmp_path):
    run = cli("layers", CLASHING, "--model-arg", "depth=3")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    err = run.stderr.strip()
    assert "takes no argument 'depth'" in err and "layers, pool, quiet" in err
    assert "\n" not in err


# -- 2. one extraction configuration ----------------------------------------------------------
def test_extract_config_validates_in_one_place():
    assert ExtractConfig().batch_size == 64 and ExtractConfig().resize is None
    with pytest.raises(ConfigError, match="batch size"):
        ExtractConfig(batch_size=10**12)
    with pytest.raises(ConfigError, match="unknown resize mode 'stretch'"):
        ExtractConfig(resize="stretch")
    with pytest.raises(ConfigError, match="Did you mean: batch_size"):
        ExtractConfig.build(None, batchsize=8)


# -- 4. the same layer selection everywhere ----------------------------------------------------
def test_globs_mean_the_same_in_extract_and_probe(tmp_path, capsys):
    names = ["stem", "layer1.0", "layer2.0", "pre_logits"]
    assert match_item("layer*", names) == [] and match_item("layer*.*", names) == names[1:3]
    assert match_item("**", names) == names
    bb = load("python:tests.helpers_models:tiny_resnet", image_size=32)
    assert [p.name for p in bb.select("layer*.*")] == [
        "layer1.0",
        "layer2.0",
        "layer3.0",
        "layer4.0",
    ]
    extract(bb, TASK, cache_dir=tmp_path / "c", layers="layer*.*,pre_logits", quiet=True)
    probe = ["probe", "--cache", str(tmp_path / "c"), "--results", str(tmp_path / "r")]
    probe += ["--shots", "2", "--seeds", "1", "--quiet"]
    code = main([*probe, "--layers", "layer*"])
    assert code == 2 and "has no layer 'layer*'" in capsys.readouterr().err
    code = main([*probe, "--layers", "layer*.*"])
    assert code == 0
    assert sorted(set(results.load(tmp_path / "r").layer)) == [f"layer{i}.0" for i in range(1, 5)]


# -- 5. the paper's image geometry ----------------------------------------------------------
def _wide_image() -> Image.Image:
    """A 3:1 frame, red at the left and right edges (where KITTI's vehicles often are)."""
    pixels = np.zeros((40, 120, 3), np.uint8)
    pixels[:, :20, 0] = pixels[:, -20:, 0] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    ("mode", "red_kept"), [("crop", False), ("squash", True), ("squash-crop", True)]
)
def test_squash_keeps_the_whole_frame_crop_cuts_it(mode, red_kept):
    pre = Preprocess(32, 36, mean=(0, 0, 0), std=(1, 1, 1), resize=mode)
    x = pre.transform()(_wide_image())
    assert x.shape == (3, 32, 32)
    assert bool((x[0] > 0.5).any()) is red_kept


def test_tasks_declare_their_geometry_and_the_cache_records_it(tmp_path):
    assert get_task("vtab1k/kitti_distance").resize == "squash"
    assert get_task("kitti_distance").resize == "squash" and get_task("cifar10").resize is None
    assert get_task(TASK).resize is None
    bb = load(TINY_VIT, model_args=TINY_VIT_KWARGS)
    assert bb.preprocess.resize == "crop"  # timm's crop_mode "center"
    config = ExtractConfig(cache_dir=tmp_path, splits="test", layers="pre_logits", quiet=True)
    (crop,) = extract(bb, TASK, config)
    (squash,) = extract(bb, TASK, ExtractConfig.build(config, resize="squash"))
    assert read_info(crop).model_key != read_info(squash).model_key
    assert read_info(squash).attrs["preprocess"].count('"resize": "squash"') == 1
    assert bb.preprocess.resize == "crop"  # the caller's backbone is left as it was


def test_unknown_resize_is_one_line_exit_2(tmp_path):
    run = cli(
        "extract", "--model", TINY_VIT, "--task", TASK, "--cache", str(tmp_path), "--resize", "fit"
    )
    assert run.returncode == 2 and "invalid choice: 'fit'" in run.stderr
    assert run.stderr.count("\n") == 1


# -- 6. λ policy and 8. the real flow ---------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained_cache(tmp_path_factory):
    """A layerprobe checkpoint with pre-training metadata, extracted by the real extractor."""
    root = tmp_path_factory.mktemp("flow")
    bb = load(TINY_VIT, model_args=TINY_VIT_KWARGS)
    info = {
        "upstream_task": "builtin/upstream",
        "upstream_accuracy": 0.42,
        "params": 12345,
        "data_fraction": 0.5,
        "epochs": 3,
        "head_wd": 0.1,
        "head_lr": 0.003,
    }
    ckpt = save_checkpoint(
        root / "run.pt",
        TINY_VIT,
        bb.model.state_dict(),
        model_kwargs=TINY_VIT_KWARGS,
        pretrain_info=info,
    )
    extract(ModelConfig(str(ckpt)), TASK, cache_dir=root / "cache", quiet=True)
    return root


def test_extract_probe_results_carry_the_pretraining_knobs(pretrained_cache, capsys):
    out = pretrained_cache / "results"
    summary = probe_cache(pretrained_cache / "cache", out, ProbeConfig(shots=[2, 5], seeds=2))
    assert len(summary.written) == 1
    table = results.load(out)
    assert (table.upstream_accuracy == 0.42).all() and (table.params == 12345).all()
    assert (table.upstream_task == "builtin/upstream").all() and (table.head_lr == 0.003).all()
    assert (table.schema_version == SCHEMA_VERSION).all() and set(table.probe) == {"ridge"}
    layers = set(table.layer)
    assert len(table) == len(layers) * 2 * 2 * 30  # layers × shots × seeds × λ
    chosen = table[table.selected]
    assert len(chosen) == len(layers) * 4  # one λ per probe
    assert main(["results", "show", "--results", str(out), "--shots", "5"]) == 0
    shown = capsys.readouterr().out
    best = chosen[chosen.shots == 5].groupby("layer").test_accuracy.mean()
    assert f"{100 * best.max():5.1f}" in shown and "<- best" in shown


def test_fixed_lambda_policy_reproduces_big_vision(pretrained_cache, capsys):
    out = pretrained_cache / "fixed"
    args = [
        "probe",
        "--cache",
        str(pretrained_cache / "cache"),
        "--results",
        str(out),
        "--shots",
        "5",
        "--seeds",
        "1",
        "--quiet",
    ]
    assert main([*args, "--l2-select", "fixed:2**10"]) == 0
    table = results.load(out)
    assert set(table.l2) == {1024.0} and table.selected.all()
    assert set(table.l2_select) == {"fixed:1024"}
    assert main([*args, "--l2-select", "fixed:1024", "--l2", "1,2"]) == 2
    assert "needs λ=1024 in the --l2 grid" in capsys.readouterr().err
    assert main([*args, "--l2-select", "best"]) == 2
    assert "unknown --l2-select 'best'" in capsys.readouterr().err
    val = pd.concat([table, results.load(pretrained_cache / "results")])
    assert val.config.nunique() == 2  # the two policies never share a configuration


def test_weights_key_follows_in_place_changes():
    bb = load(TINY_VIT, model_args=TINY_VIT_KWARGS)
    before = bb.model_key()
    with torch.no_grad():
        bb.model.head.bias += 1.0
    assert bb.model_key() != before
