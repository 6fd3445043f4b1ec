"""Progress on long work: lines on stderr where it is not a terminal, a bar where it is, nothing
with quiet; reused work says it was reused; `demo --help` quotes the README's times.
(`upstream`'s labelled output: tests/test_pretrain_downstream.py.)"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from cachefiles import write_task

from layerprobe import progress
from layerprobe.progress import Progress, duration
from tests.helpers_pretrain import lp_home_fixture  # noqa: F401 - the shared image cache
from tests.jobs_helpers import job_text, write_job

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def lines(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


# ------------------------------------------------------------------ the helper
def test_plain_lines_first_last_and_throttled(capsys, monkeypatch):
    with Progress(4, desc="probe", unit="unit", first=True, last=True) as bar:
        for i in range(4):
            bar.update(note=f"task {i}")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2  # the first and the last; the others fall inside the 30 s interval
    assert err[0].startswith("layerprobe: probe: unit 1/4 (25%), ") and "ETA" in err[0]
    assert err[0].endswith("— task 0")
    assert err[1].startswith("layerprobe: probe: unit 4/4 (100%), ") and "ETA 0 s" in err[1]
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # every step is due
    with Progress(3, desc="epoch 1/2", rate=(32, "img/s")) as bar:
        for _ in range(3):
            bar.update()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in err] == [
        f"layerprobe: epoch 1/2: step {i}/3 ({100 * i / 3:.0f}%)" for i in (1, 2, 3)
    ]
    assert all(re.search(r", [0-9.]+ img/s, ETA ", line) for line in err)


def test_resumed_work_counts_only_this_runs_pace(capsys):
    bar = Progress(10, desc="extract", unit="img", initial=6, first=True)
    assert bar.eta() is None  # nothing done in this run yet: no guess
    bar.update(2)
    assert bar.line().startswith("extract: img 8/10 (80%)")
    assert capsys.readouterr().err.startswith("layerprobe: extract: img 8/10 (80%)")


def test_quiet_prints_nothing_anywhere(capsys, monkeypatch):
    for stream in (None, Terminal()):
        if stream is not None:
            monkeypatch.setattr(sys, "stderr", stream)
        with Progress(2, desc="probe", quiet=True, first=True, last=True) as bar:
            bar.update(2)
            bar.write("hello")
        assert (stream.getvalue() if stream else capsys.readouterr().err) == ""


def test_terminal_gets_a_bar_not_lines(monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with Progress(3, desc="probe", unit="unit", first=True, last=True) as bar:
        bar.update(3, note="last task")
    assert "3/3" in term.getvalue() and "\r" in term.getvalue()
    assert "layerprobe: probe" not in term.getvalue()


def test_duration_reads_as_people_write_it():
    assert [duration(s) for s in (0.4, 42, 185, 3725)] == [
        "0 s",
        "42 s",
        "3 min 05 s",
        "1 h 02 min",
    ]


# ------------------------------------------------------------------ extraction and probing
def test_extraction_shows_each_split_and_reuse(tiny_vit, image_folder, tmp_path, capsys):
    from layerprobe.extract import extract

    task = f"folder:{image_folder}"
    extract(tiny_vit, task, cache_dir=tmp_path, layers="pre_logits", batch_size=8, device="cpu")
    err = capsys.readouterr().err
    [line] = lines(err, f"extract {task}/")
    assert re.search(r"\(split 1 of \d\): img 8/\d+ \(\d+%\), .* elapsed, .* img/s, ETA ", line)
    extract(tiny_vit, task, cache_dir=tmp_path, layers="pre_logits", device="cpu")
    assert "reusing complete cache" in capsys.readouterr().err
    extract(tiny_vit, task, cache_dir=tmp_path / "q", layers="pre_logits", quiet=True)
    assert capsys.readouterr().err == ""


def test_probing_shows_each_unit_and_reuse(tmp_path, capsys):
    from layerprobe.probe.run import ProbeConfig, run_probes

    for task in ("a", "b"):
        write_task(tmp_path / "cache", task=task, num_classes=3, widths={"pre_logits": 6})
    config = ProbeConfig(shots=(1,), seeds=1, device="cpu")
    run_probes(tmp_path / "cache", tmp_path / "results", config)
    err = capsys.readouterr().err
    assert len(lines(err, "layerprobe: probe: unit 1/2 (50%)")) == 1
    [last] = lines(err, "layerprobe: probe: unit 2/2 (100%)")
    assert "ETA 0 s" in last and last.endswith("/b")
    run_probes(tmp_path / "cache", tmp_path / "results", config)
    assert capsys.readouterr().err == (
        "layerprobe: probe: 2 of 2 unit(s) already probed; reusing their parts (nothing to probe)\n"
    )
    run_probes(tmp_path / "cache", tmp_path / "quiet", config, quiet=True)
    run_probes(tmp_path / "cache", tmp_path / "quiet", config, quiet=True)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ pre-training, demo step
def test_demo_pretraining_and_extraction_show_progress_and_reuse(
    lp_home, tmp_path, capsys, monkeypatch
):
    from layerprobe.pipelines import demo

    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # a step line as if every step took 30 s
    small = dict(task="builtin/textures", batch_size=32, warmup_epochs=0.1, device="cpu")
    monkeypatch.setattr(demo, "PRETRAIN", small)  # 300 images: seconds, not minutes
    ladder = (demo.Rung("tiny", "resnet-tiny32", 1.0, 2, snapshots=(1,)),)
    paths = demo._pretrain(ladder, tmp_path / "runs", demo._sayer(False), False)
    err = capsys.readouterr().err
    assert len(paths) == 2 and paths[-1].name == "checkpoint.pt"  # a snapshot, the end
    assert "layerprobe demo: stage 1/4: pre-training 1 run(s)\n" in err
    assert "layerprobe demo: pre-training 1/1: tiny (resnet-tiny32, data 1, 2 epochs)" in err
    epochs = lines(err, "layerprobe: pre-training tiny epoch ")
    steps = [line for line in epochs if ": step " in line]
    ends = [line for line in epochs if "loss" in line]
    assert [line.split(" (step")[0] for line in ends] == [
        f"layerprobe: pre-training tiny epoch {e}/2" for e in (1, 2)
    ]
    assert all("img/s" in line and "ETA" in line for line in ends)
    n = int(re.search(r"step \d+/(\d+)", steps[0]).group(1))
    assert len(steps) == 2 * n and "ETA 0 s" in ends[-1]
    assert all(re.search(r"step \d+/\d+ \(\d+%\), .* img/s, ETA ", line) for line in steps)
    # a second run trains nothing and says so, instead of "pre-training 1/1"
    again = demo._pretrain(ladder, tmp_path / "runs", demo._sayer(False), False)
    err = capsys.readouterr().err
    assert again == paths and "epoch" not in err and "pre-training 1/1" not in err
    assert "1 of 1 complete already, reused" in err
    assert "layerprobe demo: pre-training: 1 of 1 run(s) reused, 0 trained (2 checkpoints)" in err
    demo._pretrain(ladder, tmp_path / "runs", demo._sayer(True), True)
    assert capsys.readouterr().err == ""
    # the extraction step: one unit per (checkpoint, task), then the same units reused
    monkeypatch.setattr(progress, "INTERVAL", 30.0)
    cache, tasks = tmp_path / "cache", ["builtin/histology"]
    demo._extract(paths, tasks, cache, demo._sayer(False), False)
    err = capsys.readouterr().err
    assert "layerprobe demo: stage 2/4: extracting every layer of 2 checkpoints on 1 tasks" in err
    assert [line.split(",")[0] for line in lines(err, "layerprobe: extract: ")] == [
        "layerprobe: extract: unit 1/2 (50%)",
        "layerprobe: extract: unit 2/2 (100%)",
    ]
    assert err.rstrip().endswith("ETA 0 s — checkpoint 2/2 builtin/histology")
    demo._extract(paths, tasks, cache, demo._sayer(False), False)
    err = capsys.readouterr().err
    assert "— checkpoint 2/2 builtin/histology (reused)" in err
    assert f"layerprobe demo: extraction: 2 of 2 units reused from {cache}" in err


# ------------------------------------------------------------------ run: the plan
GRID = (  # a real pre-training unit, small: 300 images, 2 epochs of seconds each
    '\n[pretrain]\nmodel = "resnet-tiny32"\ntask = "builtin/textures"\nepochs = 2\n'
    'batch_size = 32\nwarmup_epochs = 0.1\ndevice = "cpu"\n'
)


def test_run_shows_the_plan_and_says_what_it_reused(lp_home, tmp_path, capsys):
    from layerprobe.jobs import run_job

    path = write_job(tmp_path / "one.toml", job_text("one", tmp_path, ["builtin/histology"], GRID))
    report = run_job(path, in_process=True)
    err = capsys.readouterr().err
    assert report.ok and report.ran == 5  # pretrain; extract train, val and test; probe
    assert "layerprobe: job one: running 5 unit(s) (pretrain 0/1, extract 0/3, probe 0/1)" in err
    steps = lines(err, "layerprobe: run one: unit ")
    assert [line.split(",")[0] for line in steps] == [  # the first, the last; 30 s between
        "layerprobe: run one: unit 1/5 (20%)",
        "layerprobe: run one: unit 5/5 (100%)",
    ]
    assert "— pretrain " in steps[0] and "(pretrain 1/1 complete)" in steps[0]
    assert re.search(r"ETA \d+ (s|min \d+ s) — ", steps[0])
    assert re.search(r"— probe \S+ done \(probe 1/1 complete\)$", steps[-1])
    again = run_job(path, in_process=True)
    assert again.ran == 0 and capsys.readouterr().err == (
        "layerprobe: job one: all 5 unit(s) done already (pretrain 1/1, extract 3/3, probe 1/1); "
        "reusing them, nothing to run\n"
    )
    run_job(path, in_process=True, quiet=True)
    assert capsys.readouterr().err == ""


@pytest.mark.slow  # worker processes on a loaded 2-core machine: about a minute
def test_run_relays_the_epochs_of_a_pretraining_worker(lp_home, tmp_path, capsys, monkeypatch):
    from layerprobe.jobs import run_job

    path = write_job(tmp_path / "one.toml", job_text("one", tmp_path, ["builtin/histology"], GRID))
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # every tick (~1 s) says what is running
    report = run_job(path, workers=1)  # a supervised worker process, as `layerprobe run` runs
    err = capsys.readouterr().err
    assert report.ok and report.ran == 5
    steps = lines(err, "layerprobe: run one: unit ")
    assert [line.split(",")[0] for line in steps] == [
        f"layerprobe: run one: unit {i}/5 ({20 * i}%)" for i in (1, 2, 3, 4, 5)
    ]
    # while the pre-training unit runs, its epochs reach the run's stderr from its log
    epochs = re.findall(
        r"layerprobe: running pretrain \S+ \(for [^)]+\): pre-training \S+ "
        r"epoch (\d)/2 \(step \d+\) +loss .* img/s +ETA ",
        err,
    )
    assert epochs, err  # an epoch line, relayed while the unit still runs


# ------------------------------------------------------------------ what commands say
def test_demo_help_and_readme_quote_the_same_times():
    from layerprobe.commands import demo

    parser = __import__("argparse").ArgumentParser()
    demo.add_parser(parser.add_subparsers())
    help_text = " ".join(parser._subparsers._group_actions[0].choices["demo"].description.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    full = float(re.search(r"([0-9.]+) minutes for `make demo` on a quiet 2-core", readme)[1])
    quick = float(re.search(r"([0-9.]+) s for `--quick`", readme)[1]) / 60
    said = re.search(
        r"About ([0-9.]+) minutes on a quiet 2-core CPU, longer on a busy one "
        r"\(--quick: about ([0-9.]+) minutes\)",
        help_text,
    )
    assert said, help_text
    assert abs(float(said[1]) - full) <= 0.6 and abs(float(said[2]) - quick) <= 0.2
