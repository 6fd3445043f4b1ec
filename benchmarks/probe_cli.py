"""`layerprobe probe` from the shell, timed against its own engine and a numpy port, same run.

The standard sweep as a user runs it: 20 tasks of float16 caches on disk (12 layers, D = 384,
10 classes, 2,000 train / 200 val / 1,000 test rows each), shots 1/5/10/25 × 3 seeds × 30 λ.

- CLI: ``python -m layerprobe probe --cache … --results <fresh folder>`` in a subprocess,
  process start to exit (the last Parquet part renamed);
- engine: the torch backend in this process on the same features, already in memory
  (float32), one call per task, as ``benchmarks/probe_sweep.py`` times it;
- numpy: the recipe written plainly (``probe_sweep.numpy_recipe``), in memory.

Runs of the CLI and the engine are interleaved and their medians compared (the machine is
shared: ratios within one run, not absolute times). The CLI's rows (``layerprobe.results.load``)
must equal the engine's and the numpy port's accuracies exactly.

Usage: ``python benchmarks/probe_cli.py [--tasks 20] [--repeats 3] [--numpy-tasks 20]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_sweep import numpy_recipe  # noqa: E402

from layerprobe.extract.cache import cache_path, read_arrays  # noqa: E402
from layerprobe.extract.writer import PartialCache  # noqa: E402
from layerprobe.probe.backends import torch_backend  # noqa: E402
from layerprobe.probe.plan import plan_probes  # noqa: E402
from layerprobe.probe.problems import DEFAULT_L2S, ProbeSet  # noqa: E402

LAYERS, DIM, CLASSES = 12, 384, 10
ROWS = {"train": 2000, "val": 200, "test": 1000}
SHOTS, SEEDS = (1, 5, 10, 25), 3
MODEL_KEY = "bench-vit-s16-0123456789ab"
ROOT = Path(__file__).resolve().parent.parent


def write_caches(cache_dir: Path, num_tasks: int) -> None:
    """Float16 caches of every split, written through the extractor's own writer."""
    layers = [f"blocks.{i}" for i in range(LAYERS)]
    for task in range(num_tasks):
        rng = np.random.default_rng(task)
        centers = [rng.normal(size=(CLASSES, DIM)) * (0.05 + 0.02 * i) for i in range(LAYERS)]
        scales = [rng.uniform(0.5, 2.0, DIM) for _ in range(LAYERS)]  # as real features
        for split, rows in ROWS.items():
            labels = rng.permutation(np.arange(rows) % CLASSES)
            feats = {
                name: ((c[labels] + rng.normal(size=(rows, DIM))) * s + 1.0).astype(np.float16)
                for name, c, s in zip(layers, centers, scales, strict=True)
            }
            header = {
                "model": "timm:vit_small_patch16_224",
                "model_key": MODEL_KEY,
                "weights_sha256": "ab" * 32,
                "task": f"bench/task{task:02d}",
                "task_fingerprint": f"bench-{task}",
                "split": split,
                "layers": layers,
                "depths": [(i + 1) / LAYERS for i in range(LAYERS)],
                "pooling": "cls",
                "preprocess": {"input_size": 224, "resize": "squash"},
                "pretrain": {},
                "dtype": "float16",
                "amp": "none",
                "layerprobe_version": "bench",
                "num_items": rows,
                "item_start": 0,
                "item_stop": rows,
            }
            final = cache_path(cache_dir, MODEL_KEY, header["task"], split)
            part = PartialCache.open(final.with_name(final.name + ".partial"), header, {n: DIM for n in layers})
            part.write(feats, labels, np.arange(rows), rows)
            part.finish(final)


def load_tasks(cache_dir: Path, num_tasks: int) -> list[tuple[str, ProbeSet]]:
    """Each task's probes as the runner builds them, features float32 in memory."""
    out = []
    for task in range(num_tasks):
        name = f"bench/task{task:02d}"
        split = {s: read_arrays(cache_path(cache_dir, MODEL_KEY, name, s)) for s in ROWS}
        layers = list(split["train"][2])
        labels = {s: split[s][0] for s in ROWS}
        plan = plan_probes(labels["train"], SHOTS, SEEDS, has_val_split=True)
        train = [split["train"][2][n].astype(np.float32) for n in layers]
        evals = [
            np.concatenate([split["val"][2][n], split["test"][2][n]]).astype(np.float32)
            for n in layers
        ]
        y_eval = np.concatenate([labels["val"], labels["test"]])
        group = np.repeat([0, 1], [ROWS["val"], ROWS["test"]])
        probes = ProbeSet(train, labels["train"], plan.subsets, evals, y_eval, group, 2, CLASSES, layers)
        out.append((name, probes, plan))
    return out


def run_cli(cache_dir: Path, results: Path) -> float:
    shutil.rmtree(results, ignore_errors=True)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "layerprobe", "probe", "--cache", str(cache_dir)]
    cmd += ["--results", str(results), "--device", "cpu", "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def run_engine(tasks, l2s) -> tuple[float, list[np.ndarray]]:
    counts, seconds = [], 0.0
    for _, probes, _ in tasks:
        start = time.perf_counter()
        counts.append(torch_backend(probes, l2s, "cpu", "float64"))
        seconds += time.perf_counter() - start
    return seconds, counts


def compare(results: Path, tasks, counts: list[np.ndarray], l2s) -> tuple[int, int]:
    """(identical, total) accuracy values of the CLI's rows vs the engine's counts."""
    from layerprobe.results import load

    rows = load(results)
    same = total = 0
    for (name, probes, plan), count in zip(tasks, counts, strict=True):
        sizes = probes.group_sizes()
        part = rows[rows["task"] == name]
        layer = {n: i for i, n in enumerate(probes.layer_names)}
        probe = {key: p for p, key in enumerate(plan.keys)}
        li = part["layer"].map(layer).to_numpy()
        pi = np.array([probe[(k, s)] for k, s in zip(part["shots"], part["seed"], strict=True)])
        ji = np.searchsorted(l2s, part["l2"].to_numpy())
        for g, column in enumerate(("val_accuracy", "test_accuracy")):
            want = count[li, pi, g, ji] / sizes[g]
            same += int((part[column].to_numpy() == want).sum())
        total += 2 * count[..., 0, :].size
    return same, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of CLI and engine")
    parser.add_argument("--numpy-tasks", type=int, default=20, help="tasks timed for numpy")
    parser.add_argument("--keep", metavar="DIR", help="write the caches here and keep them")
    args = parser.parse_args()
    l2s = np.asarray(DEFAULT_L2S)
    work = Path(args.keep or tempfile.mkdtemp(prefix="probe-cli-"))
    cache = work / "cache"
    if not cache.exists():
        write_caches(cache, args.tasks)
    tasks = load_tasks(cache, args.tasks)
    fits = LAYERS * args.tasks * len(SHOTS) * SEEDS * len(l2s)
    print(f"{fits:,} probe fits, {args.tasks} tasks; {os.cpu_count()} CPUs; caches in {cache}")

    run_engine(tasks[:1], l2s)  # warm-up (thread pools, allocator)
    cli_times, engine_times = [], []
    for r in range(args.repeats):
        cli_times.append(run_cli(cache, work / f"results{r}"))
        seconds, counts = run_engine(tasks, l2s)
        engine_times.append(seconds)
    same, total = compare(work / "results0", tasks, counts, l2s)
    numpy_same = numpy_total = 0
    start = time.perf_counter()
    for (_, probes, _), count in zip(tasks[: args.numpy_tasks], counts, strict=False):
        reference = numpy_recipe(probes, l2s)
        numpy_same += int((reference == count).sum())
        numpy_total += reference.size
    numpy_time = (time.perf_counter() - start) * args.tasks / max(min(args.numpy_tasks, args.tasks), 1)

    cli, engine = statistics.median(cli_times), statistics.median(engine_times)
    print()
    print(f"{'method':<52} {'time (s)':>9} {'CLI vs it':>10}")
    for name, seconds in (
        ("layerprobe probe, from the shell (median)", cli),
        ("engine in-process, torch backend per task (median)", engine),
        (f"numpy port, in memory ({min(args.numpy_tasks, args.tasks)} tasks timed)", numpy_time),
    ):
        print(f"{name:<52} {seconds:>9.2f} {seconds / cli:>9.2f}x")
    print(
        f"runs (s): CLI {', '.join(f'{t:.2f}' for t in cli_times)}; "
        f"engine {', '.join(f'{t:.2f}' for t in engine_times)}"
    )
    print(
        f"accuracies: CLI rows vs engine {same:,} of {total:,} identical; "
        f"engine vs numpy {numpy_same:,} of {numpy_total:,} counts identical"
    )
    ok_engine, ok_numpy = cli <= 1.3 * engine, numpy_time >= 4 * cli
    print(
        f"goals: CLI <= 1.3x engine: {cli / engine:.2f}x {'met' if ok_engine else 'NOT met'}; "
        f"CLI >= 4x faster than numpy: {numpy_time / cli:.2f}x {'met' if ok_numpy else 'NOT met'}; "
        f"identical: {'yes' if same == total and numpy_same == numpy_total else 'NO'}"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
