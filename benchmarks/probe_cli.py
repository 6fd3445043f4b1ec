"""`layerprobe probe` from the shell, timed against its own engine and a numpy port, same run.

The standard sweep as a user runs it: 20 tasks of float16 caches on disk (12 layers, D = 384,
10 classes, 2,000 train / 200 val / 1,000 test rows each), shots 1/5/10/25 × 3 seeds × 30 λ.

- CLI: ``python -m layerprobe probe --cache … --results <fresh folder>`` in a subprocess,
  process start to exit (the last Parquet part renamed);
- engine: the torch backend in this process on the same features, already in memory
  (float32), one call per task, as ``benchmarks/probe_sweep.py`` times it — the function the
  CLI calls, which on the CPU runs the numpy path (no torch);
- torch path: the same backend's torch path (``torch_backend.sweep`` on the CPU, what the
  engine ran before the numpy path), same features, its counts compared;
- start-up: a fresh interpreter importing what the CLI imports before its first unit, then
  exiting (the part of the CLI's time no engine change can reach);
- numpy: the recipe written plainly (``probe_sweep.numpy_recipe``), in memory, at its faster
  BLAS thread count (tried on the first task).

Runs of the CLI and the engine are interleaved and their medians compared (the machine is
shared: ratios within one run, not absolute times). Wall-clock and CPU seconds are both shown:
on an oversubscribed machine CPU seconds are the steadier measure. The CLI's rows
(``layerprobe.results.load``) must equal the engine's and the numpy port's accuracies exactly.
``--compare-with SRC`` also times the CLI of another source tree (e.g. before a change).

Usage: ``python benchmarks/probe_cli.py [--tasks 20] [--repeats 3] [--numpy-tasks 20]
[--keep DIR] [--compare-with SRC]``

The floor (issue #20): the sweep's own arithmetic — Gram matrices, eigendecompositions, the
lift and λ weights, the evaluation rows' products — timed alone on the same subsets in the
same run (:func:`time_floor`); the engine's ratio to it is what the engine adds.
"""

from __future__ import annotations

import argparse
import os
import resource
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
            final = cache_path(cache_dir, MODEL_KEY, header["task"], split=split)
            part = PartialCache.open(
                final.with_name(final.name + ".partial"), header, {n: DIM for n in layers}
            )
            part.write(feats, labels, np.arange(rows), items=rows)
            part.finish(final)


def load_tasks(cache_dir: Path, num_tasks: int) -> list[tuple[str, ProbeSet]]:
    """Each task's probes as the runner builds them, features float32 in memory."""
    out = []
    for task in range(num_tasks):
        name = f"bench/task{task:02d}"
        split = {s: read_arrays(cache_path(cache_dir, MODEL_KEY, name, split=s)) for s in ROWS}
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
        probes = ProbeSet(
            train, labels["train"], plan.subsets, evals, y_eval, group, 2, CLASSES, layers
        )
        out.append((name, probes, plan))
    return out


class Clock:
    """Wall-clock and CPU seconds (all threads, and finished child processes) of a block."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._start = (time.perf_counter(), _cpu())
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += _cpu() - self._start[1]


def _cpu() -> float:
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def run_cli(cache_dir: Path, results: Path, source: Path = ROOT) -> Clock:
    shutil.rmtree(results, ignore_errors=True)
    env = os.environ | {"PYTHONPATH": str(source)}
    cmd = [sys.executable, "-m", "layerprobe", "probe", "--cache", str(cache_dir)]
    cmd += ["--results", str(results), "--device", "cpu", "--quiet"]
    with Clock() as clock:
        subprocess.run(cmd, check=True, env=env, cwd=source)  # cwd leads sys.path under -m
    return clock


STARTUP = (
    "import layerprobe.cli, layerprobe.commands.probe, layerprobe.probe.run, "
    "layerprobe.probe.numpy_sweep"
)


def run_startup(source: Path = ROOT) -> Clock:
    """The probe command's start-up alone: a fresh interpreter importing what ``layerprobe
    probe`` imports before its first unit (the CLI, the probe runner and the numpy sweep:
    numpy, pandas, pyarrow, h5py; no torch on the CPU), then exiting."""
    env = os.environ | {"PYTHONPATH": str(source)}
    code = STARTUP
    with Clock() as clock:
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=source)
    return clock


def run_engine(tasks, l2s) -> tuple[Clock, list[np.ndarray]]:
    counts, clock = [], Clock()
    for _, probes, _ in tasks:
        with clock:
            counts.append(torch_backend(probes, l2s, device="cpu", precision="float64"))
    return clock, counts


def run_torch_path(tasks, l2s) -> tuple[Clock, list[np.ndarray]]:
    """The torch backend's torch path on the CPU (the engine before the numpy path), per task."""
    import torch

    from layerprobe.probe.backends import sweep_probes
    from layerprobe.probe.torch_backend import sweep

    counts, clock = [], Clock()
    for _, probes, _ in tasks:
        with clock:
            counts.append(sweep_probes(sweep, probes, l2s, device="cpu", dtype=torch.float64))
    return clock, counts


def time_numpy(tasks, counts, l2s) -> tuple[Clock, int, int, int]:
    """The numpy port over ``tasks`` at its faster BLAS setting (chosen on the first task: on a
    shared machine OpenBLAS's threads spin when the cores are oversubscribed, and one thread
    can be several times faster), the thread count, and its counts identical to ours."""
    from layerprobe.probe.solver import blas_threads

    trial = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        with blas_threads(threads), Clock() as clock:
            reference = numpy_recipe(tasks[0][1], l2s)
        trial[threads] = (clock, reference)
    threads = min(trial, key=lambda t: trial[t][0].wall)
    clock, first = trial[threads]
    references = [first]
    with blas_threads(threads):
        for _, probes, _ in tasks[1:]:
            with clock:
                references.append(numpy_recipe(probes, l2s))
    same = sum(int((r == c).sum()) for r, c in zip(references, counts, strict=False))
    return clock, threads, same, sum(r.size for r in references)


def floor_inputs(tasks) -> list[tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]]:
    """Per (task, layer): the standardised train subsets grouped by size (float64, (B, n, D + 1)
    each, with their ±1 targets (B, n, C)) and the evaluation rows with their bias column (float32, (M, D + 1)). Built before
    the clock starts: the floor times arithmetic, not gathering."""
    out = []
    for _, probes, _ in tasks:
        for train, evals in zip(probes.train, probes.evals, strict=True):
            by_size: dict[int, list[np.ndarray]] = {}
            for subset in probes.subsets:
                x = train[subset].astype(np.float64)
                x = (x - x.mean(0)) / (x.std(0) + 1e-5)
                xa = np.pad(x, ((0, 0), (0, 1)), constant_values=100.0)
                y = 2.0 * np.eye(probes.num_classes)[probes.y_train[subset]] - 1.0
                by_size.setdefault(len(subset), []).append((xa, y))
            z = np.pad(evals.astype(np.float32), ((0, 0), (0, 1)), constant_values=1.0)
            groups = [tuple(np.stack(a) for a in zip(*v, strict=True)) for v in by_size.values()]
            out.append((groups, z))
    return out


def time_floor(inputs, l2s) -> Clock:
    """The sweep's own arithmetic, timed alone (issue #20's floor): for every (task, layer) and
    shot count, the Gram matrices on the cheaper side, their eigendecompositions (one
    single-threaded LAPACK call per core, as the engine splits a batch), the lift and the λ
    weights, and the evaluation rows' products with them on the cheaper route — in the
    precisions the engine uses (float64 decompositions, float32 products). No bookkeeping,
    no accuracy counting, no gathering: what any implementation of the recipe must compute."""
    from layerprobe.probe.solver import dual_scoring_is_cheaper
    from layerprobe.runtime.pools import blas_threads, shared_pool

    workers = os.cpu_count() or 1
    pool = shared_pool(workers, "floor-eigh")
    lam = np.asarray(l2s, np.float64)
    with Clock() as clock:
        for groups, z in inputs:
            products = []
            for xa, y in groups:  # (B, n, D + 1) standardised train rows, (B, n, C) ±1 targets
                batch, n, width = xa.shape
                dual = n < width  # the eigendecomposition on the cheaper side
                xt = xa.transpose(0, 2, 1)
                gram = xa @ xt if dual else xt @ xa
                with blas_threads(1):
                    parts = list(pool.map(np.linalg.eigh, np.array_split(gram, workers)))
                eigs = np.concatenate([e for e, _ in parts])  # (B, r)
                q = np.concatenate([v for _, v in parts])  # (B, r, r)
                qt = q.transpose(0, 2, 1)
                lift, rhs = (xt @ q, qt @ y) if dual else (q, qt @ (xt @ y))  # (B, w, r), (B, r, C)
                weights = rhs[..., None] / (eigs[:, :, None, None] + lam)  # (B, r, C, L)
                weights = weights.reshape(batch, q.shape[-1], -1)
                if dual_scoring_is_cheaper(
                    q.shape[-1], width - 1, weights.shape[-1], num_rows=len(z)
                ):
                    products.append((lift.astype(np.float32), weights.astype(np.float32)))
                else:
                    products.append(((lift @ weights).astype(np.float32), None))
            for first, second in products:  # the evaluation rows through every probe
                scores = z @ first  # (B, M, r) or (B, M, C·L)
                if second is not None:
                    scores = scores @ second
    return clock


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
    parser.add_argument(
        "--compare-with", metavar="SRC", help="also time the CLI of another source tree (before)"
    )
    args = parser.parse_args()
    l2s = np.asarray(DEFAULT_L2S)
    work = Path(args.keep or tempfile.mkdtemp(prefix="probe-cli-"))
    cache = work / f"cache{args.tasks}"
    if not cache.exists():
        write_caches(cache, args.tasks)
    tasks = load_tasks(cache, args.tasks)
    fits = LAYERS * args.tasks * len(SHOTS) * SEEDS * len(l2s)
    print(f"{fits:,} probe fits, {args.tasks} tasks; {os.cpu_count()} CPUs; caches in {cache}")

    run_engine(tasks[:1], l2s)  # warm-up (thread pools, allocator)
    run_torch_path(tasks[:1], l2s)
    inputs = floor_inputs(tasks)
    time_floor(inputs[:1], l2s)  # warm-up
    cli, engine, floor, before, startup, torch_path = [], [], [], [], [], []
    for r in range(args.repeats):
        cli.append(run_cli(cache, work / f"results{r}"))
        startup.append(run_startup())
        clock, counts = run_engine(tasks, l2s)
        engine.append(clock)
        clock, torch_counts = run_torch_path(tasks, l2s)
        torch_path.append(clock)
        floor.append(time_floor(inputs, l2s))
        if args.compare_with:
            before.append(run_cli(cache, work / "before", Path(args.compare_with)))
    same, total = compare(work / "results0", tasks, counts, l2s)
    timed = min(args.numpy_tasks, args.tasks)
    numpy_clock, threads, numpy_same, numpy_total = time_numpy(tasks[:timed], counts, l2s)
    scale = args.tasks / max(timed, 1)

    def median(clocks, what):
        return statistics.median(getattr(c, what) for c in clocks)

    rows = [
        ("layerprobe probe, from the shell", median(cli, "wall"), median(cli, "cpu")),
        (
            "engine in-process, torch backend per task",
            median(engine, "wall"),
            median(engine, "cpu"),
        ),
        ("floor: the sweep's arithmetic alone", median(floor, "wall"), median(floor, "cpu")),
        (
            f"numpy port in memory, {threads} BLAS thread(s), {timed} tasks",
            numpy_clock.wall * scale,
            numpy_clock.cpu * scale,
        ),
    ]
    rows.append(
        (
            "start-up: the probe path's imports alone",
            median(startup, "wall"),
            median(startup, "cpu"),
        )
    )
    rows.append(
        (
            "torch path on the CPU (engine before)",
            median(torch_path, "wall"),
            median(torch_path, "cpu"),
        )
    )
    if before:
        rows.append((f"CLI of {args.compare_with}", median(before, "wall"), median(before, "cpu")))
    print()
    print(f"{'method (medians)':<48} {'wall (s)':>9} {'/ CLI':>7} {'CPU (s)':>9} {'/ CLI':>7}")
    for name, wall, cpu in rows:
        print(
            f"{name:<48} {wall:>9.2f} {wall / rows[0][1]:>6.2f}x {cpu:>9.2f} {cpu / rows[0][2]:>6.2f}x"
        )
    print(
        f"CLI / engine {rows[0][1] / rows[1][1]:.2f}x wall, {rows[0][2] / rows[1][2]:.2f}x CPU "
        f"(goal <= 1.3); engine / floor {rows[1][1] / rows[2][1]:.2f}x wall, "
        f"{rows[1][2] / rows[2][2]:.2f}x CPU (goal <= 1.3); load {os.getloadavg()[0]:.1f}"
    )
    start_s = rows[4][1]
    print(
        f"start-up {start_s:.2f} s of the CLI's {rows[0][1]:.2f} s; the CLI without it / engine "
        f"{(rows[0][1] - start_s) / rows[1][1]:.2f}x wall"
    )
    print(
        f"engine (numpy path) / torch path {rows[1][1] / rows[5][1]:.2f}x wall, "
        f"{rows[1][2] / rows[5][2]:.2f}x CPU"
    )
    runs = [("CLI", cli), ("engine", engine), ("floor", floor), ("start-up", startup)]
    runs.append(("torch path", torch_path))
    runs.append(("before", before))
    print(
        "runs, wall (s): "
        + "; ".join(f"{n} {', '.join(f'{c.wall:.2f}' for c in cs)}" for n, cs in runs if cs)
    )
    torch_same = sum(int((a == b).sum()) for a, b in zip(counts, torch_counts, strict=True))
    print(
        f"counts: engine vs torch path {torch_same:,} of {sum(c.size for c in counts):,} identical"
    )
    print(
        f"accuracies: CLI rows vs engine {same:,} of {total:,} identical; "
        f"engine vs numpy {numpy_same:,} of {numpy_total:,} counts identical"
    )
    cli_s, engine_s, floor_s, numpy_s = (row[1] for row in rows[:4])
    print(
        f"goals (wall): CLI <= 1.3x engine: {cli_s / engine_s:.2f}x "
        f"{'met' if cli_s <= 1.3 * engine_s else 'NOT met'}; engine <= 1.3x floor: "
        f"{engine_s / floor_s:.2f}x {'met' if engine_s <= 1.3 * floor_s else 'NOT met'}; "
        f"numpy port / CLI (a reference, not a goal): {numpy_s / cli_s:.2f}x; identical: "
        f"{'yes' if same == total and numpy_same == numpy_total else 'NO'}"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
