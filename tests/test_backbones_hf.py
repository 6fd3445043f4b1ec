"""``hf:`` backbones: tiny random ``transformers`` models saved locally (nothing downloads).

Layers listed with depths, capture checked against the model's own hidden states and pooler,
preprocessing read from the saved image processor, extraction to a cache and a probe run on it,
and the one-line errors (missing folder, offline hub id, --pretrained, missing extra).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="hf: backbones need the optional 'transformers' (layerprobe[hf])"
)

from layerprobe.backbones import load  # noqa: E402
from layerprobe.backbones.factory import RandomWeightsWarning  # noqa: E402
from layerprobe.cli import main  # noqa: E402
from tests.helpers_cli import layerprobe_shell  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)


def _save(folder: Path, model_class, config, processor=None) -> Path:
    """A seeded random ``model_class(config)`` and ``processor`` written with save_pretrained."""
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


def _square() -> dict:
    return {"height": 32, "width": 32}


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models written with save_pretrained (image processors beside most)."""
    T = transformers
    root = tmp_path_factory.mktemp("hf")
    crop = T.BitImageProcessor(size={"shortest_edge": 40}, crop_size=_square(), do_center_crop=True)
    torch.manual_seed(0)
    clip_config = T.CLIPConfig(
        vision_config=TINY,
        text_config=dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=64,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
        ),
        projection_dim=16,
    )
    swin_config = T.SwinConfig(
        image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
    )
    convnext_config = T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    models = {  # name: (model class, its config, the image processor saved beside it)
        "dinov2": (T.Dinov2Model, T.Dinov2Config(**TINY), crop),
        "dinov2-reg": (
            T.Dinov2WithRegistersModel,
            T.Dinov2WithRegistersConfig(**TINY, num_register_tokens=4),
            crop,
        ),
        "vit": (T.ViTModel, T.ViTConfig(**TINY), T.ViTImageProcessor(size=_square())),
        "clip": (
            T.CLIPModel,
            clip_config,
            T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=_square()),
        ),
        "convnext": (
            T.ConvNextModel,
            convnext_config,
            T.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.8),
        ),
        "siglip": (
            T.SiglipVisionModel,
            T.SiglipVisionConfig(**TINY),
            T.SiglipImageProcessor(size=_square()),
        ),
        "swin": (T.SwinModel, swin_config, T.ViTImageProcessor(size=_square())),
    }
    return {name: _save(root / name, *entry) for name, entry in models.items()}


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.strip().splitlines()[2:]}


@pytest.mark.parametrize(
    "name, layers, kind",
    [
        ("dinov2", ["embeddings", "blocks.0", "blocks.1", "pre_logits"], "cls"),
        ("dinov2-reg", ["embeddings", "blocks.0", "blocks.1", "pre_logits"], "cls"),
        ("vit", ["embeddings", "blocks.0", "blocks.1", "pre_logits"], "cls"),
        ("clip", ["embeddings", "blocks.0", "blocks.1", "pre_logits"], "cls"),
        ("convnext", ["embeddings", "stages.0", "stages.1", "pre_logits"], "gap"),
        ("siglip", ["embeddings", "blocks.0", "blocks.1", "pre_logits"], "mean"),
        ("swin", ["embeddings", "stages.0", "stages.1", "pre_logits"], "mean"),
    ],
)
def test_layers_lists_every_hidden_state_with_depths(hf_models, capsys, name, layers, kind):
    assert main(["layers", f"hf:{hf_models[name]}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"hf:{hf_models[name]}  input 32px  key {name}-")
    rows = _rows(out)
    assert list(rows) == layers
    assert [float(r[1]) for r in rows.values()] == pytest.approx([0, 1 / 3, 2 / 3, 1], abs=1e-3)
    assert rows[layers[1]][-2] == kind


def test_capture_matches_hidden_states_and_pooler(hf_models, images):
    """Every probe point is the model's own hidden state; the mean leaves out the class and the
    register tokens; pre_logits under auto is the model's pooler output (class token)."""
    for name, prefix in (("dinov2", 1), ("dinov2-reg", 5), ("vit", 1)):
        bb = load(f"hf:{hf_models[name]}")
        assert [p.prefix_tokens for p in bb.probe_points] == [prefix] * 4
        out = bb.model(images, output_hidden_states=True)
        mean = bb.capture(images, "all", "mean")
        cls = bb.capture(images, "all", "cls")
        for layer, hidden in zip(
            ["embeddings", "blocks.0", "blocks.1"], out.hidden_states, strict=True
        ):
            torch.testing.assert_close(mean[layer], hidden[:, prefix:].mean(1))
            torch.testing.assert_close(cls[layer], hidden[:, 0])
        torch.testing.assert_close(cls["pre_logits"], out.last_hidden_state[:, 0])
    dino = load(f"hf:{hf_models['dinov2-reg']}")
    pooled = dino.capture(images, "pre_logits")["pre_logits"]
    torch.testing.assert_close(pooled, dino.model(images).pooler_output)


def test_clip_convnext_siglip_pre_logits_is_the_pooler_output(hf_models, images):
    clip = load(f"hf:{hf_models['clip']}")
    assert type(clip.model).__name__.startswith("CLIPVision")  # the text tower is left out
    assert not any("text" in name for name, _ in clip.model.named_modules())
    full = transformers.CLIPModel.from_pretrained(hf_models["clip"]).eval()
    with torch.no_grad():
        own = full.vision_model(images, output_hidden_states=True)
    feats = clip.capture(images, "all")
    torch.testing.assert_close(feats["pre_logits"], own.pooler_output)
    torch.testing.assert_close(feats["blocks.1"], own.hidden_states[2][:, 0])
    convnext = load(f"hf:{hf_models['convnext']}")
    with torch.no_grad():
        own = convnext.model(images, output_hidden_states=True)
    feats = convnext.capture(images, "all")
    torch.testing.assert_close(feats["pre_logits"], own.pooler_output)
    torch.testing.assert_close(feats["stages.1"], own.hidden_states[2].mean(dim=(2, 3)))
    siglip = load(f"hf:{hf_models['siglip']}")  # no class token: its attention pool is pre_logits
    with torch.no_grad():
        own = siglip.model(images, output_hidden_states=True)
    feats = siglip.capture(images, "all")
    torch.testing.assert_close(feats["pre_logits"], own.pooler_output)
    torch.testing.assert_close(feats["blocks.0"], own.hidden_states[1].mean(1))


def test_preprocessing_comes_from_the_image_processor(hf_models):
    dino = load(f"hf:{hf_models['dinov2']}").preprocess
    assert (dino.input_size, dino.resize_size, dino.resize) == (32, 40, "crop")
    assert dino.mean == pytest.approx(transformers.BitImageProcessor().image_mean)
    vit = load(f"hf:{hf_models['vit']}").preprocess
    assert (vit.input_size, vit.resize_size, vit.resize) == (32, 32, "squash")
    assert vit.mean == (0.5, 0.5, 0.5) and vit.interpolation == "bilinear"
    convnext = load(f"hf:{hf_models['convnext']}").preprocess
    assert (convnext.input_size, convnext.resize_size, convnext.resize) == (32, 40, "crop")
    clip = load(f"hf:{hf_models['clip']}").preprocess
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert clip.interpolation == "bicubic"


def test_extract_then_probe_on_an_hf_model(hf_models, split_folder, tmp_path, capsys):
    cache, results = tmp_path / "cache", tmp_path / "results"
    model = f"hf:{hf_models['dinov2-reg']}"
    args = ["extract", "--model", model, "--task", f"folder:{split_folder}"]
    assert main([*args, "--cache", str(cache), "--pool", "cls+mean", "--quiet"]) == 0
    files = sorted(cache.rglob("*.h5"))
    assert [f.stem for f in files] == ["test", "train", "val"]
    with h5py.File(files[1]) as f:
        assert bool(f.attrs["complete"]) and f.attrs["model"] == model
        assert list(f.attrs["layers"]) == ["embeddings", "blocks.0", "blocks.1", "pre_logits"]
        assert f["features/blocks.1"].shape == (18, 64)  # 3 classes x 6, cls + patch mean
    probe = ["probe", "--cache", str(cache), "--results", str(results), "--quiet"]
    assert main([*probe, "--shots", "1,5", "--seeds", "1", "--l2", "1,2**10"]) == 0
    capsys.readouterr()
    table = pd.concat(pd.read_parquet(p) for p in sorted(results.rglob("*.parquet")))
    assert set(table.layer) == {"embeddings", "blocks.0", "blocks.1", "pre_logits"}
    assert sorted(set(table.depth)) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert set(table.shots) == {1, 5} and table.test_accuracy.between(0, 1).all()


def test_config_only_folder_is_random_and_says_so(hf_models, tmp_path, images):
    folder = tmp_path / "vit-config-only"
    transformers.ViTConfig(**TINY).save_pretrained(folder)
    with pytest.warns(UserWarning) as caught:
        bb = load(f"hf:{folder}")
    messages = [str(w.message) for w in caught]
    assert sum("random weights" in m for m in messages) == 1
    assert any(issubclass(w.category, RandomWeightsWarning) for w in caught)
    assert any("no image processor saved" in m for m in messages)  # config's size, ImageNet norm
    assert bb.preprocess.input_size == 32 and bb.preprocess.resize == "squash"
    with pytest.warns(UserWarning, match="no image processor") as again:  # random: said once
        assert bb.weights_sha256 == load(f"hf:{folder}").weights_sha256  # a seeded init
    assert not any("random weights" in str(w.message) for w in again)
    assert bb.capture(images, "pre_logits")["pre_logits"].shape == (3, 32)


def test_model_args_override_the_config(hf_models, capsys):
    path = f"hf:{hf_models['vit']}"
    assert main(["layers", path, "--model-arg", "layer_norm_eps=0.001"]) == 0
    capsys.readouterr()
    assert main(["layers", path, "--model-arg", "layer_norm_epss=0.001"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no setting 'layer_norm_epss'" in err
    assert "layer_norm_eps" in err.split("Did you mean")[1]


def test_bad_hf_input_is_one_line(hf_models, tmp_path, capsys, monkeypatch):
    cases = [
        (["layers", f"hf:{tmp_path / 'nowhere'}"], "is not a folder"),
        (["layers", f"hf:{tmp_path}"], "no config.json"),
        (["layers", f"hf:{hf_models['vit']}", "--pretrained"], "--pretrained does not apply"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    assert main(["layers", f"hf:{hf_models['vit']}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'layerprobe[hf]'" in err


def test_hub_id_offline_fails_in_seconds_with_one_line(tmp_path):
    """A hub id that is not in the (empty) cache, with HF_HUB_OFFLINE set: exit 2, one line."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "1",
    }
    start = time.monotonic()
    proc = layerprobe_shell("layers", "hf:no-such-org/no-such-model", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "HF_HUB_OFFLINE" in err and "Traceback" not in err
    assert time.monotonic() - start < 120  # the import of transformers dominates; no retries


def test_weights_missing_from_the_checkpoint_are_named(hf_models, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "dinov2-partial"
    shutil.copytree(hf_models["dinov2"], folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    del state["layernorm.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"1 weights are not in the checkpoint.*layernorm\.weight"):
        bb = load(f"hf:{folder}")
    assert bb.probe_points[-1].module == "layernorm"
