"""`layerprobe layers`: the table it prints, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from layerprobe.cli import main
from tests.limits import HANG

TINY_VIT_ARGS = [
    "vit_tiny_patch16_224",
    "--model-arg",
    "img_size=32",
    "--model-arg",
    "patch_size=4",
    "--model-arg",
    "depth=3",
    "--model-arg",
    "embed_dim=48",
    "--model-arg",
    "num_heads=3",
]


def _table(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    return {line.split()[0]: line.split() for line in lines[2:]}


def test_layers_tiny_vit(capsys):
    assert main(["layers", *TINY_VIT_ARGS]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(
        "timm:vit_tiny_patch16_224  input 32px  key vit_tiny_patch16_224-"
    )
    rows = _table(out)
    assert list(rows) == ["patch_embed", "blocks.0", "blocks.1", "blocks.2", "pre_logits"]
    assert rows["blocks.1"] == ["blocks.1", "0.500", "tokens", "(B,", "65,", "48)", "cls", "48"]
    assert rows["pre_logits"] == ["pre_logits", "1.000", "vector", "(B,", "48)", "identity", "48"]


def test_layers_pool_and_layer_choice(capsys):
    assert main(["layers", *TINY_VIT_ARGS, "--pool", "cls+mean", "--layers", "blocks.*"]) == 0
    rows = _table(capsys.readouterr().out)
    assert list(rows) == ["blocks.0", "blocks.1", "blocks.2"]
    assert all(r[-2:] == ["cls+mean", "96"] for r in rows.values())


def test_layers_python_model_with_model_arg(capsys):
    assert (
        main(
            [
                "layers",
                "python:tests.helpers_models:tiny_convnet",
                "--model-arg",
                "width=4",
                "--image-size",
                "32",
            ]
        )
        == 0
    )
    rows = _table(capsys.readouterr().out)
    assert rows["block2"][-1] == "16" and rows["stem"][-1] == "4"
    assert rows["stem"][3:7] == ["(B,", "4,", "32,", "32)"]


def test_layers_checkpoint_option(tmp_path, capsys):
    import torch

    from layerprobe.backbones import load

    bb = load("python:tests.helpers_models:tiny_convnet", model_args=dict(width=4))
    torch.save({"state_dict": bb.model.state_dict()}, tmp_path / "w.pt")
    argv = [
        "layers",
        "python:tests.helpers_models:tiny_convnet",
        "--image-size",
        "32",
        "--checkpoint",
        str(tmp_path / "w.pt"),
    ]
    assert main([*argv, "--model-arg", "width=4"]) == 0
    assert "tiny_convnet-w-" in capsys.readouterr().out
    assert main([*argv, "--model-arg", "width=8"]) == 2  # weights of width 4 do not fit width 8
    err = capsys.readouterr().err
    assert err.startswith("layerprobe: error: checkpoint") and "shape mismatches" in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["layers", *TINY_VIT_ARGS, "--layers", "blocks.7"], "unknown layer 'blocks.7'"),
        (["layers", "python:tests.helpers_models:tiny_mixer", "--pool", "cls"], "no class token"),
        (
            ["layers", "python:tests.helpers_models:flat_mlp", "--image-size", "16"],
            "fails on a (1, 3, 16, 16)",
        ),
        (["layers", "tim:resnet18"], "unknown model namespace"),
        (["layers", "resnet18", "--checkpoint", "/nonexistent/w.pt"], "does not exist"),
        (["layers", "resnet18", "--image-size", "0"], "image size must be a positive integer"),
    ],
)
def test_layers_bad_input_in_process(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_model_subprocess_exit_2_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "layerprobe", "layers", "vit_smal_patch16_224"],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown timm model 'vit_smal_patch16_224'" in proc.stderr
    assert "vit_small_patch16_224" in proc.stderr  # the suggestion


@pytest.mark.parametrize(
    "model_arg,message",
    [
        ("depth=-1", "cannot be built with"),  # RuntimeError deep inside timm
        ("patch_size=0", "cannot be built with"),  # ZeroDivisionError
    ],
)
def test_bad_model_arg_values_are_one_line_errors(model_arg, message, capsys):
    assert main(["layers", *TINY_VIT_ARGS, "--model-arg", model_arg]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerprobe: error:") and message in err and "\n" not in err


def test_bad_argument_syntax_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["layers", *TINY_VIT_ARGS, "--model-arg", "=3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerprobe: error:") and "no key" in err and "\n" not in err


def test_mean_and_std_are_spelt_as_in_extract(capsys):
    assert main(["layers", *TINY_VIT_ARGS, "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"]) == 0
    with_default = capsys.readouterr().out.splitlines()[0]
    assert main(["layers", *TINY_VIT_ARGS]) == 0
    assert capsys.readouterr().out.splitlines()[0] != with_default  # the model key changed
    assert main(["layers", *TINY_VIT_ARGS, "--mean", "0.5,0.5"]) == 2
    assert "three numbers" in capsys.readouterr().err
