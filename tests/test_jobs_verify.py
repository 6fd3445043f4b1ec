"""A unit is done only when its outputs are: changed inputs, deleted or damaged outputs and a
truncated pre-training checkpoint make `status`, `run --dry-run` and `run` agree that the unit
(and everything downstream of it) runs again. Tiny convnets on a tiny image folder, in this
process (one worker)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from layerprobe.cli import main
from layerprobe.jobs import dry_run, job_status, run_job
from layerprobe.jobs.state import State
from tests.jobs_helpers import write_job

CONVNET = 'spec = "python:tests.helpers_models:tiny_convnet"\nimage_size = 16\n'


def _folder(root: Path) -> Path:
    """``root/{train,test}/{dark,light}/*.png``: two classes told apart by brightness."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for c, name in enumerate(("dark", "light")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                noise = rng.integers(0, 30, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(noise + np.uint8(40 + 170 * c)).save(folder / f"{i}.png")
    return root


def _job(tmp_path: Path, model: str = CONVNET, name: str = "v") -> Path:
    data = _folder(tmp_path / "data")
    text = (
        f'[job]\nname = "{name}"\ndir = "{tmp_path / name}"\ntasks = ["folder:{data}"]\n\n'
        f"[[models]]\n{model}\n[probe]\nshots = [2]\nseeds = 1\nl2s = [1.0]\n"
    )
    return write_job(tmp_path / f"{name}.toml", text)


def _show(results: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["results", "show", "--results", str(results)]) == 0
    return capsys.readouterr().out


def _pending(status) -> dict[str, int]:
    return {s: r["total"] - r["done"] for s, r in status.counts.items() if r["total"] > r["done"]}


def _outputs(job_dir: Path, stage: str) -> list[Path]:
    state = State(job_dir)
    return [
        Path(p)
        for uid in state.ids("done", stage)
        for p in state.read("done", stage, uid)["outputs"]
    ]


def test_swapped_class_folders_rerun_the_unit_and_downstream(tmp_path, capsys):
    path = _job(tmp_path)
    first = run_job(path, workers=1, quiet=True)
    assert first.ok and first.ran == 3
    assert "100.0" in _show(first.plan.job.results, capsys)
    test = tmp_path / "data" / "test"
    (test / "dark").rename(test / "tmp")
    (test / "light").rename(test / "dark")
    (test / "tmp").rename(test / "light")
    status = job_status(path)
    assert _pending(status) == {"extract": 1, "probe": 1}
    assert status.reruns == 2 and "~test~" in status.rerun[0]
    assert status.rerun[0].endswith("its input folder changed since it ran")
    assert _pending(dry_run(path)) == {"extract": 1, "probe": 1}
    again = run_job(path, workers=1, quiet=True)
    assert again.ok and again.ran == 2
    assert "its input folder changed since it ran" in capsys.readouterr().err
    shown = _show(first.plan.job.results, capsys)
    assert "pre_logits" in shown and "100.0" not in shown and " 0.0 " in shown
    assert run_job(path, workers=1, quiet=True).ran == 0


def test_replaced_checkpoint_file_reruns_a_touched_one_does_not(tmp_path, capsys):
    from layerprobe.backbones import load
    from layerprobe.backbones.checkpoint import save_checkpoint
    from tests.helpers_models import tiny_convnet

    def checkpoint(where: Path, seed: int) -> Path:
        import torch

        torch.manual_seed(seed)
        bb = load("python:tests.helpers_models:tiny_convnet", image_size=16)
        model = tiny_convnet()
        return save_checkpoint(
            where,
            "python:tests.helpers_models:tiny_convnet",
            model.state_dict(),
            preprocess=bb.preprocess,
        )

    ckpt = checkpoint(tmp_path / "ckpt" / "checkpoint.pt", 0)
    other = checkpoint(tmp_path / "other" / "checkpoint.pt", 1)
    path = _job(tmp_path, model=f'spec = "{ckpt}"\n')
    assert run_job(path, workers=1, quiet=True).ran == 3
    os.utime(ckpt, ns=(1, 1))  # the same bytes, another stamp: nothing to do
    assert job_status(path).reruns == 0 and _pending(dry_run(path)) == {}
    os.replace(other, ckpt)  # another run's checkpoint under the same name
    status = job_status(path)
    assert _pending(status) == {"extract": 2, "probe": 1}
    assert f"its model file {ckpt} changed since it ran" in status.rerun[0]
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "changed since it ran" in out and "probe" in out
    report = run_job(path, workers=1, quiet=True)
    assert report.ok and report.ran == 3
    assert len({p.parent.parent for p in _outputs(tmp_path / "v", "extract")}) == 1
    assert len(list((tmp_path / "v" / "cache").iterdir())) == 2  # a new model key


def test_deleted_cache_file_or_part_is_missing_for_status_and_dry_run(tmp_path, capsys):
    path = _job(tmp_path)
    assert run_job(path, workers=1, quiet=True).ran == 3
    [part] = _outputs(tmp_path / "v", "probe")
    part.unlink()
    capsys.readouterr()
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"its output {part} is missing" in out
    assert _pending(dry_run(path)) == {"probe": 1}
    report = run_job(path, workers=1, quiet=True)
    assert report.ran == 1 and part.is_file()
    cache = next(p for p in _outputs(tmp_path / "v", "extract") if p.name == "train.h5")
    cache.unlink()
    status = job_status(path)
    assert _pending(status) == {"extract": 1, "probe": 1}
    assert f"its output {cache} is missing" in status.rerun[0]
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "its output" in capsys.readouterr().out
    report = run_job(path, workers=1, quiet=True)
    assert report.ok and report.ran == 2 and cache.is_file()
    assert _pending(job_status(path)) == {}


def test_damaged_part_is_written_again(tmp_path):
    path = _job(tmp_path)
    assert run_job(path, workers=1, quiet=True).ran == 3
    [part] = _outputs(tmp_path / "v", "probe")
    good = part.read_bytes()
    part.write_bytes(good[: len(good) // 2])
    status = job_status(path)
    assert status.rerun == [status.rerun[0]] and "changed since it ran" in status.rerun[0]
    assert run_job(path, workers=1, quiet=True).ran == 1
    assert part.stat().st_size == len(good)


@pytest.mark.slow
def test_truncated_checkpoint_of_a_done_sweep_unit_is_made_again(tmp_path, capsys, monkeypatch):
    """The real pre-training: a complete run folder whose checkpoint was truncated is trained
    again (not returned as complete and then refused by extraction)."""
    from layerprobe.backbones.checkpoint import read_checkpoint

    monkeypatch.setenv("LAYERPROBE_HOME", str(tmp_path / "home"))
    grid = (
        '[pretrain]\nmodel = "resnet-tiny32"\ntask = "builtin/histology"\ndata_fraction = 0.5\n'
        'epochs = 1\nbatch_size = 32\nwarmup_epochs = 0\ndevice = "cpu"\nimage_size = 16\n'
    )
    text = (
        f'[job]\nname = "s"\ndir = "{tmp_path / "s"}"\ntasks = ["builtin/histology"]\n\n{grid}'
        "\n[probe]\nshots = [2]\nseeds = 1\nl2s = [1.0]\n"
    )
    path = write_job(tmp_path / "s.toml", text)
    first = run_job(path, workers=1, quiet=True)
    assert first.ok, first.failures
    [ckpt] = list((tmp_path / "s" / "runs").glob("*/checkpoint.pt"))
    weights = read_checkpoint(ckpt).state_dict
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    status = job_status(path)
    assert status.counts["pretrain"]["done"] == 0
    assert f"its output {ckpt} changed since it ran" in status.rerun[0]
    report = run_job(path, workers=1, quiet=True)
    assert report.ok, report.failures
    assert report.counts["pretrain"]["ran"] == 1
    again = read_checkpoint(ckpt).state_dict
    assert all(np.array_equal(weights[k].numpy(), again[k].numpy()) for k in weights)
    assert _pending(job_status(path)) == {}
