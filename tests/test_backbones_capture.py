"""Captured, pooled features equal an independent computation; capture stops early."""

from __future__ import annotations

import pytest
import torch

from layerprobe.backbones import load
from layerprobe.errors import ConfigError, UnknownNameError
from tests.helpers_models import TINY_VIT, TINY_VIT_KWARGS

ATOL = 1e-5


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)


# ----------------------------------------------------------------------------- ViT
def test_vit_probe_points_names_depths_kinds(tiny_vit):
    points = tiny_vit.probe_points
    assert [p.name for p in points] == [
        "patch_embed",
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "pre_logits",
    ]
    assert [p.depth for p in points] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p.kind for p in points] == ["tokens", "tokens", "tokens", "tokens", "vector"]
    assert points[1].shape == (65, 48)  # 8 x 8 patches + class token


@pytest.mark.parametrize("pool", ["auto", "cls", "mean", "cls+mean"])
def test_vit_blocks_match_forward_intermediates(tiny_vit, images, pool):
    model = tiny_vit.model
    with torch.no_grad():
        maps = model.forward_intermediates(
            images, return_prefix_tokens=True, intermediates_only=True
        )
        expected_pre_logits = model.forward_head(model.forward_features(images), pre_logits=True)
    feats = tiny_vit.capture(images, "all", pool=pool)
    for i, (spatial, prefix) in enumerate(maps):
        cls, mean = (
            prefix[:, 0],
            spatial.flatten(2).mean(dim=2),
        )  # NCHW patch grid -> mean over patches
        want = {"auto": cls, "cls": cls, "mean": mean, "cls+mean": torch.cat([cls, mean], dim=1)}[
            pool
        ]
        _close(feats[f"blocks.{i}"], want)
    _close(feats["pre_logits"], expected_pre_logits)
    # patch_embed has no class token yet: every pooling falls back to the patch mean there.
    with torch.no_grad():
        _close(feats["patch_embed"], model.patch_embed(images).mean(dim=1))


def test_vit_register_tokens_excluded_from_mean(images):
    bb = load(TINY_VIT, model_args=dict(reg_tokens=2, global_pool="avg", **TINY_VIT_KWARGS))
    assert bb.probe_points[1].prefix_tokens == 3  # class + 2 registers
    with torch.no_grad():
        maps = bb.model.forward_intermediates(
            images, return_prefix_tokens=True, intermediates_only=True
        )
        pre = bb.model.forward_head(bb.model.forward_features(images), pre_logits=True)
    feats = bb.capture(images, "all")  # auto = the head's 'avg': mean of patch tokens only
    for i, (spatial, _) in enumerate(maps):
        _close(feats[f"blocks.{i}"], spatial.flatten(2).mean(dim=2))
    _close(feats["pre_logits"], pre)
    assert bb.layer_pooling("blocks.0", "auto") == {"blocks.0": "mean"}


def test_vit_without_class_token_rejects_cls(images):
    bb = load(TINY_VIT, model_args=dict(class_token=False, global_pool="avg", **TINY_VIT_KWARGS))
    with pytest.raises(ConfigError, match="no class token"):
        bb.capture(images, "all", pool="cls")
    feats = bb.capture(images, "blocks.0", pool="auto")
    assert feats["blocks.0"].shape == (3, 48)


def test_capture_returns_float32_in_depth_order(tiny_vit, images):
    feats = tiny_vit.capture(images, ["pre_logits", "blocks.1", "patch_embed"])
    assert list(feats) == ["patch_embed", "blocks.1", "pre_logits"]
    assert all(v.dtype == torch.float32 and v.shape == (3, 48) for v in feats.values())


# ----------------------------------------------------------------------------- Mixer
def test_mixer_matches_forward_intermediates(tiny_mixer, images):
    model = tiny_mixer.model
    assert [p.name for p in tiny_mixer.probe_points] == [
        "stem",
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "pre_logits",
    ]
    with torch.no_grad():
        maps = model.forward_intermediates(images, intermediates_only=True)
        pre = model.forward_head(model.forward_features(images), pre_logits=True)
        stem = model.stem(images).mean(dim=1)
    feats = tiny_mixer.capture(images, "all")  # auto = mean (no class token)
    for i, spatial in enumerate(maps):
        _close(feats[f"blocks.{i}"], spatial.flatten(2).mean(dim=2))
    _close(feats["stem"], stem)
    _close(feats["pre_logits"], pre)


def test_mixer_has_no_class_token(tiny_mixer, images):
    with pytest.raises(ConfigError, match="no class token"):
        tiny_mixer.capture(images, "all", pool="cls")
    with pytest.raises(ConfigError, match="no class token"):
        tiny_mixer.pooled_widths("all", "cls+mean")


# ----------------------------------------------------------------------------- ResNet
def test_resnet_matches_forward_intermediates(tiny_resnet, images):
    model = tiny_resnet.model
    names = [p.name for p in tiny_resnet.probe_points]
    assert names == ["stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0", "pre_logits"]
    with torch.no_grad():
        maps = model.forward_intermediates(images, intermediates_only=True)  # stem, then 4 stages
        pre = model.forward_head(model.forward_features(images), pre_logits=True)
    feats = tiny_resnet.capture(images, "all", pool="gap")
    for name, fmap in zip(
        names[:-1], maps, strict=True
    ):  # one block per stage: block = stage output
        _close(feats[name], fmap.mean(dim=(2, 3)))
    _close(feats["pre_logits"], pre)


def test_torchvision_resnet_blocks_and_pre_logits():
    bb = load("torchvision:resnet18", image_size=32)
    names = [p.name for p in bb.probe_points]
    assert names[0] == "stem" and names[-1] == "pre_logits"
    assert names[1:-1] == [f"layer{s}.{b}" for s in (1, 2, 3, 4) for b in (0, 1)]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    seen = {}
    handles = [
        bb.model.layer3.register_forward_hook(lambda m, i, o: seen.setdefault("layer3.1", o)),
        bb.model.avgpool.register_forward_hook(lambda m, i, o: seen.setdefault("pool", o)),
    ]
    with torch.no_grad():
        bb.model(x)
    for h in handles:
        h.remove()
    feats = bb.capture(x, ["layer3.1", "pre_logits"])
    _close(feats["layer3.1"], seen["layer3.1"].mean(dim=(2, 3)))
    _close(feats["pre_logits"], seen["pool"].flatten(1))


def test_torchvision_vit_names_and_cls_pre_logits():
    bb = load("python:tests.helpers_models:tiny_torchvision_vit", image_size=32)
    assert [p.name for p in bb.probe_points] == [
        "patch_embed",
        "blocks.0",
        "blocks.1",
        "pre_logits",
    ]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    m = bb.model
    with torch.no_grad():  # torchvision's own forward, unrolled
        tokens = m._process_input(x)
        tokens = torch.cat([m.class_token.expand(2, -1, -1), tokens], dim=1)
        enc = m.encoder.ln(m.encoder.layers(m.encoder.dropout(tokens + m.encoder.pos_embedding)))
        after_block0 = m.encoder.layers[0](m.encoder.dropout(tokens + m.encoder.pos_embedding))
    feats = bb.capture(x, "all", pool="cls+mean")
    _close(feats["pre_logits"], enc[:, 0])
    _close(feats["blocks.0"], torch.cat([after_block0[:, 0], after_block0[:, 1:].mean(1)], dim=1))


# ----------------------------------------------------------------------------- early stop
def test_capture_does_no_work_past_the_deepest_layer(tiny_vit, images):
    calls = []
    handles = [
        tiny_vit.model.blocks[2].register_forward_pre_hook(lambda m, a: calls.append("blocks.2")),
        tiny_vit.model.head.register_forward_pre_hook(lambda m, a: calls.append("head")),
        tiny_vit.model.head.register_forward_hook(lambda m, a, o: calls.append("head output")),
        tiny_vit.model.norm.register_forward_pre_hook(lambda m, a: calls.append("norm")),
    ]
    try:
        tiny_vit.capture(images, ["patch_embed", "blocks.1"])
        assert calls == []  # blocks.2, the final norm and the head never ran
        tiny_vit.capture(images, ["pre_logits"])
        assert calls == ["blocks.2", "norm"]  # everything up to the head, not the head itself
    finally:
        for h in handles:
            h.remove()


def test_capture_is_one_forward_pass(tiny_vit, images):
    calls = []
    handle = tiny_vit.model.patch_embed.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        tiny_vit.capture(images, "all")
    finally:
        handle.remove()
    assert calls == [1]


def test_capture_leaves_no_hooks_behind(tiny_vit, images):
    tiny_vit.capture(images, "all")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny_vit.model.modules())


# ----------------------------------------------------------------------------- widths, select
@pytest.mark.parametrize("pool", ["auto", "cls", "mean", "cls+mean", "gap"])
def test_pooled_widths_match_capture(tiny_vit, images, pool):
    feats = tiny_vit.capture(images, "all", pool)
    assert tiny_vit.pooled_widths("all", pool) == {k: v.shape[1] for k, v in feats.items()}


def test_resnet_widths(tiny_resnet):
    assert tiny_resnet.pooled_widths("all", "auto") == {
        "stem": 64,
        "layer1.0": 64,
        "layer2.0": 128,
        "layer3.0": 256,
        "layer4.0": 512,
        "pre_logits": 512,
    }


def test_select_globs_names_and_modules(tiny_vit, tiny_resnet):
    assert [p.name for p in tiny_vit.select("blocks.*")] == ["blocks.0", "blocks.1", "blocks.2"]
    assert [p.name for p in tiny_resnet.select("layer*.*")] == [
        "layer1.0",
        "layer2.0",
        "layer3.0",
        "layer4.0",
    ]
    picked = tiny_vit.select("pre_logits,blocks.1.attn,blocks.0")
    assert [p.name for p in picked] == ["blocks.0", "blocks.1.attn", "pre_logits"]
    assert (
        picked[1].depth == 0.25
    )  # a sub-module sits at the depth of the last probe point before it
    assert picked[1].prefix_tokens == 1 and picked[1].class_token
    assert [p.name for p in tiny_vit.select(["all"])] == [p.name for p in tiny_vit.probe_points]


def test_any_module_can_be_captured(tiny_vit, images):
    seen = {}
    handle = tiny_vit.model.blocks[1].attn.register_forward_hook(
        lambda m, i, o: seen.setdefault("o", o)
    )
    try:
        with torch.no_grad():
            tiny_vit.model(images)
    finally:
        handle.remove()
    feats = tiny_vit.capture(images, ["blocks.1.attn"], pool="mean")
    _close(feats["blocks.1.attn"], seen["o"][:, 1:].mean(dim=1))


def test_unknown_layer_lists_close_names(tiny_vit):
    with pytest.raises(UnknownNameError, match="blocks.1") as err:
        tiny_vit.select("block.1")
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownNameError, match="matches no layer"):
        tiny_vit.select("layer*.*")
    with pytest.raises(ConfigError, match="unknown pooling"):
        tiny_vit.capture(torch.zeros(1, 3, 32, 32), "all", pool="max")


# ----------------------------------------------------------------------------- model key
def test_model_key_stable_and_sensitive(tiny_vit):
    again = load(TINY_VIT, model_args=TINY_VIT_KWARGS)  # seeded init: same weights, same key
    assert again.weights_sha256 == tiny_vit.weights_sha256
    assert again.model_key("auto") == tiny_vit.model_key("auto")
    assert tiny_vit.model_key("auto") == tiny_vit.model_key("cls")  # auto is cls for this ViT
    assert tiny_vit.model_key("mean") != tiny_vit.model_key("cls")
    assert tiny_vit.model_key().startswith("vit_tiny_patch16_224-")
    with torch.no_grad():
        again.model.blocks[0].mlp.fc1.weight[0, 0] += 1.0
    assert again.model_key() != tiny_vit.model_key()
    bigger = load(
        TINY_VIT,
        image_size=64,
        model_args=dict(**{k: v for k, v in TINY_VIT_KWARGS.items() if k != "img_size"}),
    )
    assert bigger.preprocess.input_size == 64 and bigger.model_key() != tiny_vit.model_key()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_capture_on_cuda_matches_cpu(images):
    bb = load(TINY_VIT, model_args=TINY_VIT_KWARGS)
    on_cpu = bb.capture(images, "all", "cls+mean")
    on_gpu = bb.capture(images.cuda(), "all", "cls+mean")  # the model follows the input's device
    for name, feats in on_gpu.items():
        assert feats.device.type == "cuda"
        torch.testing.assert_close(feats.cpu(), on_cpu[name], atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- other families
def test_deit_distilled_pre_logits_averages_class_and_distillation_tokens(images):
    bb = load("deit_tiny_distilled_patch16_224", model_args=TINY_VIT_KWARGS)
    with torch.no_grad():
        pre = bb.model.forward_head(bb.model.forward_features(images), pre_logits=True)
        maps = bb.model.forward_intermediates(
            images, return_prefix_tokens=True, intermediates_only=True
        )
    feats = bb.capture(images, "all")
    _close(feats["pre_logits"], pre)
    _, prefix = maps[1]  # auto follows the head: the class and distillation tokens averaged
    _close(feats["blocks.1"], 0.5 * (prefix[:, 0] + prefix[:, 1]))
    _close(bb.capture(images, "blocks.1", "cls")["blocks.1"], prefix[:, 0])
    assert bb.pooled_widths("all", "cls+mean")["pre_logits"] == 48  # the head's pooling is fixed


def test_timm_family_with_feature_info_uses_its_stages(images):
    bb = load("convnext_atto", image_size=32)
    names = [p.name for p in bb.probe_points]
    assert names == ["stages.0", "stages.1", "stages.2", "stages.3", "pre_logits"]
    with torch.no_grad():
        maps = bb.model.forward_intermediates(images, intermediates_only=True)
        pre = bb.model.forward_head(bb.model.forward_features(images), pre_logits=True)
    feats = bb.capture(images, "all")
    for name, fmap in zip(names[:-1], maps, strict=True):
        _close(feats[name], fmap.mean(dim=(2, 3)))
    _close(feats["pre_logits"], pre)


def test_python_model_depth_follows_the_forward_pass():
    bb = load("python:tests.helpers_models:reordered_net", image_size=16)
    assert [(p.name, p.depth) for p in bb.probe_points] == [
        ("early", 0.0),
        ("late", 0.5),
        ("pre_logits", 1.0),
    ]


def test_conv_layout_from_square_inputs():
    from layerprobe.backbones.families import conv_layout

    assert conv_layout((96, 56, 56), "NHWC") == "NCHW"
    assert conv_layout((56, 56, 96), "NCHW") == "NHWC"
    assert conv_layout((7, 7, 7), "NHWC") == "NHWC"  # ambiguous: the family's own layout


def test_channels_last_maps_are_pooled_over_space(images):
    bb = load("python:tests.helpers_models:tiny_torchvision_swin", image_size=32)
    point = bb.select("features.1")[0]
    assert point.shape == (8, 8, 16) and point.layout == "NHWC"
    seen = {}
    handle = bb.model.features[1].register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
    try:
        with torch.no_grad():
            bb.model(images)
    finally:
        handle.remove()
    feats = bb.capture(images, ["features.1", "pre_logits"])
    _close(feats["features.1"], seen["o"].mean(dim=(1, 2)))
    assert bb.pooled_widths("features.1,pre_logits") == {"features.1": 16, "pre_logits": 32}


def test_headless_model_keeps_pre_logits(images):
    kwargs = {**TINY_VIT_KWARGS, "num_classes": 0}  # timm replaces the head with nn.Identity
    bb = load(TINY_VIT, model_args=kwargs)
    assert bb.probe_points[-1].name == "pre_logits"
    with torch.no_grad():
        expected = bb.model(images)  # a headless timm model returns its pre-logits
    _close(bb.capture(images, "pre_logits")["pre_logits"], expected)
