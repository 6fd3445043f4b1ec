"""`extract()` end to end on tiny models: features, reuse, layers, splits, bad images, dtype, devices."""

from __future__ import annotations

import io
import sys

import h5py
import numpy as np
import pytest
import torch

from layerprobe.backbones import load
from layerprobe.errors import CacheError, ConfigError, DataError, EnvironmentProblem
from layerprobe.extract import extract, read_arrays, read_info
from layerprobe.tasks.base import open_image
from layerprobe.tasks.registry import get_task
from tests.helpers_models import TINY_VIT_KWARGS

TINY = {
    "vit": ("vit_tiny_patch16_224", TINY_VIT_KWARGS | {"num_classes": 3}),
    "mixer": ("python:tests.helpers_models:tiny_mixer", dict(num_classes=3)),
    "resnet": ("python:tests.helpers_models:tiny_resnet", dict(num_classes=3)),
    "convnet": ("python:tests.helpers_models:tiny_convnet", dict(num_classes=3, width=4)),
}


def tiny(kind: str, **kw):
    torch.manual_seed(0)
    spec, kwargs = TINY[kind]
    return load(spec, image_size=32, model_args=dict(**kwargs, **kw))


@pytest.fixture(scope="module")
def vit():
    return tiny("vit")


# timm ResNet's stem ends at the stride-2 activation (its forward_intermediates' first feature).
STEMS = {"ResNet": "act1"}


# -- an independent computation of the features: forward hooks + the design's pooling rules --------


def reference_features(bb, folder, layers: list[str], pool: str = "auto") -> dict[str, np.ndarray]:
    """Features of every image of ``folder`` (dataset order) from plain forward hooks on the model."""
    model = bb.model.eval()
    split = get_task(f"folder:{folder}").load("all")
    transform = bb.preprocess.transform()
    x = torch.stack([transform(open_image(p)) for p in split.paths])
    outputs, handles = {}, []
    modules = dict(model.named_modules())
    for name in layers:
        if name == "pre_logits":
            continue
        module = modules[STEMS.get(type(model).__name__, name) if name == "stem" else name]
        handles.append(
            module.register_forward_hook(lambda m, i, o, n=name: outputs.__setitem__(n, o))
        )
    with torch.no_grad():
        if hasattr(model, "forward_head"):  # timm: the head's input, pooled by the model itself
            outputs["pre_logits"] = model.forward_head(model.forward_features(x), pre_logits=True)
        else:  # a user model: pre_logits is the input of its last nn.Linear
            last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
            handles.append(
                last.register_forward_pre_hook(lambda m, i: outputs.__setitem__("pre_logits", i[0]))
            )
            model(x)
    for h in handles:
        h.remove()
    return {name: pool_like_the_design(model, name, outputs[name], pool).numpy() for name in layers}


def pool_like_the_design(model, name: str, out: torch.Tensor, pool: str) -> torch.Tensor:
    if out.ndim == 2:  # already a vector
        return out
    if out.ndim == 4:  # conv map (B, C, H, W): global average
        return out.mean(dim=(2, 3))
    prefix = getattr(model, "num_prefix_tokens", 0)
    has_cls = (
        getattr(model, "cls_token", None) is not None
        and out.shape[1] == model.patch_embed.num_patches + prefix
    )
    head_pool = getattr(model, "global_pool", "avg")
    use_cls = has_cls and (pool == "cls" or (pool == "auto" and head_pool == "token"))
    if use_cls:
        return out[:, 0]
    return out[:, prefix if has_cls else 0 :].mean(dim=1)


@pytest.mark.parametrize("kind", list(TINY))
def test_cached_features_equal_an_independent_computation(kind, image_folder, tmp_path):
    bb = tiny(kind)
    (path,) = extract(bb, f"folder:{image_folder}", cache_dir=tmp_path, batch_size=8, quiet=True)
    info = read_info(path)
    assert info.layers == [p.name for p in bb.probe_points] and info.layers[-1] == "pre_logits"
    labels, index, feats = read_arrays(path)
    np.testing.assert_array_equal(index, np.arange(30))
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 10))
    ref = reference_features(bb, image_folder, info.layers)
    for name in info.layers:
        assert feats[name].dtype == np.float16
        np.testing.assert_allclose(
            feats[name].astype(np.float32), ref[name], rtol=2e-3, atol=2e-3, err_msg=name
        )


def test_cls_pooling_and_float32(vit, image_folder, tmp_path):
    (path,) = extract(
        vit,
        f"folder:{image_folder}",
        layers="blocks.*",
        pool="cls",
        dtype="float32",
        cache_dir=tmp_path,
        batch_size=16,
        quiet=True,
    )
    _, _, feats = read_arrays(path)
    ref = reference_features(vit, image_folder, ["blocks.0", "blocks.1", "blocks.2"], pool="cls")
    assert list(feats) == ["blocks.0", "blocks.1", "blocks.2"]
    for name, value in feats.items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, ref[name], rtol=1e-4, atol=1e-5)
    assert read_info(path).attrs["pooling"] == "cls"


def test_complete_cache_is_reused_and_force_redoes_it(
    vit, image_folder, tmp_path, monkeypatch, capsys
):
    task = f"folder:{image_folder}"
    (path,) = extract(vit, task, cache_dir=tmp_path, layers="pre_logits", batch_size=16)
    assert "wrote" in capsys.readouterr().err
    from layerprobe.extract import features

    def no_forward(*args, **kwargs):
        raise AssertionError("a complete cache must not be recomputed")

    monkeypatch.setattr(features.BatchFeatures, "__call__", no_forward)
    assert extract(vit, task, cache_dir=tmp_path, layers="pre_logits") == [path]
    assert "reusing" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="must not be recomputed"):
        extract(vit, task, cache_dir=tmp_path, layers="pre_logits", force=True)
    assert read_info(path).num_rows == 30  # the finished file survives a failed --force run


def test_builtin_images_of_another_seed_are_extracted_again(vit, tmp_path, capsys):
    from layerprobe.tasks.builtin import builtin_task

    first = builtin_task("digits", image_size=32, seed=0)
    (path,) = extract(vit, first, splits="val", cache_dir=tmp_path, layers="pre_logits")
    assert read_info(path).attrs["task_fingerprint"] == first.fingerprint()
    capsys.readouterr()
    assert extract(vit, first, splits="val", cache_dir=tmp_path, layers="pre_logits") == [path]
    assert "reusing" in capsys.readouterr().err
    _, _, before = read_arrays(path)

    other = builtin_task("digits", image_size=32, seed=1)  # same name, other images
    (again,) = extract(vit, other, splits="val", cache_dir=tmp_path, layers="pre_logits")
    assert again == path and "extracting" in capsys.readouterr().err
    assert read_info(path).attrs["task_fingerprint"] == other.fingerprint() != first.fingerprint()
    _, _, after = read_arrays(path)
    assert not np.array_equal(before["pre_logits"], after["pre_logits"])


def test_missing_layers_are_added_keeping_the_cached_ones(vit, image_folder, tmp_path, capsys):
    task = f"folder:{image_folder}"
    (path,) = extract(vit, task, cache_dir=tmp_path, layers="pre_logits", quiet=True)
    _, _, first = read_arrays(path)
    (again,) = extract(vit, task, cache_dir=tmp_path, layers=["blocks.0", "blocks.2"])
    assert again == path and "lacks layer(s) blocks.0, blocks.2" in capsys.readouterr().err
    info = read_info(path)
    assert info.layers == ["blocks.0", "blocks.2", "pre_logits"]  # depth order
    assert info.depths == sorted(info.depths)
    _, _, feats = read_arrays(path)
    np.testing.assert_array_equal(feats["pre_logits"], first["pre_logits"])


def test_split_all_extracts_every_split(vit, split_folder, tmp_path):
    paths = extract(vit, f"folder:{split_folder}", splits="all", cache_dir=tmp_path, quiet=True)
    assert [p.name for p in paths] == ["train.h5", "val.h5", "test.h5"]
    assert [read_info(p).split for p in paths] == ["train", "val", "test"]
    only = extract(
        vit, f"folder:{split_folder}", splits=["test,val"], cache_dir=tmp_path, quiet=True
    )
    assert [p.name for p in only] == ["test.h5", "val.h5"]
    with pytest.raises(DataError, match="no split 'dev'"):
        extract(vit, f"folder:{split_folder}", splits="dev", cache_dir=tmp_path)


def test_file_attributes_follow_the_contract(vit, image_folder, tmp_path):
    (path,) = extract(vit, f"folder:{image_folder}", cache_dir=tmp_path, quiet=True)
    with h5py.File(path) as f:
        attrs = dict(f.attrs)
        for key in (
            "format_version",
            "model",
            "model_key",
            "weights_sha256",
            "task",
            "split",
            "layers",
            "depths",
            "pooling",
            "preprocess",
            "dtype",
            "rows_done",
            "complete",
            "layerprobe_version",
            "pretrain",
        ):
            assert key in attrs, key
        assert attrs["complete"] and attrs["rows_done"] == 30
        assert attrs["model_key"] == vit.model_key("auto")
        chunks = f["features/pre_logits"].chunks
        assert chunks[1] == f["features/pre_logits"].shape[1]
    assert path.parts[len(tmp_path.parts)] == vit.model_key("auto")
    assert read_info(path).attrs["weights_sha256"] == vit.weights_sha256


def test_workers_give_the_same_rows(vit, image_folder, tmp_path):
    (a,) = extract(
        vit, f"folder:{image_folder}", cache_dir=tmp_path / "a", batch_size=7, quiet=True
    )
    (b,) = extract(
        vit, f"folder:{image_folder}", cache_dir=tmp_path / "b", batch_size=7, workers=2, quiet=True
    )
    for x, y in zip(read_arrays(a)[2].values(), read_arrays(b)[2].values(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_unreadable_image_stops_naming_the_file_then_skip_bad_resumes(vit, image_folder, tmp_path):
    bad = sorted((image_folder / "class_b").glob("*.png"))[3]  # dataset item 13
    bad.write_bytes(b"this is not a png")
    task = f"folder:{image_folder}"
    with pytest.raises(DataError, match=bad.name):
        extract(vit, task, cache_dir=tmp_path, batch_size=4, quiet=True)
    (partial,) = tmp_path.rglob("*.h5.partial")
    with h5py.File(partial) as f:
        assert f.attrs["rows_done"] == 12  # the batches before the bad one are kept
    (path,) = extract(vit, task, cache_dir=tmp_path, batch_size=4, skip_bad=True, quiet=True)
    labels, index, feats = read_arrays(path)
    assert 13 not in index and len(index) == 29 and feats["pre_logits"].shape[0] == 29
    assert read_info(path).attrs["skipped_items"].tolist() == [13]


def test_bad_options_are_user_errors(vit, image_folder, tmp_path):
    task = f"folder:{image_folder}"
    with pytest.raises(ConfigError, match="dtype"):
        extract(vit, task, cache_dir=tmp_path, dtype="int8")
    with pytest.raises(ConfigError, match="amp"):
        extract(vit, task, cache_dir=tmp_path, amp="fp8")
    with pytest.raises(ConfigError, match="batch size"):
        extract(vit, task, cache_dir=tmp_path, batch_size=0)
    with pytest.raises(ConfigError, match="'image_size' is a model option"):
        extract(vit, task, cache_dir=tmp_path, image_size=64)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_an_environment_problem(vit, image_folder, tmp_path):
    with pytest.raises(EnvironmentProblem, match="CUDA"):
        extract(vit, f"folder:{image_folder}", cache_dir=tmp_path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_cuda_bf16_matches_cpu(image_folder, tmp_path):
    bb = tiny("resnet")
    (cpu,) = extract(
        bb, f"folder:{image_folder}", cache_dir=tmp_path / "cpu", device="cpu", quiet=True
    )
    (gpu,) = extract(
        bb,
        f"folder:{image_folder}",
        cache_dir=tmp_path / "gpu",
        device="cuda",
        amp="bf16",
        quiet=True,
    )
    for x, y in zip(read_arrays(cpu)[2].values(), read_arrays(gpu)[2].values(), strict=True):
        np.testing.assert_allclose(x.astype(np.float32), y, rtol=0.05, atol=0.05)


def test_other_format_version_needs_force(vit, image_folder, tmp_path):
    task = f"folder:{image_folder}"
    (path,) = extract(vit, task, cache_dir=tmp_path, layers="pre_logits", quiet=True)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(CacheError, match="re-extract with --force"):
        extract(vit, task, cache_dir=tmp_path, layers="pre_logits", quiet=True)
    extract(vit, task, cache_dir=tmp_path, layers="pre_logits", force=True, quiet=True)
    assert read_info(path).attrs["format_version"] == 1


def test_progress_bar_counts_images_on_a_terminal(vit, image_folder, tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    extract(vit, f"folder:{image_folder}", cache_dir=tmp_path / "a", layers="pre_logits")
    assert "img/s" in term.getvalue() and "30/30" in term.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    extract(
        vit, f"folder:{image_folder}", cache_dir=tmp_path / "b", layers="pre_logits", quiet=True
    )
    assert quiet.getvalue() == ""


def test_bf16_autocast_is_recorded_and_not_mixed_with_full_precision(
    vit, image_folder, tmp_path, capsys
):
    task = f"folder:{image_folder}"
    (full,) = extract(vit, task, cache_dir=tmp_path / "a", layers="pre_logits", quiet=True)
    (half,) = extract(
        vit, task, cache_dir=tmp_path / "b", layers="pre_logits", amp="bf16", quiet=True
    )
    assert read_info(half).attrs["amp"] == "bf16"
    a, b = read_arrays(full)[2]["pre_logits"], read_arrays(half)[2]["pre_logits"]
    np.testing.assert_allclose(a.astype(np.float32), b, rtol=0.1, atol=0.1)  # bf16 keeps ~3 digits
    assert not np.array_equal(a, b)  # the autocast really ran
    extract(
        vit, task, cache_dir=tmp_path / "b", layers="pre_logits"
    )  # full precision asked for now
    assert "amp=bf16" in capsys.readouterr().err
    assert read_info(half).attrs["amp"] == "none"


def test_torchrun_shards_cover_every_item_once():
    from layerprobe.extract.distributed import Ranks

    for n in (0, 1, 5, 30, 31):
        for world in (1, 2, 3, 8):
            ranges = [Ranks(rank, world).shard(n) for rank in range(world)]
            assert [i for a, b in ranges for i in range(a, b)] == list(range(n))


def test_float16_overflow_and_nan_features_are_clear_errors(image_folder, tmp_path):
    bb = tiny("convnet")
    with torch.no_grad():
        bb.model.stem[0].weight.mul_(1e6)  # activations far beyond float16's 65504
    task = f"folder:{image_folder}"
    with pytest.raises(ConfigError, match="float16 range.*--dtype float32"):
        extract(bb, task, cache_dir=tmp_path, quiet=True)
    (path,) = extract(bb, task, cache_dir=tmp_path, dtype="float32", quiet=True)
    assert np.isfinite(read_arrays(path)[2]["block2"]).all()
    with torch.no_grad():
        bb.model.fc.weight.fill_(float("nan"))
        bb.model.block1[0].weight.fill_(float("nan"))
    bb.__dict__.pop("weights_sha256", None)  # new weights, new model key
    with pytest.raises(DataError, match="layer block1 gives NaN.*item 0"):
        extract(bb, task, cache_dir=tmp_path, dtype="float32", quiet=True)


def test_partial_renamed_to_final_says_how_to_resume(vit, image_folder, tmp_path):
    task = f"folder:{image_folder}"
    (path,) = extract(vit, task, cache_dir=tmp_path, layers="pre_logits", quiet=True)
    with h5py.File(path, "r+") as f:  # what `mv all.h5.partial all.h5` leaves
        f.attrs["complete"] = False
    with pytest.raises(CacheError, match="rename it back to all.h5.partial"):
        extract(vit, task, cache_dir=tmp_path, layers="pre_logits", quiet=True)
    path.rename(path.with_name("all.h5.partial"))
    assert extract(vit, task, cache_dir=tmp_path, layers="pre_logits", quiet=True) == [path]
    assert read_info(path).num_rows == 30


def test_cache_path_through_a_file_fails_before_extracting(vit, image_folder, tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        extract(vit, f"folder:{image_folder}", cache_dir=tmp_path / "cache" / "sub", quiet=True)
