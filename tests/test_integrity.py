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
from tests.limits import HANG

TINY = (
    "--model resnet-tiny32 --data-fraction 0.02 --epochs 1 --batch-size 32 --device cpu --quiet"
).split()


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
        [
            sys.executable,
            "-m",
            "layerprobe",
            "pretrain",
            *TINY[:-1],
            "--epochs",
            "3",
            "--quiet",
            "--out",
            str(out),
        ],
        env=cli_env(lp_home),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
        stdout, stderr = first.communicate(timeout=HANG)
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
            capture_output=True,
            text=True,
            timeout=HANG,
        )
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
    command = [
        sys.executable,
        "-m",
        "layerprobe",
        "extract",
        "--model",
        "vit_tiny_patch16_224",
        "--checkpoint",
        str(weights),
        "--task",
        f"folder:{image_folder}",
        "--quiet",
        "--batch-size",
        "4",
        "--dtype",
        "float32",
    ]
    for key, value in kwargs.items():
        command += ["--model-arg", f"{key}={value}"]
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", FULL_DISK_SCRIPT, "sh", *command],
        env=dict(cli_env(tmp_path), MNT=str(mnt)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    out = proc.stdout.splitlines()
    assert "first=2" in out, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()  # the first run's one line; the second is silent
    assert line.startswith("layerprobe: error: no space left on the device while writing")
    assert "re-run the same command" in line
    files = [line for line in out if line.startswith("file=")]
    assert files[0] == "file=all.h5.partial"  # the resumable state is kept, not a finished file
    assert "second=0" in out and files[-1] == "file=all.h5"


# -- sizes against the machine, messages ----------------------------------------------------------


def _main_one_line(capsys, *argv) -> tuple[int, str, float]:
    from layerprobe.cli import main

    capsys.readouterr()
    start = time.perf_counter()
    code = main(list(argv))
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return code, err.strip(), seconds


def test_huge_seeds_and_bootstrap_are_refused_at_once_with_the_estimate(capsys, tmp_path):
    import layerprobe.analysis.fit  # noqa: F401 - imported before timing: the refusal, not imports
    from layerprobe.errors import available_memory

    assert available_memory() > 0
    code, err, seconds = _main_one_line(
        capsys,
        "probe",
        "--cache",
        str(tmp_path / "c"),
        "--results",
        str(tmp_path / "r"),
        "--seeds",
        "1000000000",
    )
    assert code == 2 and seconds < 1, (err, seconds)
    assert "--seeds 1000000000" in err and "of memory, more than the" in err and "available" in err
    assert not (tmp_path / "r").exists()
    code, err, seconds = _main_one_line(
        capsys, "fit", "--results", str(tmp_path / "r"), "--bootstrap", "1000000000"
    )
    assert code == 2 and seconds < 1 and "--bootstrap 1000000000 needs at least" in err
    code, err, _ = _main_one_line(
        capsys,
        "report",
        "--results",
        str(tmp_path / "r"),
        "--out",
        str(tmp_path / "rep"),
        "--bootstrap",
        "1000000000",
    )
    assert code == 2 and "--bootstrap 1000000000 needs at least" in err
    assert not (tmp_path / "rep").exists()


def test_a_plan_that_fits_passes_the_memory_check():
    from layerprobe.probe.plan import check_plan_options, plan_bytes

    check_plan_options([1, 5, 10, 25], 3, classes=100, grid=30)
    assert plan_bytes([1, 5], 10, classes=4) > plan_bytes([1, 5], 1, classes=4)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "job.toml", "--workers", "abc"],
        ["extract", "--model", "m", "--task", "t", "--workers", "abc"],
        ["probe", "--cache", "c", "--results", "r", "--seeds", "abc"],
        ["fit", "--results", "r", "--bootstrap", "abc"],
        ["pretrain", "--model", "m", "--out", "o", "--epochs", "abc"],
    ],
)
def test_bad_whole_numbers_name_no_internal_function(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        _main_one_line(capsys, *argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "expected a whole number, got 'abc'" in err
    assert "_positive" not in err and "invalid" not in err


def test_scan_checks_its_options_before_it_extracts(capsys, tmp_path):
    out = tmp_path / "scan"
    code, err, _ = _main_one_line(
        capsys,
        "scan",
        "timm:nonexistent_model_xyz",
        "--tasks",
        "builtin/shapes",
        "--out",
        str(out),
        "--seeds",
        "0",
    )
    assert code == 2 and "--seeds must be a whole number >= 1" in err
    assert not out.exists()
    # A scan that fails after its checks (here: the model) leaves no empty folder either.
    code, err, _ = _main_one_line(
        capsys, "scan", "timm:nonexistent_model_xyz", "--tasks", "builtin/shapes", "--out", str(out)
    )
    assert code == 2 and not out.exists()


def test_output_places_are_checked_before_the_work_and_left_as_they_were(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err, _ = _main_one_line(
        capsys, "fit", "--results", str(tmp_path / "r"), "--out", str(blocker / "out")
    )
    assert code == 2 and "is a file, not a folder" in err
    code, err, _ = _main_one_line(
        capsys,
        "report",
        "--results",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "a" / "b"),
        "--quiet",
    )
    assert code == 2 and not (tmp_path / "a").exists()


def test_a_full_disk_is_found_before_the_work(tmp_path, monkeypatch):
    import errno
    import os

    from layerprobe.errors import EnvironmentProblem, check_writable

    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(EnvironmentProblem, match="--out .*no space left on its device"):
        check_writable(tmp_path / "out", "--out", create=False)
    monkeypatch.setattr(os, "write", real_write)
    assert check_writable(tmp_path / "out", "--out", create=False) == tmp_path / "out"
    assert not (tmp_path / "out").exists()


def test_failed_extract_and_probe_leave_no_empty_output_folder(capsys, tmp_path):
    code, err, _ = _main_one_line(
        capsys,
        "extract",
        "--model",
        "timm:resnet18",
        "--task",
        "builtin/nope",
        "--cache",
        str(tmp_path / "new" / "cache"),
    )
    assert code == 2 and "unknown task" in err and not (tmp_path / "new").exists()
    code, err, _ = _main_one_line(
        capsys, "probe", "--cache", str(tmp_path / "none"), "--results", str(tmp_path / "res")
    )
    assert code == 2 and "does not exist" in err and not (tmp_path / "res").exists()


def test_a_failed_command_leaves_no_empty_folder_it_made(tmp_path):
    from layerprobe.errors import DataError, removed_if_failed

    out = tmp_path / "a" / "b"
    with pytest.raises(DataError), removed_if_failed(out):
        out.mkdir(parents=True)
        raise DataError("failed after making its folder")
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "kept"
    with pytest.raises(DataError), removed_if_failed(kept):
        kept.mkdir()
        (kept / "partial.h5").write_text("resumable")
        raise DataError("failed after writing")
    assert (kept / "partial.h5").exists()


def test_damaged_resumable_state_is_refused(tmp_path):
    from layerprobe.pretrain.folder import STATE_NAME, RunFolder

    folder = RunFolder(tmp_path)
    identity = {"config": {"model": "m"}}
    model = {"w": torch.arange(20000, dtype=torch.float32)}
    folder.save_state({"identity": identity, "epoch": 1, "model": model, "metrics": []})
    assert torch.equal(folder.load_state(identity)["model"]["w"], model["w"])
    path = tmp_path / STATE_NAME
    _flip_inside_largest_tensor(path, path)
    with pytest.raises(CheckpointError, match="resumable state .* is damaged.*delete it"):
        folder.load_state(identity)
