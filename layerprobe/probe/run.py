"""Probing cached features: find the units of work, probe each one, append to the store.

A unit is one (model key, task) of the feature cache with complete ``train`` and ``test``
splits (and ``val`` when present). All its layers, shot counts, seeds and λ values are
probed together and written as one part file of the results store.

The ideas live beside this run loop: finding units (:mod:`.units`), reading their features
through the cache's one reader (:mod:`.features`), building rows (:mod:`.rows`), naming and
replacing parts (:mod:`.parts`), running units side by side (:mod:`.executor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from layerprobe.errors import DataError, UserError
from layerprobe.probe.backends import check_backend, needs_torch
from layerprobe.probe.config import ProbeConfig
from layerprobe.probe.executor import each_unit
from layerprobe.probe.features import MAX_LOAD_BYTES
from layerprobe.probe.parts import unit_identity, why_again
from layerprobe.probe.rows import probe_unit
from layerprobe.probe.units import Unit, find_units, stderr_warning
from layerprobe.results.parts import check_results_dir, part_path, write_part


@dataclass
class RunSummary:
    """Parts written and skipped, units that could not be probed, and iterative fits that
    stopped at the iteration cap above the tolerance (kept, flagged ``converged = false``)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    unconverged: int = 0
    again: list[str] = field(default_factory=list)  # "<unit>: why it is probed again"


def run_probes(
    cache_dir: str | Path,
    results_dir: str | Path,
    config: ProbeConfig,
    *,
    model_keys: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    force: bool = False,
    skip_bad: bool = False,
    quiet: bool = False,
    warn: Callable[[str], None] | None = None,
) -> RunSummary:
    """Probe every unit of the cache and write one part file per unit to ``results_dir``.

    Units whose part file exists are skipped unless ``force``; the part's name covers the
    unit's whole identity (configuration, cache files read, upstream record), so a changed
    input makes a new part, and ``summary.again`` says why a unit that had a part of the same
    probe configuration is probed again. The new part replaces the old one (one generation per
    result, :func:`layerprobe.results.parts.write_part`). A unit that cannot be probed
    (bad features, too few shots …) stops the run, or is reported and skipped with
    ``skip_bad``; parts already written are kept either way.
    """
    from layerprobe.progress import Progress, say

    warn = warn or stderr_warning
    check_backend(config.backend, config.device, config.precision)  # before touching the cache
    check_results_dir(results_dir)  # writable, same schema: before the work, not after
    units = find_units(cache_dir, model_keys, tasks, skip_bad=skip_bad, warn=warn)
    summary = RunSummary()
    todo = []
    for unit in units:
        identity = unit_identity(unit, config)
        path = part_path(results_dir, identity)
        if path.exists() and not force:
            summary.skipped.append(path)
        else:
            todo.append((unit, identity))
            why = why_again(path, identity, config)
            if why:
                summary.again.append(f"{unit.name}: {why}")
    if summary.skipped and not quiet:
        say(
            f"probe: {len(summary.skipped)} of {len(units)} unit(s) already probed; reusing "
            f"their parts{'' if todo else ' (nothing to probe)'}"
        )
    bar = Progress(
        len(units),
        initial=len(summary.skipped),
        desc="probe",
        unit="unit",
        quiet=quiet or not todo,
        first=True,
        last=True,
    )
    workers = _unit_workers(config, len(todo))
    budget = MAX_LOAD_BYTES // workers  # the budget holds for all units in flight together

    def probe_and_write(unit: Unit, identity: dict) -> tuple[Path, int]:
        rows = probe_unit(unit, config, budget)
        unconverged = int((rows["converged"] == False).sum()) if "converged" in rows else 0  # noqa: E712
        return write_part(rows, results_dir, identity), unconverged

    torch_threads = needs_torch(config.probe, config.backend, config.device)
    with bar, each_unit(probe_and_write, todo, workers, torch_threads=torch_threads) as outcomes:
        for (unit, _), future in outcomes:
            try:
                path, unconverged = future.result()
                summary.written.append(path)
                summary.unconverged += unconverged
            except UserError as err:
                if not skip_bad:
                    raise
                warn(f"skipping {unit.name}: {err}")
                summary.bad.append(unit.name)
            bar.update(note=unit.name)
    if units and len(summary.bad) == len(units):
        raise DataError(
            f"none of the {len(units)} unit(s) could be probed (see the warnings above); fix or "
            "re-extract their caches"
        )
    if summary.unconverged:  # a warning the Python API sees too, not only the command line
        from layerprobe.probe.families import NotConvergedWarning
        from layerprobe.runtime.warn import warn as warn_user

        warn_user(
            f"{summary.unconverged} {config.probe} fit(s) stopped at the iteration cap above "
            "the tolerance; their rows say converged = false",
            NotConvergedWarning,
        )
    return summary


def _unit_workers(config: ProbeConfig, num_units: int) -> int:
    """Units probed side by side: one per CPU thread with the torch backend on the CPU, when
    there are enough units to keep every thread busy to the end (each unit then runs
    single-threaded, so reading, solving and writing of different units overlap and no core
    waits for another); otherwise one at a time, each spread over the threads by layer."""
    if config.backend != "torch" or num_units < 2:
        return 1
    from layerprobe.runtime.devices import resolve_device_name
    from layerprobe.runtime.pools import cpu_threads

    threads = cpu_threads()
    if resolve_device_name(config.device) != "cpu" or num_units < 2 * threads:
        return 1
    return threads


def probe_cache(
    cache_dir: str | Path,
    results_dir: str | Path,
    config: ProbeConfig | None = None,
    *,
    model_keys: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    force: bool = False,
    skip_bad: bool = False,
    quiet: bool = True,
) -> RunSummary:
    """Probe a feature cache into a results store: ``layerprobe probe`` from Python.

    Every complete (model key, task) with train and test splits, each layer, shot count
    (0 = the whole train split), seed and λ of ``config`` (default :class:`ProbeConfig()`);
    see :func:`run_probes`.
    """
    config = config or ProbeConfig()
    return run_probes(
        cache_dir,
        results_dir,
        config,
        model_keys=model_keys,
        tasks=tasks,
        force=force,
        skip_bad=skip_bad,
        quiet=quiet,
    )
