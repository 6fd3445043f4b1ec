"""Batch jobs at the paper's scale, and the cost of ``layerprobe run`` over the work itself.

1. Scale. A job of 4,800 pre-training configs (4 models x 5 data fractions x 3 epochs x 4 head
   weight decays x 4 head learning-rate multipliers x 5 seeds) on 25 tasks with 3 splits:
   4,800 pretrain + 360,000 extract + 120,000 probe units, with a fake state where part of the
   outputs exist (done records for 60 % of the pretrain, 50 % of the extract and 30 % of the
   probe units, 200 failed, 50 running). Timed, each in a fresh process: the plan (read the
   file, expand it), ``layerprobe run --dry-run`` and ``layerprobe status``. Wall time from the
   shell and peak memory (``ru_maxrss`` of ``RUSAGE_CHILDREN``, from a wrapper process per
   command). Goal: each under 10 s and under 1 GiB.
2. Overhead. A small real job -- 2 tiny models (a 3-block ViT, a 3-layer convnet) x 3
   built-in tasks: 18 extract + 6 probe units -- run by ``layerprobe run --workers 1`` versus a
   script that does the same units' work back to back in one process with the stages' own
   functions (``extract`` per split, then the probe of the task; no jobs module). Both from a
   fresh process and fresh folders, interleaved, best of N. Goal: run / direct <= 1.05.

    python benchmarks/jobs_scale.py            # both parts, 3 overhead repeats
    python benchmarks/jobs_scale.py --quick    # 1 overhead repeat
    python benchmarks/jobs_scale.py --no-overhead / --no-scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS, GOAL_MIB, GOAL_OVERHEAD = 10.0, 1024.0, 1.05
TASKS_25 = '["vtab1k/*", "imagenet", "cars", "birds", "col_hist", "uc_merced", "cifar10"]'
PAPER_JOB = f"""
[job]
name = "paper-scale"
dir = "ROOT/job"
tasks = {TASKS_25}

[pretrain]
model = ["vit-ti16", "vit-s16", "vit-b16", "vit-l16"]
task = "imagenet"
data_fraction = [0.02, 0.1, 0.25, 0.5, 1.0]
epochs = [7, 14, 21]
head_wd = [0.0, 0.01, 0.1, 1.0]
head_lr_mult = [0.1, 0.5, 1.0, 2.0]
seed = [0, 1, 2, 3, 4]

[probe]
shots = [1, 25]
seeds = 3

[run]
executor = "slurm"
"""
SMALL_TASKS = ("builtin/textures", "builtin/histology", "builtin/occlusion")
SMALL_JOB = """
[job]
name = "overhead"
dir = "ROOT/job"
tasks = ["builtin/textures", "builtin/histology", "builtin/occlusion"]

[[models]]
spec = "timm:vit_tiny_patch16_224"
model_args = { img_size = 32, patch_size = 4, depth = 3, embed_dim = 48, num_heads = 3, num_classes = 10 }

[[models]]
spec = "python:tests.helpers_models:tiny_convnet"
image_size = 32

[extract]
batch_size = 256

[probe]
shots = [1, 5]
seeds = 2
l2s = [0.1, 1.0, 10.0]
"""
DIRECT = """
import sys
from pathlib import Path
from layerprobe.backbones.config import ModelConfig
from layerprobe.extract.cache import read_info
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.run import extract
from layerprobe.probe.run import ProbeConfig, Unit, probe_unit, unit_identity
from layerprobe.results.parts import write_part

root = Path(sys.argv[1])
models = [
    ModelConfig("timm:vit_tiny_patch16_224", model_args=dict(img_size=32, patch_size=4, depth=3,
                embed_dim=48, num_heads=3, num_classes=10)),
    ModelConfig("python:tests.helpers_models:tiny_convnet", image_size=32),
]
probe = ProbeConfig(shots=[1, 5], seeds=2, l2s=[0.1, 1.0, 10.0])
for model in models:
    bb = model.load()
    for task in TASKS:
        infos = {}
        for split in ("train", "val", "test"):
            config = ExtractConfig(cache_dir=root / "cache", splits=[split], batch_size=256, quiet=True)
            [path] = extract(bb, task, config)
            infos[split] = read_info(path)
        unit = Unit(infos["train"].model_key, task, infos)
        write_part(probe_unit(unit, probe), root / "results", unit_identity(unit, probe))
""".replace("TASKS", repr(SMALL_TASKS))
MEASURE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "dt = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps([dt, u.ru_maxrss / 1024, u.ru_utime + u.ru_stime, p.returncode,\n"
    "                  p.stdout[-3000:], p.stderr[-3000:]]))\n"
)


def plan_command(path: Path) -> list[str]:
    """A fresh Python that loads the job file ``path`` and expands it into units (the floor
    under every job command's time)."""
    code = (
        "import sys; from layerprobe.jobs import load_job, make_plan; "
        "print(len(make_plan(load_job(sys.argv[1])).units))"
    )
    return [sys.executable, "-c", code, str(path)]


def measure(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, peak MiB, CPU seconds, output) of ``cmd`` in a fresh process; raises if
    it fails. CPU seconds (user + system) are what the wall time is on an idle machine for
    single-threaded work; the wall time grows with other load on the machine."""
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    }
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    seconds, mib, cpu, rc, stdout, stderr = json.loads(out.stdout)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}):\n{stdout}\n{stderr}")
    return seconds, mib, cpu, stdout


def fake_state(job_dir: Path, units) -> dict[str, int]:
    """Done records for part of the units (60 % pretrain, 50 % extract, 30 % probe), 200
    failed and 50 running ones; returns how many of each were written."""
    share = {"pretrain": 0.6, "extract": 0.5, "probe": 0.3}
    written = {"done": 0, "failed": 0, "running": 0}
    seen = {s: 0 for s in share}
    total = {s: sum(1 for u in units if u.stage == s) for s in share}
    record = b'{"outputs": []}'
    made = set()
    for unit in units:
        seen[unit.stage] += 1
        if seen[unit.stage] <= share[unit.stage] * total[unit.stage]:
            kind = "done"
        elif unit.stage == "probe" and written["failed"] < 200:
            kind = "failed"
        elif unit.stage == "extract" and written["running"] < 50:
            kind = "running"
        else:
            continue
        folder = job_dir / "state" / kind / unit.stage
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        body = (
            record if kind == "done" else json.dumps({"error": "fake", "log": "/dev/null"}).encode()
        )
        fd = os.open(folder / unit.id, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, body)
        os.close(fd)
        written[kind] += 1
    return written


def scale(root: Path) -> list[tuple]:
    from layerprobe.jobs import load_job, make_plan

    path = root / "paper.toml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(PAPER_JOB.replace("ROOT", str(root)))
    plan = make_plan(load_job(path))
    counts = plan.counts()
    print(f"paper-scale job: {counts} ({len(plan.units):,} units)", flush=True)
    start = time.perf_counter()
    written = fake_state(root / "job", plan.units)
    print(f"fake state: {written} records in {time.perf_counter() - start:.1f} s", flush=True)
    del plan
    py = [sys.executable]
    plan_cmd = plan_command(path)
    rows = []
    for name, cmd in (
        ("plan (load + expand)", plan_cmd),
        ("run --dry-run", py + ["-m", "layerprobe", "run", str(path), "--dry-run"]),
        ("status", py + ["-m", "layerprobe", "status", str(path)]),
    ):
        seconds, mib, cpu, out = measure(cmd)
        rows.append((name, seconds, cpu, mib, seconds < GOAL_SECONDS and mib < GOAL_MIB))
        if name == "status":
            print(out, flush=True)
    return rows, counts


def overhead(root: Path, repeats: int) -> list[tuple]:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "small.toml"
    script = root / "direct.py"
    script.write_text(DIRECT)
    times = {"direct": [], "run": []}
    cpus = {"direct": [], "run": []}
    for r in range(repeats):
        for name in ("direct", "run"):
            work = root / f"{name}{r}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            if name == "direct":
                cmd = [sys.executable, str(script), str(work)]
            else:
                path.write_text(SMALL_JOB.replace("ROOT", str(work)))
                cmd = [
                    sys.executable,
                    "-m",
                    "layerprobe",
                    "run",
                    str(path),
                    "--workers",
                    "1",
                    "--quiet",
                ]
            seconds, _, cpu, _ = measure(cmd)
            times[name].append(seconds)
            cpus[name].append(cpu)
            print(f"  {name} #{r + 1}: {seconds:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return times, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one overhead repeat")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--no-overhead", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobs-scale-") as tmp:
        root = Path(tmp)
        if not args.no_scale:
            rows, counts = scale(root / "scale")
            print(
                f"\n{'paper scale':<24}{'wall s':>10}{'CPU s':>10}{'peak MiB':>10}  "
                f"goal <{GOAL_SECONDS:g} s wall, <{GOAL_MIB:g} MiB"
            )
            for name, seconds, cpu, mib, ok in rows:
                print(
                    f"{name:<24}{seconds:>10.2f}{cpu:>10.2f}{mib:>10.0f}  {'met' if ok else 'NOT met'}"
                )
        if not args.no_overhead:
            print(
                "\noverhead: 2 tiny models x 3 built-in tasks (18 extract + 6 probe units)",
                flush=True,
            )
            times, cpus = overhead(root / "overhead", 1 if args.quick else 3)
            n = len(times["run"])
            print(f"\n{f'overhead (best of {n})':<24}{'wall s':>10}{'CPU s':>10}")
            for name, label in (("direct", "direct, one process"), ("run", "layerprobe run -w 1")):
                print(f"{label:<24}{min(times[name]):>10.2f}{min(cpus[name]):>10.2f}")
            wall = min(times["run"]) / min(times["direct"])
            cpu = min(cpus["run"]) / min(cpus["direct"])
            print(
                f"{'run / direct':<24}{wall:>10.3f}{cpu:>10.3f}  goal <= {GOAL_OVERHEAD:g}: "
                f"{'met' if wall <= GOAL_OVERHEAD else 'NOT met'} (wall), "
                f"{'met' if cpu <= GOAL_OVERHEAD else 'NOT met'} (CPU)"
            )


if __name__ == "__main__":
    main()
