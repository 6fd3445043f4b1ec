"""Run folders: kill -9 and resume gives the same weights; another config is refused; torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from layerprobe.errors import ConfigError
from layerprobe.pretrain import PretrainConfig, pretrain
from tests.helpers_pretrain import ROOT, cli_env, lp_home_fixture, tensors_equal  # noqa: F401
from tests.limits import HANG

RUN = dict(data_fraction=0.03, epochs=3, batch_size=32, warmup_epochs=0.5, device="cpu")
ARGS = (
    "--model resnet-tiny32 --data-fraction 0.03 --epochs 3 --batch-size 32 --warmup-epochs 0.5 "
    "--device cpu --quiet"
).split()


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.slow  # three pre-trainings, one killed: 100 s at load 17 on 2 cores
def test_kill_9_then_resume_gives_the_same_weights(lp_home, tmp_path):
    """The killed run is a process of its own; the others run here (one thread, like it)."""
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerprobe", "pretrain", *ARGS, "--out", str(out)],
        env=cli_env(lp_home),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 240
    while not (out / "state.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoint.pt").exists()
    assert torch.load(out / "state.pt", weights_only=True)["epoch"] < 3
    resumed = pretrain(PretrainConfig("resnet-tiny32", **RUN), out, quiet=True)
    straight = pretrain(PretrainConfig("resnet-tiny32", **RUN), tmp_path / "straight", quiet=True)
    assert tensors_equal(_weights(resumed), _weights(straight))
    assert len((out / "metrics.csv").read_text().splitlines()) == 4
    assert not (out / "state.pt").exists()


def test_another_config_is_refused_unless_force(lp_home, tmp_path):
    out = tmp_path / "run"
    base = dict(data_fraction=0.02, epochs=1, batch_size=32, device="cpu")
    pretrain(PretrainConfig("resnet-tiny32", **base), out, quiet=True)
    other = PretrainConfig("resnet-tiny32", **{**base, "head_wd": 1.0})
    with pytest.raises(ConfigError, match="another config.*head_wd.*--force") as err:
        pretrain(other, out, quiet=True)
    assert "\n" not in str(err.value)
    ckpt = pretrain(other, out, force=True, quiet=True)
    assert torch.load(ckpt, weights_only=True)["pretrain_info"]["head_wd"] == 1.0


@pytest.mark.slow  # two processes pre-training: 46 s at load 17 on 2 cores
def test_torchrun_two_processes_write_one_checkpoint(lp_home, tmp_path):
    out = tmp_path / "ddp"
    args = "--model vit-tiny32 --data-fraction 0.05 --epochs 1 --batch-size 32 --device cpu --quiet"
    port = str(29500 + os.getpid() % 1000)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"),
            *("--master-port", port, "-m", "layerprobe", "pretrain", *args.split()),
            *("--out", str(out)),
        ],
        env=cli_env(lp_home),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines() == [str(out / "checkpoint.pt")]  # rank 0 alone prints
    files = sorted(p.name for p in out.iterdir())
    assert files == ["checkpoint.pt", "config.json", "metrics.csv"], files
    info = torch.load(out / "checkpoint.pt", weights_only=True)["pretrain_info"]
    assert 0 <= info["upstream_accuracy"] <= 1 and info["train_images"] == 1200
