"""`layerprobe fit` and `layerprobe report` on a results store at the paper's scale.

The paper: 4,800 checkpoints × 25 tasks × 14 layers × shots 1 and 25 × 3 seeds, and here every λ
row kept (30 λ): about 302 M rows. The store is generated streaming, one Parquet part per model
key and task as the probe writes it (2,520 rows each at full size, with the unit identity the
store's reader validates), so it never sits in memory. Then `fit` and `report` run from
the shell as the user would, each in its own process; wall time and peak memory (the child's
ru_maxrss from os.wait4) are measured per command. Baseline in the same run: reading the whole
store with `layerprobe.results.load` (every row, every column), which is what the analysis would
cost without column projection and the `selected` filter; it is skipped above --baseline-max-rows
(it would not fit in memory) and the table says so.

The floor, measured in the same run and in its own process: pyarrow alone reading the columns a
fit reads (and the row key, as the store's reader does) from the selected rows of every part —
each part opened once, only the row groups that hold selected rows decoded, on the same few
threads the reader uses — with no validation, no pandas and no analysis. Every command's time is
printed as a ratio to it, since on a shared machine the ratio moves less than the seconds.

    python benchmarks/analysis_scale.py --checkpoints 200     # a small run (a minute)
    python benchmarks/analysis_scale.py                        # the paper's scale (once: slow)
    python benchmarks/analysis_scale.py --dir D --keep         # generate once into D, re-run

Each command runs twice: cold (the selected-rows cache beside the store, results/rowcache.py,
removed first: the command reads every part and builds it) and warm (the cache valid: one file
read). The goals apply to the warm runs. The store is written by --workers processes (each
checkpoint's draws from its own seed, so any number of workers writes the same store).

Goals (issue #20): `fit` ≤ 10 s, `fit --layer best` ≤ 20 s, `report` ≤ 60 s, each under 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from layerprobe.results.layout import write_part_table
from layerprobe.results.parts import IDENTITY_KEY, VERSION_KEY, part_path
from layerprobe.results.rowcache import CACHE_FOLDER, cache_path
from layerprobe.results.schema import SCHEMA_VERSION

GOALS_S = {"fit (pre_logits)": 10.0, "fit --layer best": 20.0, "report": 60.0}
GOAL_GIB = 2.0
FLOOR = "floor: pyarrow reads the selected rows"
ROOT = Path(__file__).resolve().parent.parent
# The floor's program: argv[1] the store; prints the rows read. The columns are the fit's
# (layerprobe.analysis.fit.READ_COLUMNS) with the row key and created_at, as the reader reads.
FLOOR_CODE = """
import os, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
from layerprobe.analysis.fit import READ_COLUMNS
from layerprobe.results.schema import PROBE_KEY
columns = list(dict.fromkeys([*READ_COLUMNS, *PROBE_KEY, "created_at", "selected"]))
def one(path):
    f = pq.ParquetFile(path)
    meta = f.metadata
    i = meta.schema.names.index("selected")
    groups = [g for g in range(meta.num_row_groups) if meta.row_group(g).column(i).statistics.max]
    return f.read_row_groups(groups, columns=columns, use_threads=False)
files = sorted(Path(sys.argv[1]).rglob("*.parquet"))
with ThreadPoolExecutor(min(4, 2 * (os.cpu_count() or 1))) as pool:
    table = pa.concat_tables(pool.map(one, files))
print(len(table.filter(table["selected"])))
"""


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", type=int, default=4800)
    p.add_argument("--tasks", type=int, default=25)
    p.add_argument("--layers", type=int, default=14)
    p.add_argument("--shots", default="1,25")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lambdas", type=int, default=30, help="λ rows kept per probe (30: all)")
    p.add_argument("--dir", type=Path, default=Path("/tmp/layerprobe-analysis-scale"))
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="passed to fit and report (default 0: the commands' own default, what a user runs)",
    )
    p.add_argument(
        "--states",
        default="cold,warm",
        help="which runs of each command: cold (no row cache; it builds one), warm (the cache "
        "is valid), or both (default); warm alone builds the cache first, untimed",
    )
    p.add_argument("--baseline-max-rows", type=float, default=40e6)
    p.add_argument("--keep", action="store_true", help="keep the generated store for a re-run")
    p.add_argument(
        "--workers", type=int, default=2, help="processes writing the parts of the store"
    )
    p.add_argument(
        "--layout",
        choices=["selected-first", "plain"],
        default="selected-first",
        help="parts with the selected rows in their own row group (results.layout), or one row "
        "group in probe order (today's probe writer)",
    )
    return p.parse_args()


# -- the generated store ------------------------------------------------------------------------


def _checkpoint_writer(args: argparse.Namespace, store: Path):
    """A function writing checkpoint ``c``'s parts (one per task); returns (parts, rows)."""
    shots = [int(s) for s in args.shots.split(",")]
    rng = np.random.default_rng(0)  # the tasks' curves: the same in every worker
    tasks = [f"task{t:02d}" for t in range(args.tasks)]
    layers = [f"blocks.{i}" for i in range(args.layers - 1)] + ["pre_logits"]
    # Per task: a saturation curve (k, α, e_IR) and the depth where its accuracy peaks.
    k = rng.uniform(0.5, 1.0, args.tasks)
    alpha = rng.uniform(1.2, 3.0, args.tasks)
    e_ir = rng.uniform(0.02, 0.5, args.tasks)
    peak = np.where(e_ir > 0.25, rng.uniform(0.3, 0.8, args.tasks), 1.0)
    l2 = 2.0 ** np.arange(-10, -10 + args.lambdas)
    # One probe per (task, layer, shots, seed); λ varies fastest within it.
    n_probe = args.tasks * args.layers * len(shots) * args.seeds
    t_i, l_i, s_i, seed_i = (
        a.ravel()
        for a in np.meshgrid(
            np.arange(args.tasks),
            np.arange(args.layers),
            np.arange(len(shots)),
            np.arange(args.seeds),
            indexing="ij",
        )
    )
    depth = l_i / (args.layers - 1)
    shot_v = np.asarray(shots)[s_i]
    n_test = 1000
    fixed = {
        "upstream_task": "jft-300m",
        "probe": "ridge",
        "backend": "torch",
        "created_at": pa.scalar(1_735_689_600_000_000, pa.timestamp("us", tz="UTC")),
        "schema_version": SCHEMA_VERSION,
        # one schedule for every run (SCHEDULE_KEYS spelt as the pre-training record spells it)
        "pretrain_schedule": "lr=0.001 wd=0.0001 warmup_epochs=1 label_smoothing=0.0 "
        "batch_size=4096 image_size=224 schedule_epochs=21 precision=bf16",
    }

    def write(c: int) -> tuple[int, int]:
        rng = np.random.default_rng([1, c])  # each checkpoint's own draws, in any worker
        files = 0
        us = rng.uniform(0.2, 0.9)
        params = int(10 ** rng.uniform(6, 10))
        ds_pre = 1 - (k * (1 - us) ** alpha + e_ir) - np.abs(rng.normal(0, 0.03, args.tasks))
        # Accuracy along depth: rises to the task's peak depth, then falls a little.
        shape = (
            1
            - 0.5 * np.clip(peak[t_i] - depth, 0, None)
            - 0.2 * np.clip(depth - peak[t_i], 0, None)
        )
        shot_scale = np.where(shot_v == 1, 0.6, 1.0)
        acc = np.clip(ds_pre[t_i] * shape * shot_scale + rng.normal(0, 0.01, n_probe), 0, 1)
        # every λ: the selected one has the probe's accuracy, the others less
        chosen = rng.integers(0, args.lambdas, n_probe)
        drop = np.abs(rng.normal(0, 0.05, (n_probe, args.lambdas)))
        drop[np.arange(n_probe), chosen] = 0
        test = np.round(np.clip(acc[:, None] - drop, 0, 1) * n_test) / n_test
        val = np.clip(test + rng.normal(0, 0.01, test.shape), 0, 1)
        selected = np.zeros((n_probe, args.lambdas), bool)
        selected[np.arange(n_probe), chosen] = True
        n = n_probe * args.lambdas
        rep = lambda a: np.repeat(a, args.lambdas)  # noqa: E731
        columns = {
            "model": pa.array(np.full(n, f"vit-{c % 4}"), pa.string()).dictionary_encode(),
            "model_key": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [f"ckpt{c:05d}"]),
            "upstream_task": pa.DictionaryArray.from_arrays(
                np.zeros(n, np.int32), [fixed["upstream_task"]]
            ),
            "upstream_accuracy": np.full(n, us),
            "params": np.full(n, params, np.int64),
            "data_fraction": np.full(n, [0.1, 0.3, 1.0][c % 3]),
            "epochs": np.full(n, [7.0, 14.0, 21.0][(c // 3) % 3]),
            "head_wd": np.full(n, [0.0, 1e-4, 1e-2][(c // 9) % 3]),
            "head_lr": np.full(n, 1e-3),
            "task": pa.DictionaryArray.from_arrays(rep(t_i).astype(np.int32), tasks),
            "layer": pa.DictionaryArray.from_arrays(rep(l_i).astype(np.int32), layers),
            "depth": rep(depth),
            "shots": rep(shot_v).astype(np.int64),
            "seed": rep(seed_i).astype(np.int64),
            "l2": np.tile(l2, n_probe),
            "val_accuracy": val.ravel(),
            "test_accuracy": test.ravel(),
            "n_train": rep(shot_v * 10).astype(np.int64),
            "n_test": np.full(n, n_test, np.int64),
            "probe": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [fixed["probe"]]),
            "backend": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [fixed["backend"]]),
            "l2_select": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), ["val"]),
            "config": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), ["c0"]),
            "created_at": pa.array(
                np.full(n, fixed["created_at"].value), pa.timestamp("us", tz="UTC")
            ),
            "selected": selected.ravel(),
            "schema_version": np.full(n, SCHEMA_VERSION, np.int64),
            # what the run was: the knob pairs match checkpoints on these (three seeds of each
            # pre-training configuration)
            "pretrain_model": pa.DictionaryArray.from_arrays(
                np.zeros(n, np.int32), [f"vit-{c % 4}"]
            ),
            "pretrain_seed": np.full(n, (c // 36) % 3, np.int64),
            "pretrain_schedule": pa.DictionaryArray.from_arrays(
                np.zeros(n, np.int32), [fixed["pretrain_schedule"]]
            ),
            "k": pa.nulls(n, pa.int64()),
            "converged": pa.nulls(n, pa.bool_()),
        }
        table = pa.table(columns)
        per_task = n // args.tasks  # the rows are task-major
        for t, task in enumerate(tasks):
            # One part per (checkpoint, task), as the probe writer makes them: named by and
            # stamped with its unit identity and the schema version the reader checks.
            part = table.slice(t * per_task, per_task)
            one = pa.DictionaryArray.from_arrays(np.zeros(per_task, np.int32), [task])
            part = part.set_column(part.schema.get_field_index("task"), "task", one)
            identity = {"model_key": f"ckpt{c:05d}", "task": task, "probe": "ridge"}
            path = part_path(store, identity)
            meta = {VERSION_KEY: str(SCHEMA_VERSION), IDENTITY_KEY: json.dumps(identity)}
            part = part.replace_schema_metadata(meta)
            if args.layout == "selected-first":
                write_part_table(part, path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, path)
            files += 1
        return files, n

    return write


_WRITER = None


def _init_worker(args: argparse.Namespace, store: Path) -> None:
    global _WRITER
    _WRITER = _checkpoint_writer(args, store)


def _write_checkpoint(c: int) -> tuple[int, int]:
    return _WRITER(c)


def generate(args: argparse.Namespace, store: Path) -> dict:
    """Write one part per checkpoint and task on ``--workers`` processes; return what was
    written."""
    start, files, rows = time.perf_counter(), 0, 0
    with ProcessPoolExecutor(
        args.workers, initializer=_init_worker, initargs=(args, store)
    ) as pool:
        for c, (f, n) in enumerate(
            pool.map(_write_checkpoint, range(args.checkpoints), chunksize=8)
        ):
            files += f
            rows += n
            if (c + 1) % 200 == 0 or c + 1 == args.checkpoints:
                elapsed = time.perf_counter() - start
                print(
                    f"  generated {c + 1}/{args.checkpoints} checkpoints ({files} parts), "
                    f"{rows / 1e6:.1f} M rows, {elapsed:.0f} s",
                    file=sys.stderr,
                )
    size = sum(p.stat().st_size for p in store.rglob("*.parquet"))
    return {"files": files, "rows": rows, "bytes": size, "seconds": time.perf_counter() - start}


def config(args) -> dict:
    keys = ("checkpoints", "tasks", "layers", "shots", "seeds", "lambdas", "layout")
    return {key: getattr(args, key) for key in keys}


# -- measuring ----------------------------------------------------------------------------------


def measure(command: list[str]) -> dict:
    """Run ``command``; its wall time, peak resident memory and exit status."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env()
    )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(err[-3000:], file=sys.stderr)
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": wall, "cpu": cpu, "gib": usage.ru_maxrss / 2**20, "rc": proc.returncode}


def env() -> dict:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out["MPLBACKEND"] = "Agg"
    return out


def main() -> int:
    args = arguments()
    store, out = args.dir / "store", args.dir / "out"
    stamp = args.dir / "config.json"
    if (
        store.is_dir()
        and stamp.is_file()
        and json.loads(stamp.read_text())["config"] == config(args)
    ):
        made = json.loads(stamp.read_text())["made"]
        print(f"reusing the store in {store}", file=sys.stderr)
    else:
        shutil.rmtree(args.dir, ignore_errors=True)
        store.mkdir(parents=True)
        made = generate(args, store)
        stamp.write_text(json.dumps({"config": config(args), "made": made}))
    layerprobe = [sys.executable, "-m", "layerprobe"]
    boot = ["--bootstrap", str(args.bootstrap)]
    runs = {
        "fit (pre_logits)": layerprobe
        + ["fit", "--results", str(store), "--out", str(out / "fit"), "--format", "csv", *boot],
        "fit --layer best": layerprobe
        + [
            "fit",
            "--results",
            str(store),
            "--out",
            str(out / "fitbest"),
            "--layer",
            "best",
            "--format",
            "csv",
            *boot,
        ],
        "report": layerprobe
        + ["report", "--results", str(store), "--out", str(out / "report"), "--quiet", *boot],
    }
    # Each command cold (no row cache: it reads every part and builds the cache) and then warm
    # (the cache is valid: it reads one file); each run writes its own --out folder.
    timed = {FLOOR: [sys.executable, "-c", FLOOR_CODE, str(store)]}
    states = [state for state in ("cold", "warm") if state in args.states.split(",")]
    if states == ["warm"] and not cache_path(store).is_file():
        warm_up = "import sys; from layerprobe.results.read import read_selected; read_selected(sys.argv[1])"
        subprocess.run([sys.executable, "-c", warm_up, str(store)], check=True, env=env(), cwd=ROOT)
    for name, cmd in runs.items():
        for state in states:
            timed[f"{name}, {state}"] = [
                f"{a}-{state}" if a.startswith(str(out)) else a for a in cmd
            ]
    shutil.rmtree(out, ignore_errors=True)  # the commands refuse to write over files
    if made["rows"] <= args.baseline_max_rows:
        code = f"import layerprobe.results as r; print(len(r.load({str(store)!r})))"
        timed["baseline: results.load (all rows)"] = [sys.executable, "-c", code]
    load_before = _uptime()
    results = {}
    for name, cmd in timed.items():
        if name.endswith(", cold"):
            shutil.rmtree(store / CACHE_FOLDER, ignore_errors=True)
        results[name] = measure(cmd)
        if name.endswith(", warm") and cache_path(store).is_file():
            made["cache_bytes"] = cache_path(store).stat().st_size
    args.load = (load_before, _uptime())
    print_table(args, made, results)
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


def _uptime() -> str:
    """The load averages (1, 5, 15 min) as ``uptime`` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(args, made: dict, results: dict) -> None:
    lambdas = (
        "every λ row (30)"
        if args.lambdas == 30
        else f"{args.lambdas} λ rows per probe (the paper's grid has 30)"
    )
    print(
        f"\nstore: {args.checkpoints} checkpoints × {args.tasks} tasks × {args.layers} layers × shots "
        f"{args.shots} × {args.seeds} seeds × {lambdas}\n"
        f"       {made['rows'] / 1e6:.1f} M rows in {made['files']} part files, "
        f"{made['bytes'] / 2**30:.2f} GiB on disk, generated in {made['seconds']:.0f} s; "
        f"row cache {made.get('cache_bytes', 0) / 2**20:.0f} MiB\n"
        f"part layout: {args.layout}; bootstrap resamples: {args.bootstrap}; "
        f"machine: {os.cpu_count()} CPUs, load average (1, 5, 15 min) {args.load[0]} before "
        f"and {args.load[1]} after\n"
    )
    base = results.get("baseline: results.load (all rows)")
    floor = results.get(FLOOR)
    print(
        "| command | wall s | CPU s | peak GiB | goal | × floor (wall) | × floor (CPU) | vs baseline |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |")
    for name, r in results.items():
        goal = GOALS_S.get(name.removesuffix(", warm"))
        if r["rc"]:
            ok = f"failed (rc {r['rc']})"
        elif goal is None:
            ok = "–"
        else:
            ok = f"≤ {goal:.0f} s, < {GOAL_GIB:.0f} GiB: " + (
                "met" if r["seconds"] <= goal and r["gib"] < GOAL_GIB else "missed"
            )
        ratio = (
            f"{r['seconds'] / base['seconds']:.2f}× time, {r['gib'] / base['gib']:.2f}× memory"
            if base and not name.startswith("baseline")
            else "–"
        )
        x_wall = f"{r['seconds'] / floor['seconds']:.2f}" if floor and not floor["rc"] else "–"
        x_cpu = f"{r['cpu'] / floor['cpu']:.2f}" if floor and not floor["rc"] else "–"
        print(
            f"| {name} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['gib']:.2f} | {ok} | {x_wall} "
            f"| {x_cpu} | {ratio} |"
        )
    if base is None:
        print(
            f"| baseline: results.load (all rows) | skipped | – | – | – | – | – | "
            f"{made['rows'] / 1e6:.0f} M rows > --baseline-max-rows |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
