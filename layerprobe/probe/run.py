"""Probing cached features: find the units of work, probe each one, append to the store.

A unit is one (model key, task) of the feature cache with complete ``train`` and ``test``
splits (and ``val`` when present). All its layers, shot counts, seeds and λ values are
probed together and written as one part file of the results store.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from layerprobe.errors import (
    CacheError,
    ConfigError,
    DataError,
    UnknownNameError,
    UserError,
    did_you_mean,
)
from layerprobe.extract.cache import (
    SUFFIX,
    CacheInfo,
    cache_path,
    pretrain_with_upstream,
    read_info,
)
from layerprobe.layers import is_all, match_item, split_layers
from layerprobe.probe import policy
from layerprobe.probe.backends import check_backend
from layerprobe.probe.families import DEFAULT_LOGISTIC_L2S, check_family, family_solver
from layerprobe.probe.knn import DEFAULT_KS, check_ks
from layerprobe.probe.plan import VAL_FRACTION, VAL_MAX_PER_CLASS, plan_probes
from layerprobe.probe.problems import DEFAULT_L2S, ProbeSet, check_finite, check_l2s
from layerprobe.results.parts import (
    PART_SUFFIX,
    check_accuracies,
    check_results_dir,
    config_hash,
    part_info,
    part_path,
    readable,
    write_part,
)
from layerprobe.results.schema import COLUMNS, pretrain_columns

MAX_LOAD_BYTES = 2 << 30  # features of the layers loaded at once (all splits)


@dataclass
class ProbeConfig:
    """What to probe and how: one typed config for the Python API, the CLI and job files.

    Attributes
    ----------
    shots : examples per class; 0 = the whole train split.
    seeds : few-shot draws per shot count (seeds 0 … seeds-1).
    l2s : the λ grid; None = the policy's default (30 values 2^-10 … 2^19 for ``val``, the one
        value for ``fixed:VALUE``).
    l2_select : ``val`` or ``fixed:VALUE`` (:mod:`layerprobe.probe.policy`).
    layers : a layer selection (:mod:`layerprobe.layers`); None or "all" = every cached layer.
    backend, device, precision : how the solver runs (:mod:`layerprobe.probe.backends`).
    probe : the family (the ``probe`` column): ``ridge`` (the closed form of design.md),
        ``logistic`` (L2-penalised softmax regression; λ grid default 1, 4, … 4^10), ``knn``
        (cosine k-NN, majority vote) or ``knn_weighted`` (dinov2's temperature-weighted vote).
    ks : the k grid of the k-NN families (default 10, 20, 50, 200).
    """

    shots: Sequence[int] = (1, 5, 10, 25)
    seeds: int = 3
    l2s: Sequence[float] | None = None
    l2_select: str = policy.VAL
    layers: str | Sequence[str] | None = None
    backend: str = "torch"
    device: str = "auto"
    precision: str = "float64"
    probe: str = "ridge"
    ks: Sequence[int] | None = None

    def __post_init__(self) -> None:
        self.probe = check_family(self.probe)
        self.l2_select = policy.parse_policy(self.l2_select)
        if self.probe.startswith("knn"):
            if self.l2_select != policy.VAL:
                raise ConfigError("--l2-select fixed:VALUE applies to ridge and logistic probes")
            self.ks = [int(k) for k in check_ks(self.ks or DEFAULT_KS)]
            self.l2s = []
        else:
            default = DEFAULT_LOGISTIC_L2S if self.probe == "logistic" else DEFAULT_L2S
            grid = policy.policy_grid(self.l2_select, self.l2s, default)
            self.l2s = [float(v) for v in check_l2s(grid)]
            self.ks = None
        self.shots = sorted(set(int(k) for k in self.shots))
        self.seeds = int(self.seeds)
        self.layers = None if is_all(self.layers) else split_layers(self.layers)

    def values_identity(self) -> dict:
        """What changes a row's numbers besides its key (the ``config`` column hashes it)."""
        return {
            "probe": self.probe,
            "l2s": self.l2s,
            "ks": self.ks,
            "l2_select": self.l2_select,
            "backend": self.backend,
            "precision": self.precision,
            "val": [VAL_FRACTION, VAL_MAX_PER_CLASS],
        }

    @property
    def grid(self) -> np.ndarray:
        """The regularisation grid, ascending: λ values, or k values for k-NN."""
        return np.asarray(self.ks, np.int64) if self.ks else np.asarray(self.l2s, np.float64)

    def identity(self) -> dict:
        """What names a unit's part file (the device does not change results)."""
        return self.values_identity() | {
            "shots": self.shots,
            "seeds": self.seeds,
            "layers": self.layers,
        }


@dataclass
class Unit:
    """One (model key, task) of the cache, with its split files."""

    model_key: str
    task: str
    splits: dict[str, CacheInfo] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model_key}/{self.task}"

    def features_identity(self) -> dict:
        """The identity of the exact cache files read: per split the file's extraction id (new
        for every extraction), the task's images (fingerprint), rows, layers, dtype and amp.
        A re-extraction makes a new unit instead of matching a stale part."""
        return {split: info.identity() for split, info in sorted(self.splits.items())}

    def upstream_identity(self) -> list | None:
        """The upstream record the rows will carry from ``upstream.json`` (task, accuracy), or
        None where the checkpoint has its own figure or there is no record.

        Part of the unit's identity, so that ``layerprobe upstream`` run after ``probe`` makes
        the next ``probe`` re-probe exactly the units of that model key (the store is
        self-contained: its rows never depend on a file outside it, so the figure cannot be
        attached at read time). Absent from the identity when None, so parts of models without
        a record keep their names. A damaged or absurd ``upstream.json`` raises
        :class:`CacheError` here, before any work.
        """
        info = self.splits.get("train") or next(iter(self.splits.values()))
        if info.pretrain.get("upstream_accuracy") is not None:
            return None
        merged = pretrain_with_upstream(info)
        if merged.get("upstream_accuracy") is None:
            return None
        return [merged.get("upstream_task"), float(merged["upstream_accuracy"])]


@dataclass
class RunSummary:
    """Parts written and skipped, units that could not be probed, and iterative fits that
    stopped at the iteration cap above the tolerance (kept, flagged ``converged = false``)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    unconverged: int = 0
    again: list[str] = field(default_factory=list)  # "<unit>: why it is probed again"


def find_units(
    cache_dir: str | Path,
    model_keys: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Unit]:
    """Every complete (model key, task) under ``cache_dir`` with ``train`` and ``test`` splits."""
    root = Path(cache_dir)
    if root.is_file():
        raise CacheError(f"--cache {root} is a file; give the cache folder that extract wrote")
    if not root.is_dir():
        raise CacheError(f"cache folder {root} does not exist; run `layerprobe extract` first")
    units: dict[tuple[str, str], Unit] = {}
    for path in sorted(root.rglob(f"*{SUFFIX}")):
        rel = path.relative_to(root).parts
        if model_keys and rel[0] not in model_keys:
            continue
        try:
            info = read_info(path)
        except CacheError as err:
            # A broken file of another task than `--task T` asked for is not this run's concern.
            if tasks and all(path.parent != cache_path(root, rel[0], t, "x").parent for t in tasks):
                continue
            if not skip_bad:
                raise
            (warn or _stderr)(f"skipping {err}")
            continue
        unit = units.setdefault((info.model_key, info.task), Unit(info.model_key, info.task))
        unit.splits[info.split] = info
    found = sorted(units.values(), key=lambda u: (u.model_key, u.task))
    _check_filters(found, model_keys, tasks, root)
    found = [
        u
        for u in found
        if (not model_keys or u.model_key in model_keys) and (not tasks or u.task in tasks)
    ]
    usable = [u for u in found if {"train", "test"} <= set(u.splits)]
    if not usable:
        raise CacheError(
            f"no (model key, task) under {root} has complete train and test splits"
            + "".join(f"; {_lacking(u)}" for u in found[:3])
        )
    return usable


def _lacking(unit: Unit) -> str:
    """What a unit without train and test splits lacks, and how to get it."""
    from layerprobe.tasks import get_task

    missing = [s for s in ("train", "test") if s not in unit.splits]
    have = f"{unit.name} has {', '.join(sorted(unit.splits))}"
    try:
        offered = get_task(unit.task).splits
    except UserError:
        offered = ()
    absent = [s for s in missing if s not in offered]
    if absent:
        return (
            f"{have}, and task {unit.task} has no {' or '.join(absent)} split (it has "
            f"{', '.join(offered) or 'none'}); a folder: task needs train/ and test/ sub-folders, "
            "each with class folders"
        )
    return f"{have}; extract {' and '.join(missing)} with `layerprobe extract --split {','.join(missing)}`"


def _check_filters(found: list[Unit], model_keys, tasks, root: Path) -> None:
    have_keys = {u.model_key for u in found}
    have_tasks = {u.task for u in found}
    for key in model_keys or []:
        if key not in have_keys:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise UnknownNameError(
                f"no cache for model key {key!r} in {root}.{did_you_mean(key, present)}"
                f" Model keys there: {', '.join(present) or 'none'}."
            )
    for task in tasks or []:
        if task not in have_tasks:
            raise UnknownNameError(
                f"no cache for task {task!r} in {root}.{did_you_mean(task, have_tasks)}"
                f" Tasks there: {', '.join(sorted(have_tasks)) or 'none'}."
            )


def _stderr(message: str) -> None:
    print(f"layerprobe: warning: {message}", file=sys.stderr)


def run_probes(
    cache_dir: str | Path,
    results_dir: str | Path,
    config: ProbeConfig,
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

    warn = warn or _stderr
    check_backend(config.backend, config.device, config.precision)  # before touching the cache
    check_results_dir(results_dir)  # writable, same schema: before the work, not after
    units = find_units(cache_dir, model_keys, tasks, skip_bad, warn)
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
        say(f"probe: {len(summary.skipped)} of {len(units)} unit(s) already probed; reusing "
            f"their parts{'' if todo else ' (nothing to probe)'}")  # fmt: skip
    bar = Progress(len(units), initial=len(summary.skipped), desc="probe", unit="unit",
                   quiet=quiet or not todo, first=True, last=True)  # fmt: skip
    workers = _unit_workers(config, len(todo))
    budget = MAX_LOAD_BYTES // workers  # the budget holds for all units in flight together

    def probe_and_write(unit: Unit, identity: dict) -> tuple[Path, int]:
        rows = probe_unit(unit, config, budget)
        unconverged = int((rows["converged"] == False).sum()) if "converged" in rows else 0  # noqa: E712
        return write_part(rows, results_dir, identity), unconverged

    with bar, _units_side_by_side(workers) as pool:
        futures = [pool.submit(probe_and_write, *item) for item in todo]
        for (unit, _), future in zip(todo, futures, strict=True):
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
    return summary


def _unit_workers(config: ProbeConfig, num_units: int) -> int:
    """Units probed side by side: one per CPU thread with the torch backend on the CPU, when
    there are enough units to keep every thread busy to the end (each unit then runs
    single-threaded, so reading, solving and writing of different units overlap and no core
    waits for another); otherwise one at a time, each spread over the threads by layer."""
    if config.backend != "torch" or num_units < 2:
        return 1
    import torch

    from layerprobe.probe.backends import resolve_device

    threads = torch.get_num_threads()
    if resolve_device(config.device).type != "cpu" or num_units < 2 * threads:
        return 1
    return threads


@contextlib.contextmanager
def _units_side_by_side(workers: int):
    """An executor running units on ``workers`` single-threaded threads (or inline for 1).
    On an error, units not yet started are cancelled; those running finish their part."""
    if workers == 1:
        yield _Inline()
        return
    from layerprobe.probe.torch_backend import single_threaded_pool

    with single_threaded_pool(workers) as pool:
        try:
            yield pool
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


class _Inline:
    """``submit`` defers the call to ``result()``: units run one after another, in order, and
    nothing after a failing unit starts."""

    def submit(self, fn, *args):
        return _Deferred(fn, args)


@dataclass
class _Deferred:
    fn: Callable
    args: tuple

    def result(self):
        return self.fn(*self.args)


def unit_identity(unit: Unit, config: ProbeConfig) -> dict:
    """Everything that names a unit's part: model key, task, configuration, cache files read,
    and the ``upstream.json`` record its rows carry (where one is used)."""
    identity = {
        "model_key": unit.model_key,
        "task": unit.task,
        **config.identity(),
        "features": unit.features_identity(),
    }
    upstream = unit.upstream_identity()
    if upstream is not None:
        identity["upstream"] = upstream
    return identity


WHY = {
    "features": "its cache files changed (extracted again)",
    "upstream": "an upstream accuracy was recorded for its model since (`layerprobe upstream`)",
}


def why_again(path: Path, identity: dict, config: ProbeConfig) -> str | None:
    """Why a unit with no part at ``path`` is probed although its folder holds a part of the
    same probe configuration (which the new part will replace); None where there is none."""
    generation = (identity["model_key"], identity["task"], config.probe,
                  config_hash(config.values_identity()))  # fmt: skip
    new = json.loads(json.dumps(identity, sort_keys=True, default=str))
    for other in sorted(
        path.parent.glob(f"{readable(identity['task'])}.{config.probe}.*{PART_SUFFIX}")
    ):
        if other.name.startswith("."):
            continue
        try:
            old = part_info(other)
        except UserError:
            continue  # a damaged part is the reader's to report
        if old.generation != generation:
            continue
        changed = sorted(
            k for k in set(new) | set(old.identity) if new.get(k) != old.identity.get(k)
        )
        reasons = [
            WHY.get(k) or f"{k} {old.identity.get(k)} -> {new.get(k)} (the old part is replaced)"
            for k in changed
        ]
        return "; ".join(reasons) or None
    return None


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
        model_keys,
        tasks,
        force=force,
        skip_bad=skip_bad,
        quiet=quiet,
    )


def probe_unit(unit: Unit, config: ProbeConfig, budget: int = MAX_LOAD_BYTES) -> pd.DataFrame:
    """All probes of one unit as store rows (one per layer, shots, seed and λ).

    ``budget`` bounds the bytes of features (all splits, float32) loaded at once.
    """
    val_info = unit.splits.get("val")
    layers = _layers(unit, config.layers)
    grid = config.grid
    labels, widths = _labels_and_widths(unit, layers)
    for split in ("test", "val"):
        if split in labels and len(labels[split]) == 0:
            raise DataError(
                f"{unit.name}: the {split} split has no rows; extract it again with --force"
            )
    plan = plan_probes(labels["train"], config.shots, config.seeds, val_info is not None, unit.task)
    if plan.val is not None:
        y_eval = np.concatenate([labels["train"][plan.val], labels["test"]])
    else:
        y_eval = np.concatenate([labels["val"], labels["test"]])
    n_val = len(y_eval) - len(labels["test"])
    group = np.repeat([0, 1], [n_val, len(labels["test"])])
    num_classes = int(max(labels["train"].max(), y_eval.max())) + 1
    solve = family_solver(config.probe, config.backend, config.device, config.precision)
    val_acc, test_acc, converged = [], [], []
    for chunk in _layer_chunks(unit, layers, widths, budget):
        train, evals = _load_features(unit, chunk, plan.val)
        probes = ProbeSet(
            train, labels["train"], plan.subsets, evals, y_eval, group, 2, num_classes, chunk
        ).check()
        counts, done = solve(probes, grid)  # (layers, P, 2, L), (layers, P, L) or None
        val_acc.append(counts[:, :, 0] / max(n_val, 1))
        test_acc.append(counts[:, :, 1] / len(labels["test"]))
        converged.append(done)
    rows = _rows(
        unit,
        layers,
        plan,
        grid,
        np.concatenate(val_acc),
        np.concatenate(test_acc),
        len(labels["test"]),
        config,
        None if converged[0] is None else np.concatenate(converged),
    )
    check_accuracies(rows, unit.name, val_may_be_missing=False)
    return rows


def _layers(unit: Unit, wanted: Sequence[str] | None) -> list[str]:
    """The layers to probe, in depth order; each must be in every split."""
    infos = list(unit.splits.values())
    common = [name for name in infos[0].layers if all(name in i.layers for i in infos[1:])]
    if not wanted:
        if not common:
            raise CacheError(f"the splits of {unit.name} share no layer; re-extract them together")
        return common
    chosen = set()
    for pattern in wanted:
        hits = match_item(pattern, common)
        if not hits:
            raise UnknownNameError(
                f"{unit.name} has no layer {pattern!r} in all its splits.{did_you_mean(pattern, common)}"
                f" Layers: {', '.join(common)}."
            )
        chosen.update(hits)
    return [name for name in common if name in chosen]


def _layer_chunks(
    unit: Unit, layers: list[str], widths: list[int], budget: int = MAX_LOAD_BYTES
) -> list[list[str]]:
    """Groups of layers whose features (all splits, float32) fit the load budget."""
    rows = sum(info.num_rows for info in unit.splits.values())
    chunks: list[list[str]] = [[]]
    used = 0
    for name, width in zip(layers, widths, strict=True):
        size = rows * width * 4
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(name)
        used += size
    return chunks


def _labels_and_widths(unit: Unit, layers: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Each split's labels, and the train width of each layer (one open per file)."""
    labels, widths = {}, []
    for split, info in unit.splits.items():
        with _open(info) as f:
            labels[split] = f["labels"][()].astype(np.int64)
            if split == "train":
                widths = [int(f["features"][name].shape[1]) for name in layers]
    return labels, widths


def _load_features(unit: Unit, layers: list[str], val_rows: np.ndarray | None):
    """Per layer: train features and evaluation features (validation rows, then test rows),
    in the dtype they are stored in (the solver converts them where it needs to)."""
    feats = {}
    for split, info in unit.splits.items():
        with _open(info) as f:
            feats[split] = {name: f["features"][name][()] for name in layers}
        for name, arr in feats[split].items():
            check_finite(arr, name, str(info.path))
    train, evals = [], []
    for name in layers:
        tr, te = feats["train"][name], feats["test"][name]
        val = tr[val_rows] if val_rows is not None else feats["val"][name]
        for split, arr in (("test", te), ("val", val)):
            if arr.shape[1] != tr.shape[1]:
                raise DataError(
                    f"{unit.name}: layer {name} is {tr.shape[1]} wide in train but {arr.shape[1]} in "
                    f"{split}; the splits come from different models — re-extract them together"
                )
        train.append(tr)
        evals.append(np.concatenate([val, te]))
    return train, evals


@contextlib.contextmanager
def _open(info: CacheInfo):
    """A split's file, already checked by :func:`read_info` when the unit was found."""
    try:
        with h5py.File(info.path, "r") as f:
            yield f
    except (OSError, KeyError) as err:
        raise CacheError(
            f"cannot read cache file {info.path}: {err}; delete it and extract again"
        ) from err


def _rows(unit, layers, plan, grid, val_acc, test_acc, n_test, config, converged) -> pd.DataFrame:
    """Store rows for accuracies of shape (layers, P, L); ``grid`` holds λ (or k for k-NN)."""
    info = unit.splits["train"]
    num_layers, num_probes, num_l2 = val_acc.shape
    depth_of = dict(zip(info.layers, info.depths, strict=False))
    shape = (num_layers, num_probes, num_l2)
    li, pi, ji = (a.ravel() for a in np.indices(shape))
    keys = np.asarray(plan.keys, dtype=np.int64).reshape(-1, 2)
    selected = np.zeros(shape, bool)
    chosen = policy.select(config.l2_select, val_acc, grid)  # (layers, P)
    np.put_along_axis(selected, chosen[..., None], True, axis=-1)
    frame = pd.DataFrame(
        {
            "model": info.model or unit.model_key,
            "model_key": unit.model_key,
            # the checkpoint's knobs; `layerprobe upstream`'s record where it has no US accuracy
            **pretrain_columns(pretrain_with_upstream(info)),
            "task": unit.task,
            "layer": np.asarray(layers, dtype=object)[li],
            "depth": np.asarray([depth_of.get(n, np.nan) for n in layers], dtype=np.float64)[li],
            "shots": keys[pi, 0],
            "seed": keys[pi, 1],
            "l2": None if config.ks else grid[ji],
            "k": grid[ji] if config.ks else None,
            "val_accuracy": val_acc.ravel(),
            "test_accuracy": test_acc.ravel(),
            "n_train": np.asarray([len(s) for s in plan.subsets], dtype=np.int64)[pi],
            "n_test": n_test,
            "probe": config.probe,
            "l2_select": config.l2_select,
            "backend": config.backend,
            "config": config_hash(config.values_identity()),
            "created_at": pd.Timestamp(datetime.now(UTC)),
            "selected": selected.ravel(),
            "converged": None if converged is None else converged.ravel(),
        }
    )
    return frame[[c for c in COLUMNS if c in frame.columns]]
