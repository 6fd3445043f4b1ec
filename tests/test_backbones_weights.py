"""Weights files in and out: .pt (plain / nested), .safetensors, layerprobe checkpoints."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from layerprobe.backbones import Preprocess, load, read_checkpoint, save_checkpoint
from layerprobe.errors import CheckpointError, ConfigError
from tests.helpers_models import TINY_VIT, TINY_VIT_KWARGS


def _trained_state(seed: int = 7) -> dict[str, torch.Tensor]:
    """Weights unlike the seeded init, as a pretraining run would leave them."""
    bb = load(TINY_VIT, model_args=TINY_VIT_KWARGS)
    gen = torch.Generator().manual_seed(seed)
    return {
        k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in bb.model.state_dict().items()
    }


@pytest.fixture(scope="module")
def state():
    return _trained_state()


def _outputs(bb, x):
    return bb.capture(x, "all")


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "module_prefix", "safetensors"])
def test_weights_round_trip(tmp_path, state, images, layout):
    if layout == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "w.pth"
        obj = {
            "plain": state,
            "state_dict": {"state_dict": state, "epoch": 3},
            "model": {"model": state, "optimizer": {}},
            "module_prefix": {f"module.{k}": v for k, v in state.items()},
        }[layout]
        torch.save(obj, path)
    bb = load(TINY_VIT, path, model_args=TINY_VIT_KWARGS)
    ref = load(TINY_VIT, model_args=TINY_VIT_KWARGS)
    ref.model.load_state_dict(state)
    assert bb.weights_sha256 == ref.weights_sha256
    assert bb.weights_sha256 != load(TINY_VIT, model_args=TINY_VIT_KWARGS).weights_sha256
    for name, feats in _outputs(bb, images).items():
        torch.testing.assert_close(feats, _outputs(ref, images)[name])
    assert bb.model_key().startswith("vit_tiny_patch16_224-w-")


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path, state):
    deeper = {**state, "blocks.3.norm1.weight": torch.ones(48)}
    del deeper["blocks.2.mlp.fc2.bias"]
    deeper["head.weight"] = torch.zeros(5, 48)
    path = tmp_path / "bad.pt"
    torch.save(deeper, path)
    with pytest.raises(CheckpointError) as err:
        load(TINY_VIT, path, model_args=TINY_VIT_KWARGS)
    msg = str(err.value)
    assert "1 missing keys (blocks.2.mlp.fc2.bias)" in msg
    assert "1 unexpected keys (blocks.3.norm1.weight)" in msg
    assert "head.weight: (5, 48) in file vs (10, 48) in model" in msg
    assert "\n" not in msg


def test_mismatch_from_another_architecture(tmp_path):
    other = load("python:tests.helpers_models:tiny_convnet", image_size=32)
    path = tmp_path / "convnet.pt"
    torch.save(other.model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing keys \(cls_token, pos_embed.*more\)"):
        load(TINY_VIT, path, model_args=TINY_VIT_KWARGS)


@pytest.mark.parametrize(
    "content,suffix", [(b"not a checkpoint", ".pt"), (b"\x00garbage", ".safetensors")]
)
def test_unreadable_checkpoint(tmp_path, content, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot read") as err:
        load(TINY_VIT, path, model_args=TINY_VIT_KWARGS)
    assert "weights_only" not in str(err.value)  # torch's unsafe advice is not passed on


def test_missing_and_non_state_dict_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(TINY_VIT, tmp_path / "nope.pt", model_args=TINY_VIT_KWARGS)
    with pytest.raises(CheckpointError, match="is a folder; give the weights file"):
        load(TINY_VIT, tmp_path, model_args=TINY_VIT_KWARGS)
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load(TINY_VIT, path, model_args=TINY_VIT_KWARGS)
    path = tmp_path / "empty.pt"
    torch.save({"epoch": 3, "optimizer": {}}, path)
    with pytest.raises(CheckpointError, match="no state dict found.*epoch, optimizer"):
        load(TINY_VIT, path, model_args=TINY_VIT_KWARGS)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_checkpoint_rebuilds_same_model(tmp_path, state, images, suffix):
    pre = Preprocess(  # a resize that round(32 / crop_pct) would not give: it must be kept
        input_size=32,
        resize_size=48,
        interpolation="bilinear",
        mean=(0.1, 0.2, 0.3),
        std=(0.5, 0.5, 0.5),
        crop_pct=0.8,
    )
    info = {
        "upstream_accuracy": 0.42,
        "data_fraction": 0.1,
        "epochs": 3,
        "head_wd": 1e-4,
        "head_lr": 0.01,
    }
    path = save_checkpoint(
        tmp_path / f"run{suffix}",
        TINY_VIT,
        state,
        model_kwargs=TINY_VIT_KWARGS,
        preprocess=pre,
        pretrain_info=info,
    )
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    bb = load(str(path))  # no extra arguments
    assert bb.spec == f"layerprobe:{path.resolve()}"
    assert bb.arch_spec == TINY_VIT and bb.model_kwargs == TINY_VIT_KWARGS
    assert bb.preprocess == pre and bb.pretrain_info == info
    assert [p.name for p in bb.probe_points][-1] == "pre_logits"
    ref = load(TINY_VIT, model_args=TINY_VIT_KWARGS)
    ref.model.load_state_dict(state)
    assert bb.weights_sha256 == ref.weights_sha256
    with torch.no_grad():
        torch.testing.assert_close(bb.model(images), ref.model(images))
    again = load(f"layerprobe:{path}")
    assert again.model_key() == bb.model_key() and again.model_key().startswith("run-")
    contents = read_checkpoint(path)
    assert contents.spec == TINY_VIT and set(contents.state_dict) == set(state)


def test_checkpoint_without_preprocess_uses_the_architectures(tmp_path, state):
    path = save_checkpoint(
        tmp_path / "plain.safetensors", TINY_VIT, state, model_kwargs=TINY_VIT_KWARGS
    )
    bb = load(path)
    assert bb.preprocess.input_size == 32 and bb.preprocess.mean == (0.5, 0.5, 0.5)  # timm's config
    assert bb.pretrain_info == {}


def test_plain_weights_file_as_model_spec(tmp_path, state):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match="without layerprobe metadata.*--checkpoint"):
        load(str(path))


def test_save_checkpoint_rejects_bad_input(tmp_path, state):
    with pytest.raises(ConfigError, match="JSON"):
        save_checkpoint(tmp_path / "x.pt", TINY_VIT, state, pretrain_info={"f": object()})
    with pytest.raises(ConfigError, match="architecture spec"):
        save_checkpoint(tmp_path / "x.pt", "layerprobe:/some/file.pt", state)
    assert not list(tmp_path.iterdir())
