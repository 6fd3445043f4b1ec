"""Pre-training: configs, optimizer groups, schedule, data path, and tiny ViT / Mixer runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from layerprobe.errors import ConfigError, UnknownNameError, UserError
from layerprobe.pretrain import LADDER, PretrainConfig, data, list_models, pretrain, run_complete
from layerprobe.pretrain.ladder import build, resolve_model
from layerprobe.pretrain.optim import lr_factor, make_optimizer
from tests.helpers_pretrain import CHANCE, lp_home_fixture, run_cli  # noqa: F401 - fixture

FAST = dict(data_fraction=0.1, epochs=2, batch_size=32, lr=2e-3, warmup_epochs=0.25, device="cpu")


# ------------------------------------------------------------------ configs and ladder
@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(data_fraction=0), "(0, 1]"),
        (dict(data_fraction=1.5), "(0, 1]"),
        (dict(epochs=0), "--epochs"),
        (dict(lr=-1), "--lr"),
        (dict(warmup_epochs=9, epochs=2), "--warmup-epochs"),
        (dict(precision="fp16"), "--precision"),
        (dict(label_smoothing=1.0), "--label-smoothing"),
    ],
)
def test_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError, match=None) as err:
        PretrainConfig("resnet-tiny32", **kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_ladder_has_three_families_from_tiny_to_large():
    rows = {r["name"]: r for r in list_models(120)}
    for family in ("vit", "mixer", "resnet"):
        sizes = [r["params"] for r in rows.values() if r["family"] == family]
        assert len(sizes) >= 4 and min(sizes) < 2e6 and max(sizes) > 4e7
    assert rows["vit-tiny32"]["image_size"] == 32 and rows["vit-b16"]["image_size"] == 224
    assert set(rows) == set(LADDER)


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(UnknownNameError, match="list-models"):
        resolve_model("vit-tiny-33", 10)


def test_timm_spec_records_img_size_only_where_taken():
    _, vit = build(
        resolve_model("vit_tiny_patch16_224", 10, image_size=32, model_args={"depth": 1})
    )
    _, res = build(
        resolve_model("timm:resnet18", 10, image_size=32, model_args={"layers": [1, 1, 1, 1]})
    )
    assert vit.kwargs["img_size"] == 32 and "img_size" not in res.kwargs


def test_head_group_has_its_own_wd_and_lr():
    model, _ = build(resolve_model("vit-tiny32", 120))
    opt = make_optimizer(model, lr=1e-3, wd=0.05, head_wd=3.0, head_lr_mult=10.0)
    groups = {g["name"]: g for g in opt.param_groups}
    head_w, head_b = model.head.weight, model.head.bias
    assert [p is head_w for p in groups["head"]["params"]] == [True]
    assert groups["head"]["weight_decay"] == 3.0 and groups["head"]["lr"] == pytest.approx(1e-2)
    assert groups["head_no_wd"]["params"][0] is head_b and groups["head_no_wd"]["weight_decay"] == 0
    assert groups["body"]["weight_decay"] == 0.05 and groups["body"]["lr"] == pytest.approx(1e-3)
    no_wd = {id(p) for p in groups["body_no_wd"]["params"]}
    assert id(model.pos_embed) in no_wd and id(model.norm.weight) in no_wd
    assert all(p.ndim >= 2 for p in groups["body"]["params"])


def test_schedule_warms_up_then_decays_to_zero():
    f = [lr_factor(s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[10] == 1.0
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] < 0.01


def test_balanced_subset_is_seeded_nested_and_refuses_empty_classes():
    labels = np.repeat(np.arange(4), 50)
    small = data.balanced_subset(labels, 0.1, seed=3)
    big = data.balanced_subset(labels, 0.5, seed=3)
    assert np.bincount(labels[small]).tolist() == [5] * 4 and set(small) <= set(big)
    assert not np.array_equal(small, data.balanced_subset(labels, 0.1, seed=4))
    with pytest.raises(ConfigError, match="empty"):
        data.balanced_subset(labels, 0.005, seed=0, class_names=list("abcd"))


def test_augmentation_is_a_shifted_flipped_crop():
    u8 = torch.randint(
        0, 256, (16, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    out = data.crop_flip(u8, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == u8.shape and torch.equal(
        out, data.crop_flip(u8, torch.Generator().manual_seed(0), pad=2)
    )
    gen = torch.Generator().manual_seed(0)  # the same draws, one image at a time
    dy, dx = torch.randint(0, 5, (16,), generator=gen), torch.randint(0, 5, (16,), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    padded = torch.nn.functional.pad(u8, (0, 0, 2, 2, 2, 2))
    for i in range(16):
        crop = padded[i, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        assert torch.equal(out[i], crop.flip(1) if flip[i] else crop)
    assert flip.any() and not flip.all()


def test_normalizer_matches_torchvision():
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    ref = T.Compose([T.ToTensor(), T.Normalize((0.4, 0.5, 0.6), (0.2, 0.3, 0.4))])(
        Image.fromarray(img)
    )
    ours = data.Normalizer((0.4, 0.5, 0.6), (0.2, 0.3, 0.4), torch.device("cpu"))(
        torch.from_numpy(img)[None]
    )[0]
    assert torch.equal(ref, ours)


# ------------------------------------------------------------------ tiny runs
@pytest.mark.parametrize("model", ["vit-tiny32", "mixer-tiny32"])
def test_tiny_model_pretrains_above_chance(model, lp_home, tmp_path):
    out = tmp_path / model
    ckpt = pretrain(PretrainConfig(model, **FAST), out, quiet=True)
    assert ckpt == out / "checkpoint.pt" and run_complete(out)
    assert not (out / "state.pt").exists()
    info = torch.load(ckpt, weights_only=True)["pretrain_info"]
    assert info["upstream_accuracy"] > 3 * CHANCE, info["upstream_accuracy_per_epoch"]
    assert info["upstream_task"] == "builtin/upstream" and info["epochs"] == 2
    assert info["data_fraction"] == 0.1 and info["head_lr"] == pytest.approx(2e-3)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch,step,lr,train_loss")
    assert json.loads((out / "config.json").read_text())["identity"]["config"]["model"] == model
    # complete: a second call returns at once
    assert pretrain(PretrainConfig(model, **FAST), out, quiet=True) == ckpt


def test_nan_loss_stops_with_the_step(lp_home, tmp_path):
    config = PretrainConfig(
        "mixer-tiny32", **{**FAST, "lr": 1e30, "epochs": 1, "data_fraction": 0.05}
    )
    with pytest.raises(UserError, match=r"NaN or infinite at step \d+") as err:
        pretrain(config, tmp_path / "nan", quiet=True)
    assert "\n" not in str(err.value) and "--lr" in str(err.value)
    assert not run_complete(tmp_path / "nan")


def test_cli_errors_are_one_line_exit_2(lp_home, tmp_path, capsys):
    from layerprobe.cli import main

    cases = [
        ["--model", "no-such-model"],
        ["--model", "resnet-tiny32", "--task", "builtin/nope"],
        ["--model", "resnet-tiny32", "--data-fraction", "0"],
        ["--model", "resnet-tiny32", "--data-fraction", "0.001"],
        ["--model", "resnet-tiny32", "--device", "cuda"]
        if not torch.cuda.is_available()
        else ["--model", "resnet-tiny32", "--epochs", "0"],
        ["--model", "resnet-tiny32", "--head-wd", "-1"],
    ]
    for i, args in enumerate(cases):
        capsys.readouterr()
        code = main(["pretrain", *args, "--out", str(tmp_path / str(i)), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("layerprobe: error:"), (
            args,
            err,
        )
    assert main(["pretrain", "--list-models"]) == 0
    assert "vit-tiny32" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_is_exit_2_in_a_fresh_process(lp_home, tmp_path):
    proc = run_cli(lp_home, "pretrain", "--model", "vit-nope", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
