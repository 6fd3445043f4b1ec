"""``scan``: the everyday question in one call — how good is every layer of one checkpoint on
these tasks? Extract every layer, probe at the default shots, summarise, plot, report.

Everything lands below one folder (``cache/``, ``results/``, ``report.html``, ``plots/``) and a
second run reuses it: complete caches are not extracted again and probed units are skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from layerprobe.errors import ConfigError, check_writable
from layerprobe.tasks.summary import select_tasks


@dataclass
class ScanResult:
    """What a scan made: the layer summary, the best layer per task, and the files written."""

    summary: pd.DataFrame
    best: pd.DataFrame
    report: Path | None
    plots: list[Path] = field(default_factory=list)


def scan_tasks(patterns: Sequence[str]) -> list[str]:
    """Task names for ``patterns`` (``builtin/*``, names, ``folder:PATH``); the upstream
    pre-training task is left out of patterns unless named exactly."""
    if not patterns:
        raise ConfigError("--tasks needs at least one task name or pattern, e.g. 'builtin/*'")
    chosen = [t for t in select_tasks(patterns) if t.group != "upstream" or t.name in patterns]
    if not chosen:
        raise ConfigError(f"no task matches {', '.join(patterns)}; see `layerprobe tasks`")
    return [t.name for t in chosen]


def scan(
    model,
    tasks: Sequence[str],
    out_dir: str | Path,
    *,
    extract_config=None,
    probe_config=None,
    quiet: bool = False,
) -> ScanResult:
    """Extract, probe and summarise one checkpoint on ``tasks``, below ``out_dir``.

    Parameters
    ----------
    model : a :class:`~layerprobe.backbones.ModelConfig`, a spec, or a loaded ``Backbone``.
    tasks : task names or patterns (``builtin/*``, ``vtab1k/*``, ``folder:PATH``).
    out_dir : the scan's folder.
    extract_config : :class:`~layerprobe.extract.ExtractConfig` (its cache folder is replaced by
        ``out_dir/cache``); default every layer.
    probe_config : :class:`~layerprobe.probe.ProbeConfig`; default shots 1, 5, 10, 25, 3 seeds.

    Returns
    -------
    ScanResult: ``summary`` (layer-wise mean ± std over seeds, every shot count), ``best`` (per
    task and shot count: the best layer, its depth and accuracy, and the last layer's), the
    report and plot paths.
    """
    from layerprobe.backbones import Backbone, as_model_config
    from layerprobe.extract import ExtractConfig, extract, read_info
    from layerprobe.probe import ProbeConfig, run_probes
    from layerprobe.results import layer_summary, load

    out = check_writable(out_dir, "--out")
    names = scan_tasks(tasks)
    config = ExtractConfig.build(extract_config, cache_dir=out / "cache", quiet=quiet)
    bb = model if isinstance(model, Backbone) else as_model_config(model).load()
    say = (
        (lambda msg: None) if quiet else (lambda msg: print(f"layerprobe: {msg}", file=sys.stderr))
    )
    keys = set()
    for i, task in enumerate(names, 1):
        say(f"scan: extracting {task} ({i}/{len(names)})")
        keys |= {read_info(path).model_key for path in extract(bb, task, config)}
    say("scan: probing")
    run_probes(
        out / "cache",
        out / "results",
        probe_config or ProbeConfig(),
        model_keys=sorted(keys),
        tasks=names,
        quiet=quiet,
    )
    # the one store reader; --skip-bad leaves out bad parts (with a warning) as in `results show`
    table = load(out / "results", skip_bad=config.skip_bad, warn=_quiet if quiet else None)
    table = table[table.model_key.isin(keys) & table.task.isin(names)]
    summary = layer_summary(table)
    report, plots = _report(out, table, quiet)
    return ScanResult(summary, best_layers(summary), report, plots)


def _quiet(message: str) -> None:
    """Warnings of a quiet scan go nowhere."""


def best_layers(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model key, task, shots, probe): best layer, its depth and accuracy; the last layer's
    accuracy and the gap between them (the paper's Fig. 6 question)."""
    rows = []
    for key, part in summary.groupby(["model_key", "task", "shots", "probe"], sort=False):
        best = part[part.best].iloc[0]
        last = part.sort_values("depth").iloc[-1]
        rows.append(
            dict(
                zip(["model_key", "task", "shots", "probe"], key, strict=True),
                best_layer=best.layer,
                best_depth=best.depth,
                best_accuracy=best.accuracy,
                last_layer=last.layer,
                last_accuracy=last.accuracy,
                gap=best.accuracy - last.accuracy,
            )
        )
    return pd.DataFrame(rows)


def format_best(best: pd.DataFrame) -> str:
    """The best-layer table as aligned text, one line per task and shot count."""
    lines = [
        f"{'task':<24} {'shots':>5}  {'best layer':<14} {'depth':>5}  {'best %':>6}  {'last %':>6}"
    ]
    for row in best.itertuples():
        shots = "full" if row.shots == 0 else str(row.shots)
        lines.append(
            f"{row.task:<24} {shots:>5}  {row.best_layer:<14} {row.best_depth:5.2f}  "
            f"{100 * row.best_accuracy:6.1f}  {100 * row.last_accuracy:6.1f}"
        )
    return "\n".join(lines) + "\n"


def _report(out: Path, table: pd.DataFrame, quiet: bool) -> tuple[Path, list[Path]]:
    """``report.html`` with the layer curves of every shot count (no US accuracy needed)."""
    from layerprobe.analysis import write_report

    report = write_report(
        out / "results",
        out,
        table=table,
        warn=(lambda msg: None) if quiet else None,
        all_shots=True,  # one checkpoint: a layer figure per shot count costs little
    )
    return report, sorted((out / "plots").glob("layers-*.png"))
