"""``demo``: the paper's findings on the built-in suite, offline, in minutes.

Pre-train a ladder of checkpoints on ``builtin/upstream`` (one long schedule with a snapshot
after every epoch, and short runs on a quarter of the data that differ in one head knob only, so
upstream accuracy varies widely and the knobs' effects come from matched pairs), extract every
layer of each on the built-in downstream tasks, probe them few-shot with 3 seeds, fit the
saturation curve on the upper hull, read the matched pairs, and write the report. Every stage
reuses what a previous run left (complete run folders, caches and parts), so a second run only
re-reads and re-fits. Design and measured figures: docs/demo.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from layerprobe.errors import check_writable
from layerprobe.progress import Progress, duration
from layerprobe.tasks.fewshot import DEFAULT_SHOTS

if TYPE_CHECKING:
    from layerprobe.analysis.pairs import KnobPairs

DEFAULT_OUT = "results/demo"


@dataclass(frozen=True)
class Rung:
    """One pre-training run of the demo's ladder; ``snapshots`` add checkpoints along its schedule."""

    name: str
    model: str
    data_fraction: float
    epochs: int
    snapshots: tuple[int, ...] = ()
    head_wd: float | None = None
    head_lr_mult: float = 1.0
    lr: float = 1e-2  # measured here: resnet-tiny32 reaches 34 % upstream after one epoch


# 20 checkpoints from 4 runs of one model (so one hull, one family). One long schedule with a
# snapshot after every epoch spans the upper part of the US range for the price of one run; three
# short runs on a quarter of the data give the lower part, and they differ in one head knob only
# (weight decay 1 instead of the body's 0.05; learning rate x10), each with a snapshot after every
# epoch: 4 matched pairs per knob (same data fraction, epochs, schedule and seed), which
# `layerprobe results knobs` finds.
LADDER = (
    Rung("resnet-d25-e4", "resnet-tiny32", 0.25, 4, snapshots=(1, 2, 3)),
    Rung("resnet-d25-e4-headwd1", "resnet-tiny32", 0.25, 4, snapshots=(1, 2, 3), head_wd=1.0),
    Rung(
        "resnet-d25-e4-headlr10", "resnet-tiny32", 0.25, 4, snapshots=(1, 2, 3), head_lr_mult=10.0
    ),
    Rung("resnet-d100-e8", "resnet-tiny32", 1.0, 8, snapshots=(1, 2, 3, 4, 5, 6, 7)),
)
# 8 checkpoints: two of the ladder's short runs, 4 matched head-weight-decay pairs.
QUICK_LADDER = LADDER[:2]
PRETRAIN = dict(batch_size=128, warmup_epochs=0.1, device="cpu")
# The quick demo keeps tasks from both ends: close to upstream (objects) and far (textures,
# location, histology, count).
QUICK_TASKS = (
    "builtin/objects-novel",
    "builtin/objects-shape",
    "builtin/loc-x",
    "builtin/textures",
    "builtin/count",
    "builtin/histology",
)
# The quick demo probes as the full one does, so its parts are the full demo's too: `demo --quick`
# then `demo` into one folder reuses them instead of adding a second configuration's rows.
SHOTS = DEFAULT_SHOTS
SEEDS = 3  # few-shot draws per (layer, shots): the spread over them is each point's noise


@dataclass
class DemoResult:
    """Paths of what the demo wrote and the tables its summary came from."""

    out: Path
    report: Path
    fits: pd.DataFrame
    layers: pd.DataFrame
    summary: str
    pairs: KnobPairs | None = None


def demo(out_dir: str | Path = DEFAULT_OUT, quick: bool = False, quiet: bool = False) -> DemoResult:
    """Run the demo below ``out_dir`` (``runs/``, ``cache/``, ``results/``, ``report/``).

    Parameters
    ----------
    out_dir : the demo's folder; a second run reuses what is there.
    quick : 8 checkpoints (4 matched head-weight-decay pairs) on 6 tasks instead of 20
        checkpoints (4 matched pairs per head knob) on all 22 downstream tasks; shots 1/5/10/25
        and 3 seeds either way. Times: docs/demo.md.
    quiet : no progress messages (else the stage, unit i of n and the time left on stderr).
    """
    from layerprobe.tasks import list_tasks

    out = check_writable(out_dir, "--out")
    say = _sayer(quiet)
    ladder = QUICK_LADDER if quick else LADDER
    tasks = (
        list(QUICK_TASKS)
        if quick
        else [t.name for t in list_tasks(builtin=True) if t.group != "upstream"]
    )
    started = time.perf_counter()
    checkpoints = _pretrain(ladder, out / "runs", say, quiet)
    _extract(checkpoints, tasks, out / "cache", say, quiet)
    table = _probe(out, tasks, SHOTS, SEEDS, say, quiet)
    fits, layers, pairs, report = _analyse(out, table, say)
    text = summary_text(
        fits, layers, report, n_ckpt=len(checkpoints), n_tasks=len(tasks), pairs=pairs
    )
    say(f"done in {duration(time.perf_counter() - started)}")
    return DemoResult(out, report, fits, layers, text, pairs)


STAGES = 4  # pre-training, extraction, probing, fitting and the report


def _sayer(quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda msg: None
    return lambda msg: print(f"layerprobe demo: {msg}", file=sys.stderr, flush=True)


def _pretrain(ladder, runs: Path, say, quiet: bool) -> list[Path]:
    """Every rung's checkpoint and snapshots, lowest upstream accuracy first where known.

    Says which runs are reused (complete from an earlier demo) and, for each one trained,
    which of the ladder's runs it is; the training shows a line per epoch unless ``quiet``.
    """
    from layerprobe.pretrain import PretrainConfig, pretrain, run_complete

    done = [rung for rung in ladder if run_complete(runs / rung.name)]
    todo = [rung for rung in ladder if rung not in done]
    say(
        f"stage 1/{STAGES}: pre-training {len(ladder)} run(s)"
        + (f"; {len(done)} of {len(ladder)} complete already, reused" if done else "")
    )
    paths = []
    for rung in ladder:
        if rung in todo:
            i = todo.index(rung) + 1
            say(
                f"pre-training {i}/{len(todo)}: {rung.name} ({rung.model}, data "
                f"{rung.data_fraction:g}, {rung.epochs} epoch{'s' * (rung.epochs > 1)})"
            )
        config = PretrainConfig(
            model=rung.model,
            data_fraction=rung.data_fraction,
            epochs=rung.epochs,
            snapshots=rung.snapshots,
            head_wd=rung.head_wd,
            head_lr_mult=rung.head_lr_mult,
            lr=rung.lr,
            **PRETRAIN,
        )
        final = pretrain(config, runs / rung.name, quiet=quiet or rung in done)
        paths += sorted((runs / rung.name / "snapshots").glob("*.pt")) + [final]
    if done:
        say(
            f"pre-training: {len(done)} of {len(ladder)} run(s) reused, {len(todo)} trained "
            f"({len(paths)} checkpoints)"
        )
    return paths


def _extract(checkpoints: list[Path], tasks: list[str], cache: Path, say, quiet: bool) -> None:
    """Every layer of every checkpoint on every task (train and test), one unit per
    (checkpoint, task) with its progress; says how many units were reused from the cache."""
    from layerprobe.backbones import ModelConfig
    from layerprobe.extract import ExtractConfig, extract

    # train and test only: the probe holds validation rows out of train (never out of test).
    config = ExtractConfig(cache_dir=cache, splits="train,test", device="cpu", quiet=True)
    total = len(checkpoints) * len(tasks)
    say(
        f"stage 2/{STAGES}: extracting every layer of {len(checkpoints)} checkpoints on "
        f"{len(tasks)} tasks ({total} units)"
    )
    reused = 0
    with Progress(total, desc="extract", unit="unit", quiet=quiet, first=True, last=True) as bar:
        for i, path in enumerate(checkpoints, 1):
            bb = ModelConfig(str(path)).load()
            for task in tasks:
                before = time.time_ns()
                paths = extract(bb, task, config)
                old = all(p.stat().st_mtime_ns < before for p in paths)
                reused += old
                bar.update(
                    note=f"checkpoint {i}/{len(checkpoints)} {task}" + (" (reused)" if old else "")
                )
    if reused:
        say(f"extraction: {reused} of {total} units reused from {cache}")


def _probe(out: Path, tasks, shots, seeds: int, say, quiet: bool) -> pd.DataFrame:
    from layerprobe.probe import ProbeConfig, run_probes
    from layerprobe.results import load

    say(
        f"stage 3/{STAGES}: probing every layer at shots {', '.join(map(str, shots))}, "
        f"{seeds} seed(s)"
    )
    config = ProbeConfig(shots=shots, seeds=seeds, device="cpu")
    run_probes(out / "cache", out / "results", config, tasks=tasks, quiet=quiet)
    return load(out / "results")


def _analyse(out: Path, table: pd.DataFrame, say):
    from layerprobe.analysis import (
        fit_saturation,
        knob_pairs,
        layer_saturation,
        write_fits,
        write_report,
    )

    say(f"stage 4/{STAGES}: fitting saturation curves and writing the report")
    quiet_warn = lambda msg: None  # noqa: E731 - tasks too flat for a hull are in the report
    fits = fit_saturation(table, warn=quiet_warn)
    layers = layer_saturation(table)
    pairs = knob_pairs(table[table["selected"]])
    write_fits(fits, out / "fits.parquet")
    report = write_report(out / "results", out / "report", table=table, warn=quiet_warn)
    return fits, layers, pairs, report


def summary_text(
    fits: pd.DataFrame,
    layers: pd.DataFrame,
    report: Path,
    *,
    n_ckpt: int,
    n_tasks: int,
    pairs: KnobPairs | None = None,
) -> str:
    """What the demo found, in a few lines, each with how sure it is: per task the ceiling
    (1 − e_IR) at the largest shot count with its 95 % interval — or "undetermined" and why —,
    the best DS accuracy reached, and the best layer's depth for the top checkpoint; the tasks
    that peak below the last layer; the layer-saturation correlation with its intervals and the
    partial correlation given last-layer accuracy; with ``pairs`` (:func:`knob_pairs`), each
    head knob's matched-pair effect on US accuracy, and per task on DS accuracy and the best
    layer's depth, counted as decided up, decided down or undecided by the 95 % intervals; and
    which of these the data decide."""
    from layerprobe.analysis import saturation_correlation

    shots = int(layers.shots.max())
    top = layers[layers.shots == shots].sort_values("us").groupby("task").tail(1).set_index("task")
    fit = fits[fits.shots == shots].set_index("task") if len(fits) else None
    lines = [
        f"{n_ckpt} checkpoints, {n_tasks} tasks; at {shots} shots "
        f"(ceiling = 1 - e_IR of the fit on the rising upper hull, 95 % interval):",
        f"  {'task':<24} {'ceiling':<40} {'best DS':>7} {'best depth':>10} {'last-layer gap':>14}",
    ]
    early, rising, determined = [], [], 0
    for task, row in top.sort_values("best_depth").iterrows():
        task_fit = fit.loc[task] if fit is not None and task in fit.index else None
        cell = _ceiling_cell(task_fit)
        determined += task_fit is not None and task_fit.status == "ok"
        lines.append(
            f"  {task:<24} {cell:<40} {100 * row.best_accuracy:6.1f}% "
            f"{row.best_depth:10.2f} {100 * row.gap:13.1f}p"
        )
        (early if row.best_depth < 1.0 and row.gap > 0 else rising).append(task)
    lines.append(f"ceilings the data determine: {determined} of {len(top)} tasks")
    lines.append(f"best layer below the last (saturate early): {', '.join(early) or 'none'}")
    lines.append(f"best at the last layer (keep improving): {', '.join(rising) or 'none'}")
    corr = saturation_correlation(layers, fits) if fit is not None and len(fit) else None
    if corr is not None:
        corr = corr[(corr.shots == shots) & (corr.measure == "saturation_depth")]
        for row in corr.itertuples():
            lines.append(_correlation_line(row))
    if corr is None or corr.empty:  # no task's ceiling is determined: nothing to correlate
        lines.append(
            "Spearman(saturation depth, e_IR): undetermined — no task with a determined fit"
        )
    if pairs is not None:
        lines += _pair_lines(pairs, shots)
    lines.append(f"report: {report}")
    return "\n".join(lines) + "\n"


def _pair_lines(pairs: KnobPairs, shots: int) -> list[str]:
    """Per head-knob comparison: the paired US difference with its interval, and per task
    whether DS accuracy (at pre_logits) and the best depth go up, down, or cannot be told."""
    effects = pairs.effects[pairs.effects.shots == shots] if len(pairs.effects) else pairs.effects
    if effects.empty:
        return [
            "matched head-knob pairs: none — the head knobs' effects cannot be read from these checkpoints"
        ]
    lines = []
    for (knob, low, high), part in effects.groupby(["knob", "low", "high"], sort=True):
        first = part.iloc[0]
        lines.append(
            f"{knob} {low:g} -> {high:g}, {int(first.pairs)} matched pairs: US accuracy "
            f"{_points(first.d_us, first.d_us_lo, first.d_us_hi)}; over {len(part)} tasks, "
            f"DS at pre_logits {_verdicts(part, 'd_ds')}; best depth {_verdicts(part, 'd_best_depth')}"
        )
    return lines


def _points(mean: float, lo: float, hi: float) -> str:
    """A paired difference in points with its interval (``n/a`` from one pair)."""
    interval = f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" if pd.notna(lo) and pd.notna(hi) else "[n/a]"
    return f"{100 * mean:+.1f} points {interval}"


def _verdicts(part: pd.DataFrame, measure: str) -> str:
    """How many tasks' intervals of ``measure`` lie above 0, below 0, or include it."""
    up = int((part[f"{measure}_lo"] > 0).sum())
    down = int((part[f"{measure}_hi"] < 0).sum())
    return f"up in {up}, down in {down}, undecided in {len(part) - up - down}"


def _ceiling_cell(fit) -> str:
    """``83.1% [80.2, 85.0]``, or ``undetermined (few_points) [0, 100]``: never a bare point
    where the data do not determine it."""
    if fit is None:
        return "no fit (too few points)"
    lo, hi = 100 * fit.saturation_lo, 100 * fit.saturation_hi
    interval = f"[{lo:.0f}, {hi:.0f}]" if pd.notna(lo) and pd.notna(hi) else "[n/a]"
    if fit.status != "ok":
        return f"undetermined ({fit.status}) {interval}"
    return f"{100 * fit.saturation:.1f}% [{lo:.1f}, {hi:.1f}]"


def _correlation_line(row) -> str:
    """The Section 4 test with its intervals, and what the data decide."""
    if row.tasks < 4 or pd.isna(row.rho):
        return (
            f"Spearman(saturation depth, e_IR): undetermined — {row.tasks} task(s) with a "
            "determined fit, too few to correlate"
        )
    decided = pd.notna(row.rho_hi) and row.rho_hi < 0
    against = pd.notna(row.rho_lo) and row.rho_lo > 0
    if decided:
        verdict = "supports the paper (interval below 0)"
    elif against:
        verdict = "contradicts the paper (interval above 0)"
    else:
        verdict = "cannot decide (the interval includes 0)"
    return (
        f"Spearman(saturation depth, e_IR) across {row.tasks} tasks: rho = {row.rho:+.2f} "
        f"[{row.rho_lo:+.2f}, {row.rho_hi:+.2f}] over tasks, "
        f"[{row.rho_ckpt_lo:+.2f}, {row.rho_ckpt_hi:+.2f}] over checkpoints; "
        f"given last-layer accuracy {row.partial_rho:+.2f}; {verdict}"
    )
