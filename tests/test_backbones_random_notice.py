"""A model with random weights says so once on stderr; trained weights say nothing."""

from __future__ import annotations

import warnings

import pytest
import torch

from layerprobe.backbones import factory, load
from layerprobe.backbones.factory import RandomWeightsWarning
from tests.helpers_cli import layerprobe_shell
from tests.helpers_models import TINY_VIT_KWARGS

TINY_ARGS = [arg for k, v in TINY_VIT_KWARGS.items() for arg in ("--model-arg", f"{k}={v}")]


@pytest.fixture(autouse=True)
def fresh_notes(monkeypatch):
    """Each test starts as a new process would: nothing said yet."""
    monkeypatch.setattr(factory, "_NOTED_RANDOM", set())


def test_random_timm_model_warns_once_and_a_checkpoint_does_not(tmp_path):
    with pytest.warns(RandomWeightsWarning, match="timm:vit_tiny_patch16_224 has random weights"):
        bb = load("vit_tiny_patch16_224", model_args=TINY_VIT_KWARGS)
    path = tmp_path / "vit.pt"
    torch.save(bb.model.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        load("vit_tiny_patch16_224", path, model_args=TINY_VIT_KWARGS)  # weights given: silent
        load("vit_tiny_patch16_224", model_args=TINY_VIT_KWARGS)  # said already in this process
        load("python:tests.helpers_models:tiny_convnet", model_args={"width": 4}, image_size=32)


def test_cli_says_it_once_on_stderr():
    proc = layerprobe_shell("layers", "vit_tiny_patch16_224", *TINY_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("has random weights") == 1
    assert "add --pretrained or --checkpoint PATH" in proc.stderr
    assert "blocks.2" in proc.stdout
