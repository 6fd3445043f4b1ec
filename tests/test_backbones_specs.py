"""Model specs, builders, preprocessing, and the errors bad input gives."""

from __future__ import annotations

import pickle
import urllib.error

import pytest
import torch
from PIL import Image

from layerprobe.backbones import Preprocess, load, parse_spec
from layerprobe.errors import ConfigError, EnvironmentProblem, UnknownNameError
from tests.helpers_models import TINY_VIT, TINY_VIT_KWARGS

CONVNET = "python:tests.helpers_models:tiny_convnet"


# ----------------------------------------------------------------------------- specs
def test_parse_spec_namespaces(tmp_path):
    assert str(parse_spec("vit_small_patch16_224")) == "timm:vit_small_patch16_224"
    assert str(parse_spec("timm:resnet50.a1_in1k")) == "timm:resnet50.a1_in1k"
    assert str(parse_spec(" torchvision:resnet18 ")) == "torchvision:resnet18"
    assert str(parse_spec("python:pkg.mod:make")) == "python:pkg.mod:make"
    ckpt = tmp_path / "run.safetensors"
    assert str(parse_spec(str(ckpt))) == f"layerprobe:{ckpt}"
    assert parse_spec(f"layerprobe:{ckpt}").readable == "run"
    assert parse_spec("python:pkg.mod:make").readable == "make"


def test_unknown_namespace_suggests():
    with pytest.raises(UnknownNameError, match="unknown model namespace 'tim'.*Did you mean: timm"):
        parse_spec("tim:resnet18")
    with pytest.raises(ConfigError, match="package.module:factory"):
        parse_spec("python:no_factory")


def test_unknown_models_suggest_close_names():
    with pytest.raises(UnknownNameError, match="unknown timm model.*vit_small_patch16_224"):
        load("vit_smal_patch16_224")
    with pytest.raises(UnknownNameError, match="unknown torchvision.*resnet18"):
        load("torchvision:resnet_18")


def test_python_spec_errors():
    with pytest.raises(UnknownNameError, match="cannot import 'tests.no_such_module'"):
        load("python:tests.no_such_module:make")
    with pytest.raises(UnknownNameError, match="no callable 'tiny_convnett'.*tiny_convnet"):
        load("python:tests.helpers_models:tiny_convnett")
    with pytest.raises(ConfigError, match="returned a int, not a torch.nn.Module"):
        load("python:tests.helpers_models:not_a_module")
    with pytest.raises(
        ConfigError, match="takes no argument .depth.*parameters: num_classes, width"
    ):
        load(CONVNET, model_args=dict(depth=3))
    with pytest.raises(ConfigError, match="needs a timm or torchvision model"):
        load(CONVNET, pretrained=True)


def test_bad_timm_kwargs():
    with pytest.raises(ConfigError, match="does not accept these arguments"):
        load("resnet18", model_args=dict(not_an_argument=1))


def test_model_failing_at_the_image_size():
    bb = load("python:tests.helpers_models:flat_mlp", image_size=64)
    with pytest.raises(ConfigError, match=r"fails on a \(1, 3, 64, 64\) input.*--image-size"):
        _ = bb.probe_points


# ----------------------------------------------------------------------------- pretrained
def test_pretrained_without_network_fails_fast_with_one_line(monkeypatch):
    import socket
    import time

    def unreachable(address, timeout=None):
        time.sleep(0.1)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(
        EnvironmentProblem, match="cannot reach huggingface.co.*HF_HUB_OFFLINE=1"
    ) as err:
        load("resnet18", pretrained=True)
    assert time.perf_counter() - start < 10 and "\n" not in str(err.value)
    with pytest.raises(EnvironmentProblem, match="cannot reach download.pytorch.org"):
        load("torchvision:resnet18", pretrained=True)


def test_pretrained_without_network_timm(monkeypatch):
    import timm.models._builder as builder

    from layerprobe.backbones import builders

    monkeypatch.setattr(builders, "require_network", lambda *args: None)  # reachable, then fails
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub and the file is not cached")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(builder, "load_state_dict_from_url", offline)
    with pytest.raises(
        EnvironmentProblem,
        match="could not download pretrained weights for timm:resnet18.*--checkpoint",
    ):
        load("resnet18", pretrained=True)


def test_pretrained_without_network_torchvision(monkeypatch):
    import torchvision.models._api as api

    from layerprobe.backbones import builders

    monkeypatch.setattr(builders, "require_network", lambda *args: None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(EnvironmentProblem, match="torchvision:resnet18.*URLError"):
        load("torchvision:resnet18", pretrained=True)


# ----------------------------------------------------------------------------- python models
def test_python_factory_with_model_args():
    bb = load(CONVNET, image_size=32, model_args=dict(width=4))
    assert [p.name for p in bb.probe_points] == ["stem", "block1", "block2", "pool", "pre_logits"]
    assert bb.pooled_widths("all") == {
        "stem": 4,
        "block1": 8,
        "block2": 16,
        "pool": 16,
        "pre_logits": 16,
    }
    assert bb.model_kwargs == {"width": 4}
    assert bb.preprocess.mean == (0.485, 0.456, 0.406)  # ImageNet defaults
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = bb.model.flatten(
            bb.model.pool(bb.model.block2(bb.model.block1(bb.model.stem(x))))
        )
    torch.testing.assert_close(bb.capture(x, "pre_logits")["pre_logits"], expected)


# ----------------------------------------------------------------------------- preprocessing
def test_timm_preprocess_follows_model_config():
    bb = load("vit_tiny_patch16_224")  # timm's own config: 224, crop_pct 0.9, bicubic, mean 0.5
    pre = bb.preprocess
    assert (pre.input_size, pre.resize_size, pre.interpolation) == (224, 248, "bicubic")
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)


def test_image_size_overrides_and_builds_timm_at_that_size():
    bb = load(
        TINY_VIT,
        image_size=48,
        model_args=dict(**{k: v for k, v in TINY_VIT_KWARGS.items() if k != "img_size"}),
    )
    assert bb.preprocess.input_size == 48 and bb.preprocess.resize_size == round(48 / 0.9)
    assert bb.probe_points[1].shape == (1 + 12 * 12, 48)  # the model itself was built at 48 px
    resnet = load("resnet18", image_size=32)  # takes no img_size: only preprocessing changes
    assert resnet.preprocess.input_size == 32 and resnet.probe_points[0].shape == (64, 16, 16)


def test_torchvision_preprocess_from_weights_metadata():
    pre = load("torchvision:resnet18").preprocess
    assert (pre.input_size, pre.resize_size, pre.interpolation) == (224, 256, "bilinear")
    assert pre.mean == (0.485, 0.456, 0.406)


def test_mean_std_override_and_transform():
    bb = load(CONVNET, image_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    pre = bb.preprocess
    assert (pre.input_size, pre.resize_size) == (16, round(16 / 0.875))
    image = Image.new("RGB", (40, 30), color=(255, 128, 0))
    out = pre.transform()(image)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 8, 8], torch.tensor([2.0, (128 / 255 - 0.5) / 0.25, -2.0]))
    assert pre.transform()(image.convert("L")).shape == (3, 16, 16)  # grey images become RGB
    assert Preprocess.from_dict(pre.to_dict()) == pre
    assert pickle.loads(pickle.dumps(pre.transform()))(image).shape == (
        3,
        16,
        16,
    )  # DataLoader workers


def test_bad_preprocess_values():
    with pytest.raises(ConfigError, match="three numbers"):
        load(CONVNET, image_size=32, mean=(0.5, 0.5))
    with pytest.raises(ConfigError, match="std must be positive"):
        load(CONVNET, image_size=32, std=(0.5, 0, 0.5))
    with pytest.raises(ConfigError, match="image size must be a positive integer"):
        load(CONVNET, image_size=0)


def test_python_model_keeps_its_own_input_size():
    assert load("python:tests.helpers_models:tiny_mixer").preprocess.input_size == 32
    assert load("python:tests.helpers_models:tiny_torchvision_vit").preprocess.input_size == 32
    assert load(CONVNET).preprocess.input_size == 224  # no size of its own: the default


def test_pretrained_and_checkpoint_together(tmp_path):
    with pytest.raises(ConfigError, match="pick one source of weights"):
        load("resnet18", tmp_path / "w.pt", pretrained=True)


def test_unknown_pretrained_tag_suggests_real_tags():
    with pytest.raises(UnknownNameError, match="unknown pretrained tag.*augreg_in21k_ft_in1k"):
        load("vit_tiny_patch16_224.augreg_in21k_ft_in1kk")
    tagged = load("vit_tiny_patch16_224.augreg_in21k", model_args=TINY_VIT_KWARGS)
    assert tagged.spec == "timm:vit_tiny_patch16_224.augreg_in21k"


def _photo(seed: int = 0) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (300, 260, 3), generator=gen, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_transform_equals_timms_own_eval_transform():
    from timm.data import create_transform, resolve_model_data_config

    bb = load("vit_tiny_patch16_224")
    theirs = create_transform(**resolve_model_data_config(bb.model), is_training=False)
    torch.testing.assert_close(bb.preprocess.transform()(_photo()), theirs(_photo()))


def test_transform_equals_torchvisions_weights_transform():
    import torchvision

    theirs = torchvision.models.get_model_weights("resnet18").DEFAULT.transforms()
    ours = load("torchvision:resnet18").preprocess.transform()
    torch.testing.assert_close(ours(_photo()), theirs(_photo()), atol=1e-5, rtol=0)
