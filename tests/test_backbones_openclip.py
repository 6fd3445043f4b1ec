"""``open_clip:`` backbones on tiny architectures built without weights (nothing downloads).

A tiny ViT and a tiny ModifiedResNet, registered by name with open_clip's model-config
mechanism and also given as ``local-dir:`` folders: layers with depths, capture checked
against the tower's own forward pass, the preprocessing open_clip would use, extraction and a
probe run, and the one-line errors (unknown architecture or tag, --pretrained, missing extra).
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import h5py
import pandas as pd
import pytest
import torch

open_clip = pytest.importorskip(
    "open_clip",
    reason="open_clip: backbones need the optional 'open_clip_torch' (layerprobe[openclip])",
)

from layerprobe.backbones import load  # noqa: E402
from layerprobe.backbones.factory import RandomWeightsWarning  # noqa: E402
from layerprobe.cli import main  # noqa: E402

TEXT = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
VISION = {
    "lp-tiny-vit": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "lp-tiny-rn": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
}
PREPROCESS = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "interpolation": "bilinear"}


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, Path]:
    """Both tiny architectures as open_clip configs (registered by name) and local-dir folders."""
    root = tmp_path_factory.mktemp("open_clip")
    folders = {}
    for name, vision in VISION.items():
        model_cfg = {"embed_dim": 16, "vision_cfg": vision, "text_cfg": TEXT}
        (root / f"{name}.json").write_text(json.dumps(model_cfg))
        open_clip.add_model_config(root / f"{name}.json")
        folder = root / name
        folder.mkdir()
        config = {"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS}
        (folder / "open_clip_config.json").write_text(json.dumps(config))
        folders[name] = folder
    return folders


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.strip().splitlines()[2:]}


def test_vit_layers_and_capture_match_the_tower(configs, capsys, images):
    assert main(["layers", "open_clip:lp-tiny-vit"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == ["patch_embed", "blocks.0", "blocks.1", "pre_logits"]
    assert [float(r[1]) for r in rows.values()] == pytest.approx([0, 1 / 3, 2 / 3, 1], abs=1e-3)
    assert rows["blocks.0"][2:] == ["tokens", "(B,", "17,", "32)", "cls", "32"]
    bb = load("open_clip:lp-tiny-vit")
    visual = bb.model
    with torch.no_grad():
        embedding = visual(images)  # the tower's own output: the pooled class token, projected
        blocks = visual.forward_intermediates(images, intermediates_only=True, output_fmt="NLC")
    feats = bb.capture(images, "all", "mean")
    torch.testing.assert_close(
        bb.capture(images, "pre_logits")["pre_logits"] @ visual.proj, embedding
    )
    for i, tokens in enumerate(
        blocks["image_intermediates"]
    ):  # patch tokens, class token split off
        torch.testing.assert_close(feats[f"blocks.{i}"], tokens.mean(1))


def test_resnet_layers_and_the_attention_pool(configs, capsys, images):
    assert main(["layers", f"open_clip:local-dir:{configs['lp-tiny-rn']}"]) == 0
    rows = _rows(capsys.readouterr().out)
    names = ["stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0", "pre_logits"]
    assert list(rows) == names
    assert [float(r[1]) for r in rows.values()] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1])
    assert rows["pre_logits"][2:] == ["vector", "(B,", "16)", "identity", "16"]
    bb = load(f"open_clip:local-dir:{configs['lp-tiny-rn']}")
    with torch.no_grad():
        torch.testing.assert_close(bb.capture(images, "pre_logits")["pre_logits"], bb.model(images))
        own = bb.model.layer4(
            bb.model.layer3(bb.model.layer2(bb.model.layer1(bb.model.stem(images))))
        )
    torch.testing.assert_close(bb.capture(images, "layer4.0")["layer4.0"], own.mean(dim=(2, 3)))


def test_preprocessing_follows_open_clip(configs):
    pre = load(f"open_clip:local-dir:{configs['lp-tiny-vit']}").preprocess
    assert (pre.input_size, pre.resize_size, pre.resize) == (32, 32, "crop")  # 'shortest'
    assert pre.mean == pytest.approx(PREPROCESS["mean"]) and pre.std == pytest.approx(
        PREPROCESS["std"]
    )
    assert pre.interpolation == "bilinear"
    named = load("open_clip:lp-tiny-vit").preprocess  # open_clip's defaults: OpenAI's mean/std
    assert named.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    bigger = load("open_clip:lp-tiny-vit", image_size=48)  # built at 48 px (force_image_size)
    assert bigger.preprocess.input_size == 48
    assert bigger.probe_points[1].shape == (37, 32)  # 6 x 6 patches + the class token


def test_random_weights_are_said_once_and_seeded(configs, tmp_path):
    folder = tmp_path / "fresh"  # a spec no other test has loaded: the notice is once per spec
    shutil.copytree(configs["lp-tiny-vit"], folder)
    spec = f"open_clip:local-dir:{folder}"
    with pytest.warns(RandomWeightsWarning, match="random weights.*pretrained=TAG"):
        first = load(spec, model_args={"force_quick_gelu": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)  # said once per process
        second = load(spec, model_args={"force_quick_gelu": True})
    assert first.weights_sha256 == second.weights_sha256


def test_extract_then_probe_on_an_open_clip_tower(configs, split_folder, tmp_path, capsys):
    cache, results = tmp_path / "cache", tmp_path / "results"
    args = ["extract", "--model", f"open_clip:local-dir:{configs['lp-tiny-rn']}"]
    assert main([*args, "--task", f"folder:{split_folder}", "--cache", str(cache), "--quiet"]) == 0
    files = sorted(cache.rglob("*.h5"))
    assert [f.stem for f in files] == ["test", "train", "val"]
    with h5py.File(files[1]) as f:
        assert bool(f.attrs["complete"]) and list(f.attrs["layers"])[-1] == "pre_logits"
        assert f["features/pre_logits"].shape == (18, 16)
    probe = ["probe", "--cache", str(cache), "--results", str(results), "--quiet"]
    assert main([*probe, "--shots", "1,5", "--seeds", "1", "--l2", "1,2**10"]) == 0
    capsys.readouterr()
    table = pd.concat(pd.read_parquet(p) for p in sorted(results.rglob("*.parquet")))
    assert len(set(table.layer)) == 6 and table.depth.max() == 1.0
    assert table.test_accuracy.between(0, 1).all()


def test_bad_open_clip_input_is_one_line(configs, capsys, monkeypatch, tmp_path):
    cases = [
        (["layers", "open_clip:ViT-B-3"], "unknown open_clip architecture 'ViT-B-3'"),
        (["layers", "open_clip:RN50", "--model-arg", "pretrained=nope"], "its tags: openai"),
        (["layers", "open_clip:RN50", "--pretrained"], "--model-arg pretrained=TAG (tags: openai"),
        (["layers", f"open_clip:local-dir:{tmp_path}"], "no open_clip_config.json"),
        (["layers", "open_clip:ViT-B-3", "--pretrained"], "unknown open_clip architecture"),
        (["layers", f"open_clip:local-dir:{tmp_path}", "--pretrained"], "does not apply"),
        (["layers", "open_clip:lp-tiny-vit", "--model-arg", "depth=3"], "does not accept"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if not installed
    assert main(["layers", "open_clip:lp-tiny-vit"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'layerprobe[openclip]'" in err
