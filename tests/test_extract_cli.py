"""`layerprobe extract` from the command line: bad input, kill -9 and resume, torchrun with 2 processes."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from layerprobe.cli import main
from layerprobe.extract.cache import FORMAT_VERSION, find_caches, read_arrays, read_info
from tests.helpers_cli import python_shell, python_started, shell_env
from tests.helpers_models import TINY_VIT_KWARGS
from tests.limits import HANG

ROOT = Path(__file__).resolve().parents[1]
VIT_KWARGS = TINY_VIT_KWARGS | {"num_classes": 3}
VIT_ARGS = [f"{key}={value}" for key, value in VIT_KWARGS.items()]


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory) -> Path:
    """Fixed weights for the tiny ViT, so that every process builds the same model."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", **VIT_KWARGS)
    path = tmp_path_factory.mktemp("ckpt") / "vit.pt"
    torch.save(model.state_dict(), path)
    return path


def vit_args(folder, cache, checkpoint, *extra) -> list[str]:
    args = [
        "extract",
        "--model",
        "vit_tiny_patch16_224",
        "--checkpoint",
        str(checkpoint),
        "--task",
        f"folder:{folder}",
        "--cache",
        str(cache),
        "--quiet",
    ]
    for kv in VIT_ARGS:
        args += ["--model-arg", kv]
    return args + list(extra)


def cli(args, env=None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "layerprobe", *args],
        cwd=ROOT,
        env=shell_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def assert_same_cache(a: Path, b: Path, exact: bool = True) -> None:
    la, ia, fa = read_arrays(a)
    lb, ib, fb = read_arrays(b)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ia, ib)
    assert list(fa) == list(fb)
    for name in fa:
        if exact:
            np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)
        else:  # other thread counts may round float32 sums differently: equal to float16 precision
            np.testing.assert_allclose(
                fa[name].astype(np.float32), fb[name], rtol=2e-3, atol=2e-3, err_msg=name
            )
    keep = (
        "format_version",
        "model",
        "model_key",
        "weights_sha256",
        "layers",
        "pooling",
        "dtype",
        "complete",
    )
    assert {k: str(read_info(a).attrs[k]) for k in keep} == {
        k: str(read_info(b).attrs[k]) for k in keep
    }


# -- bad input: one line, exit code 2, no traceback ---------------------------------------------


def _bad_cases(folder: Path, tmp: Path, checkpoint: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp / "empty"
    (empty / "a").mkdir(parents=True)
    broken = tmp / "broken"
    (broken / "a").mkdir(parents=True)
    (broken / "a" / "bad.png").write_bytes(b"not a png")
    old = tmp / "old-cache"
    ok = vit_args(folder, old, checkpoint)
    return {
        "unknown model": (
            [
                "extract",
                "--model",
                "timm:no_such_model_xyz",
                "--task",
                f"folder:{folder}",
                "--cache",
                str(tmp / "c"),
            ],
            "no_such_model_xyz",
        ),
        "unknown namespace": (
            [
                "extract",
                "--model",
                "nohub:resnet18",
                "--task",
                f"folder:{folder}",
                "--cache",
                str(tmp / "c"),
            ],
            "nohub",
        ),
        "unknown layer": (ok + ["--layers", "blocks.99"], "blocks.99"),
        "missing folder": (vit_args(tmp / "nowhere", tmp / "c", checkpoint), "nowhere"),
        "empty folder": (vit_args(empty, tmp / "c", checkpoint), "no images"),
        "unreadable image": (vit_args(broken, tmp / "c", checkpoint), "bad.png"),
        "cuda without cuda": (ok + ["--device", "cuda"], "CUDA"),
        "cache is a file": (vit_args(folder, broken / "a" / "bad.png", checkpoint), "not a folder"),
        "other format_version": (ok, "--force"),
    }


def _make_old_cache(folder, tmp, checkpoint) -> None:
    """A complete cache whose format_version is not ours (for the 'other format_version' case)."""
    assert main(vit_args(folder, tmp / "old-cache", checkpoint, "--layers", "pre_logits")) == 0
    (path,) = [info.path for info in find_caches(tmp / "old-cache")]
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1


def test_bad_input_in_process(image_folder, tmp_path, vit_checkpoint, capsys):
    _make_old_cache(image_folder, tmp_path, vit_checkpoint)
    capsys.readouterr()
    for name, (args, expected) in _bad_cases(image_folder, tmp_path, vit_checkpoint).items():
        if name == "cuda without cuda" and torch.cuda.is_available():
            continue
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("layerprobe: error:"), (name, err)
        assert expected in err[0], (name, err)


# Runs each case as its own process, forked from one interpreter that imported layerprobe once
# (eight fresh interpreters importing torch would take a minute on 2 cores). Each child runs
# exactly what `python -m layerprobe` runs, and reports exit code and stderr as a process does.
FORK_DRIVER = r"""
import json, os, sys, traceback
from layerprobe.cli import main
# Import once, before forking -- but run no torch op here: a forked child of a process whose
# OpenMP pool has started can hang.
import h5py, timm, torchvision.transforms, layerprobe.backbones, layerprobe.extract  # noqa: F401
for args in json.loads(sys.argv[1]):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 2)
        sys.stderr = os.fdopen(2, "w")
        try:
            code = main(args)
        except SystemExit as err:
            code = err.code
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code or 0)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status), "err": err}), flush=True)
"""


def test_bad_input_from_the_command_line(image_folder, tmp_path, vit_checkpoint):
    _make_old_cache(image_folder, tmp_path, vit_checkpoint)
    cases = _bad_cases(image_folder, tmp_path, vit_checkpoint)
    if torch.cuda.is_available():
        del cases["cuda without cuda"]
    argvs = json.dumps([args for args, _ in cases.values()])
    run = python_shell("-c", FORK_DRIVER, argvs, env=shell_env(OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(results) == len(cases)
    for (name, (_, expected)), got in zip(cases.items(), results, strict=True):
        err = got["err"].strip()
        assert got["code"] == 2, (name, err)
        assert "Traceback" not in err, (name, err)
        assert err.startswith("layerprobe: error:") and expected in err, (name, err)
        assert len(err.splitlines()) == 1, (name, err)


@pytest.mark.slow
def test_unreadable_image_with_workers_from_a_fresh_process(image_folder, tmp_path, vit_checkpoint):
    """The real `python -m layerprobe`, with DataLoader workers: the error still is one line."""
    bad = sorted((image_folder / "class_c").glob("*.png"))[0]
    bad.write_bytes(b"\x89PNG broken")
    proc = cli(
        vit_args(
            image_folder, tmp_path / "c", vit_checkpoint, "--workers", "2", "--batch-size", "4"
        )
    )
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines() == [err.strip()] and bad.name in err


def test_full_disk_from_the_cli_is_exit_2_and_resumable(
    image_folder, tmp_path, vit_checkpoint, monkeypatch, capsys
):
    from layerprobe.extract.writer import PartialCache

    real, calls = PartialCache._write_rows, []

    def fill_then_fail(self, *args):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args)

    monkeypatch.setattr(PartialCache, "_write_rows", fill_then_fail)
    args = vit_args(image_folder, tmp_path / "cache", vit_checkpoint, "--batch-size", "4")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no space left" in err and "Traceback" not in err
    (partial,) = (tmp_path / "cache").rglob("*.h5.partial")
    with h5py.File(partial) as f:
        assert f.attrs["rows_done"] == 8 and not f.attrs["complete"]
    monkeypatch.setattr(PartialCache, "_write_rows", real)
    assert main(args) == 0
    assert main(vit_args(image_folder, tmp_path / "ref", vit_checkpoint, "--batch-size", "4")) == 0
    (done,), (ref,) = find_caches(tmp_path / "cache"), find_caches(tmp_path / "ref")
    assert_same_cache(done.path, ref.path)


# -- kill -9 and resume ---------------------------------------------------------------------------


def _rows_done(path: Path) -> int:
    try:  # the writer holds the file open: read without HDF5's file lock, and tolerate torn reads
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs["rows_done"])
    except Exception:  # noqa: BLE001
        return 0


# Slows the writer down between writing a block's rows and committing rows_done, so that a
# kill most likely lands after rows were written but before they were committed.
SLOW_WRITER = """
import sys, time
import layerprobe.extract.writer as writer
write_rows = writer.PartialCache._write_rows
def slow(self, *args):
    write_rows(self, *args)
    self.file.flush()
    time.sleep(0.3)
writer.PartialCache._write_rows = slow
from layerprobe.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_file(image_folder, tmp_path, vit_checkpoint):
    args = vit_args(image_folder, tmp_path / "cache", vit_checkpoint, "--batch-size", "2")
    proc = python_started("-c", SLOW_WRITER, *args)
    deadline = time.time() + 240
    partial = None
    while time.time() < deadline and proc.poll() is None:
        found = (
            list((tmp_path / "cache").rglob("*.h5.partial"))
            if (tmp_path / "cache").exists()
            else []
        )
        if found and _rows_done(found[0]) >= 4:
            partial = found[0]
            break
        time.sleep(0.05)
    assert partial is not None and proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "cache").rglob("*.h5")), (
        "a killed run must not leave a finished-looking file"
    )
    done_before = _rows_done(partial)
    assert 0 < done_before < 30

    assert main(args) == 0  # the same command, in this process, resumes
    assert main(vit_args(image_folder, tmp_path / "ref", vit_checkpoint, "--batch-size", "2")) == 0
    (resumed,), (ref,) = find_caches(tmp_path / "cache"), find_caches(tmp_path / "ref")
    assert not partial.exists()
    assert_same_cache(resumed.path, ref.path)


# -- torchrun ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(image_folder, tmp_path, vit_checkpoint):
    args = vit_args(image_folder, tmp_path / "two", vit_checkpoint, "--batch-size", "5")
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
    run = python_shell(*torchrun, "-m", "layerprobe", *args, env=shell_env(OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert main(vit_args(image_folder, tmp_path / "one", vit_checkpoint, "--batch-size", "5")) == 0
    (two,), (one,) = find_caches(tmp_path / "two"), find_caches(tmp_path / "one")
    assert not [p for p in (tmp_path / "two").rglob("*") if ".partial" in p.name], (
        "shards left behind"
    )
    assert run.stdout.strip().splitlines() == [str(two.path)]  # printed once, by rank 0
    assert_same_cache(two.path, one.path, exact=False)


def test_cli_repeated_splits_and_layer_lists(split_folder, tmp_path, vit_checkpoint, capsys):
    args = vit_args(split_folder, tmp_path / "c", vit_checkpoint)
    args += ["--split", "test", "--split", "train,val", "--layers", "blocks.0,pre_logits"]
    assert main(args + ["--dtype", "float32", "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == ["test.h5", "train.h5", "val.h5"]
    infos = {info.split: info for info in find_caches(tmp_path / "c")}
    assert infos["train"].layers == ["blocks.0", "pre_logits"] and infos["train"].num_rows == 18
    assert infos["val"].attrs["dtype"] == "float32"
