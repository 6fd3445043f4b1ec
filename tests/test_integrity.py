"""Integrity of what layerprobe writes: checkpoints carry a hash of their tensors (damage and
truncation are refused in one line), and a pre-training run folder is locked while written."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from layerprobe.backbones.checkpoint import read_checkpoint, save_checkpoint
from layerprobe.backbones.weights import HASH_KEY, read_state_dict
from layerprobe.errors import CheckpointError
from tests.helpers_pretrain import ROOT, cli_env, lp_home_fixture, run_cli  # noqa: F401 - fixture

TINY = ["--model", "resnet-tiny32", "--data-fraction", "0.02", "--epochs", "1", "--batch-size",
        "32", "--device", "cpu", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(lp_home, tmp_path_factory):
    """A real checkpoint written by `layerprobe pretrain` (one epoch of the tiniest rung)."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    proc = run_cli(lp_home, "pretrain", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "checkpoint.pt"


def _flip_inside_largest_tensor(src, dst, count=100):
    """Copy ``src`` to ``dst`` with ``count`` bytes inverted inside its largest tensor's data."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(count):
        data[start + i] ^= 0xFF
    dst.write_bytes(bytes(data))


def _one_line_exit_2(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerprobe: error:"), proc.stderr
    return lines[0]


def test_pretrain_checkpoint_stores_the_hash_and_loads(checkpoint):
    raw = torch.load(checkpoint, weights_only=True)
    assert len(raw[HASH_KEY]) == 64
    contents = read_checkpoint(checkpoint)
    assert contents.state_dict.keys() == raw["state_dict"].keys()


def test_flipped_bytes_in_a_tensor_are_refused_in_one_line(checkpoint, lp_home, tmp_path):
    damaged = tmp_path / "damaged.pt"
    _flip_inside_largest_tensor(checkpoint, damaged)
    # torch itself loads it without a word: the zip CRC is not checked on load.
    torch.load(damaged, weights_only=True)
    line = _one_line_exit_2(run_cli(lp_home, "layers", str(damaged)))
    assert str(damaged) in line and "damaged" in line and "make it again" in line
    # Given as --checkpoint to an architecture, the same file is refused the same way.
    with pytest.raises(CheckpointError, match="damaged"):
        read_state_dict(damaged)


def test_truncated_checkpoint_is_refused_in_one_line(checkpoint, lp_home, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    line = _one_line_exit_2(run_cli(lp_home, "layers", str(cut)))
    assert str(cut) in line and "incomplete" in line and "make it again" in line
    assert "give a .pt" not in line


def test_checkpoint_without_a_hash_still_loads(checkpoint, tmp_path):
    raw = torch.load(checkpoint, weights_only=True)
    del raw[HASH_KEY]  # as written before the hash existed
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    contents = read_checkpoint(old)
    assert all(torch.equal(contents.state_dict[k], v) for k, v in raw["state_dict"].items())


def test_safetensors_checkpoint_damage_is_refused(tmp_path):
    state = {"w": torch.arange(4096, dtype=torch.float32), "b": torch.ones(3)}
    path = save_checkpoint(tmp_path / "c.safetensors", "timm:resnet18", state)
    assert read_checkpoint(path).state_dict["w"].equal(state["w"])
    data = bytearray(path.read_bytes())
    for i in range(100):
        data[len(data) - 5000 + i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="c.safetensors.*damaged"):
        read_checkpoint(path)


def test_hash_costs_little_next_to_reading(checkpoint):
    from layerprobe.backbones.weights import read_file, tensors_sha256

    state = read_checkpoint(checkpoint).state_dict
    start = time.perf_counter()
    read_file(checkpoint)
    read_time = time.perf_counter() - start
    start = time.perf_counter()
    tensors_sha256(state)
    hash_time = time.perf_counter() - start
    assert hash_time < max(5 * read_time, 0.05), (hash_time, read_time)


def test_two_pretrain_runs_into_one_folder_do_not_mix(lp_home, tmp_path, checkpoint):
    out = tmp_path / "cc"
    first = subprocess.Popen(
        [sys.executable, "-m", "layerprobe", "pretrain", *TINY[:-1], "--epochs", "3", "--quiet",
         "--out", str(out)],
        env=cli_env(lp_home), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / ".lock").exists() or not (out / ".lock").read_text():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = run_cli(
            lp_home, "pretrain", *TINY, "--data-fraction", "0.03", "--force", "--out", str(out)
        )
        line = _one_line_exit_2(second)
        assert f"in use by process {first.pid}" in line and str(out) in line
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr[-2000:]
    assert (
        json.loads((out / "config.json").read_text())["identity"]["config"]["data_fraction"] == 0.02
    )
    info = read_checkpoint(out / "checkpoint.pt").pretrain_info
    assert info["data_fraction"] == 0.02 and info["epochs"] == 3
    assert not (out / ".lock").exists()


def test_refused_start_leaves_no_folder_and_names_only_differing_fields(
    lp_home, tmp_path, checkpoint
):
    out = tmp_path / "new" / "run"
    line = _one_line_exit_2(
        run_cli(lp_home, "pretrain", *TINY, "--data-fraction", "0.0001", "--out", str(out))
    )
    assert "--data-fraction" in line
    assert not (tmp_path / "new").exists()
    # The folder of the fixture's run refuses another fraction, naming that field alone.
    line = _one_line_exit_2(
        run_cli(
            lp_home, "pretrain", *TINY, "--data-fraction", "0.03", "--out", str(checkpoint.parent)
        )
    )
    assert "(data_fraction: 0.02 there, 0.03 now)" in line
    assert line.count(" there, ") == 1


# -- a full disk ----------------------------------------------------------------------------------

FULL_DISK_SCRIPT = """
set -e
mount -t tmpfs -o size=2m tmpfs "$MNT"
dd if=/dev/zero of="$MNT/filler" bs=1k count=1900 2>/dev/null
set +e
"$@" --cache "$MNT/cache"; echo "first=$?"
find "$MNT/cache" -name '*.h5*' -printf 'file=%f\\n'
rm "$MNT/filler"
"$@" --cache "$MNT/cache"; echo "second=$?"
find "$MNT/cache" -name '*.h5*' -printf 'file=%f\\n'
"""


def _can_mount_tmpfs(tmp_path) -> str | None:
    """None when this process may mount a tmpfs in a user and mount namespace, else why not."""
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        proc = subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare is not available ({err})"
    return None if proc.returncode == 0 else f"cannot mount a tmpfs here: {proc.stderr.strip()}"


def test_extract_into_a_full_tmpfs_is_one_line_exit_2_then_resumes(image_folder, tmp_path):
    import timm

    from tests.helpers_models import TINY_VIT_KWARGS

    why = _can_mount_tmpfs(tmp_path)
    if why:
        pytest.skip(why)
    kwargs = TINY_VIT_KWARGS | {"num_classes": 3}
    torch.manual_seed(0)
    weights = tmp_path / "vit.pt"
    torch.save(timm.create_model("vit_tiny_patch16_224", **kwargs).state_dict(), weights)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    command = [sys.executable, "-m", "layerprobe", "extract", "--model", "vit_tiny_patch16_224",
               "--checkpoint", str(weights), "--task", f"folder:{image_folder}", "--quiet",
               "--batch-size", "4", "--dtype", "float32"]  # fmt: skip
    for key, value in kwargs.items():
        command += ["--model-arg", f"{key}={value}"]
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", FULL_DISK_SCRIPT, "sh", *command],
        env=dict(cli_env(tmp_path), MNT=str(mnt)), cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout.splitlines()
    assert "first=2" in out, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()  # the first run's one line; the second is silent
    assert line.startswith("layerprobe: error: no space left on the device while writing")
    assert "re-run the same command" in line
    files = [line for line in out if line.startswith("file=")]
    assert files[0] == "file=all.h5.partial"  # the resumable state is kept, not a finished file
    assert "second=0" in out and files[-1] == "file=all.h5"
