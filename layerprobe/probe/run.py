"""Probing cached features: find the units of work, probe each one, append to the store.

A unit is one (model key, task) of the feature cache with complete ``train`` and ``test``
splits (and ``val`` when present). All its layers, shot counts, seeds and λ values are
probed together and written as one part file of the results store.
"""

from __future__ import annotations

import fnmatch
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
    DataError,
    UnknownNameError,
    UserError,
    check_folder,
    did_you_mean,
)
from layerprobe.extract.cache import SUFFIX, CacheInfo, cache_path, read_arrays, read_info
from layerprobe.probe.backends import check_backend, get_backend
from layerprobe.probe.plan import VAL_FRACTION, VAL_MAX_PER_CLASS, plan_probes
from layerprobe.probe.problems import DEFAULT_L2S, ProbeSet, check_finite, check_l2s, select_l2
from layerprobe.probe.store import COLUMNS, part_path, write_part

PROBE_NAME = "closed_form_ridge"  # the `probe` column: the recipe of design.md
PRETRAIN_KEYS = ("upstream_accuracy", "params", "data_fraction", "epochs", "head_wd", "head_lr")
MAX_LOAD_BYTES = 2 << 30  # features of the layers loaded at once (all splits)


@dataclass
class ProbeConfig:
    """What to probe and how; everything here changes the results (and the part file)."""

    shots: Sequence[int] = (1, 5, 10, 25)
    seeds: int = 3
    l2s: Sequence[float] = DEFAULT_L2S
    layers: Sequence[str] | None = None
    backend: str = "torch"
    device: str = "auto"
    precision: str = "float64"

    def identity(self) -> dict:
        """The fields that name a unit's part file (the device does not change results)."""
        return {
            "probe": PROBE_NAME,
            "shots": sorted(set(int(k) for k in self.shots)),
            "seeds": int(self.seeds),
            "l2s": [float(v) for v in check_l2s(self.l2s)],
            "layers": list(self.layers) if self.layers else None,
            "backend": self.backend,
            "precision": self.precision,
            "val": [VAL_FRACTION, VAL_MAX_PER_CLASS],
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
        """What the cached features are, beyond the model key: per split the task's images
        (fingerprint), rows and layers. A re-extraction that changes any of them (other
        built-in seed, added layers) makes a new unit instead of matching a stale part."""
        return {
            split: [info.attrs.get("task_fingerprint", ""), info.num_rows, info.layers]
            for split, info in sorted(self.splits.items())
        }


@dataclass
class RunSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


def find_units(
    cache_dir: str | Path,
    model_keys: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Unit]:
    """Every complete (model key, task) under ``cache_dir`` with ``train`` and ``test`` splits."""
    root = Path(cache_dir)
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
        lacking = ", ".join(f"{u.name} has {sorted(u.splits)}" for u in found[:3])
        how = "extract both with `layerprobe extract --split train,test`"
        if any(set(u.splits) == {"all"} for u in found):  # a folder: task without split folders
            how += (
                " (a folder:PATH task needs train/ and test/ sub-folders, each with class folders)"
            )
        raise CacheError(
            f"no (model key, task) under {root} has complete train and test splits"
            + (f" ({lacking})" if lacking else "")
            + f"; {how}"
        )
    return usable


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

    Units whose part file exists are skipped unless ``force``. A unit that cannot be probed
    (bad features, too few shots …) stops the run, or is reported and skipped with
    ``skip_bad``; parts already written are kept either way.
    """
    from tqdm.auto import tqdm

    warn = warn or _stderr
    check_backend(config.backend, config.device, config.precision)  # before touching the cache
    check_folder(results_dir, "--results")
    identity = config.identity()
    units = find_units(cache_dir, model_keys, tasks, skip_bad, warn)
    summary = RunSummary()
    bar = tqdm(units, desc="probe", unit="unit", disable=quiet or not sys.stderr.isatty())
    for unit in bar:
        bar.set_postfix_str(unit.name, refresh=False)
        path = part_path(
            results_dir,
            unit.model_key,
            unit.task,
            identity | {"features": unit.features_identity()},
        )
        if path.exists() and not force:
            summary.skipped.append(path)
            continue
        try:
            rows = probe_unit(unit, config)
        except UserError as err:
            if not skip_bad:
                raise
            warn(f"skipping {unit.name}: {err}")
            summary.bad.append(unit.name)
            continue
        summary.written.append(write_part(rows, path))
    return summary


def probe_cache(
    cache_dir: str | Path,
    results_dir: str | Path,
    *,
    shots: Sequence[int] = (1, 5, 10, 25),
    seeds: int = 3,
    l2s: Sequence[float] = DEFAULT_L2S,
    layers: Sequence[str] | None = None,
    backend: str = "torch",
    device: str = "auto",
    precision: str = "float64",
    model_keys: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    force: bool = False,
    skip_bad: bool = False,
    quiet: bool = True,
) -> RunSummary:
    """Probe a feature cache into a results store: ``layerprobe probe`` from Python.

    Every complete (model key, task) with train and test splits, each layer (names or globs
    in ``layers``; default all), shot count (0 = the whole train split), seed 0 … seeds-1 and
    λ; see :class:`ProbeConfig` and :func:`run_probes`.
    """
    config = ProbeConfig(shots, seeds, l2s, layers, backend, device, precision)
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


def probe_unit(unit: Unit, config: ProbeConfig) -> pd.DataFrame:
    """All probes of one unit as store rows (one per layer, shots, seed and λ)."""
    val_info = unit.splits.get("val")
    layers = _layers(unit, config.layers)
    l2s = check_l2s(config.l2s)
    labels = {s: read_arrays(info.path, [])[0] for s, info in unit.splits.items()}
    for split in ("test", "val"):
        if split in labels and len(labels[split]) == 0:
            raise DataError(f"{unit.name}: the {split} split has no rows; extract it again")
    plan = plan_probes(labels["train"], config.shots, config.seeds, val_info is not None, unit.task)
    if plan.val is not None:
        y_eval = np.concatenate([labels["train"][plan.val], labels["test"]])
    else:
        y_eval = np.concatenate([labels["val"], labels["test"]])
    n_val = len(y_eval) - len(labels["test"])
    group = np.repeat([0, 1], [n_val, len(labels["test"])])
    num_classes = int(max(labels["train"].max(), y_eval.max())) + 1
    backend = get_backend(config.backend)
    val_acc, test_acc = [], []
    for chunk in _layer_chunks(unit, layers):
        train, evals = _load_features(unit, chunk, plan.val)
        probes = ProbeSet(
            train, labels["train"], plan.subsets, evals, y_eval, group, 2, num_classes, chunk
        ).check()
        counts = backend(probes, l2s, config.device, config.precision)  # (layers, P, 2, L)
        val_acc.append(counts[:, :, 0] / max(n_val, 1))
        test_acc.append(counts[:, :, 1] / len(labels["test"]))
    return _rows(
        unit,
        layers,
        plan,
        l2s,
        np.concatenate(val_acc),
        np.concatenate(test_acc),
        len(labels["test"]),
        config.backend,
    )


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
        hits = fnmatch.filter(common, pattern)
        if not hits:
            raise UnknownNameError(
                f"{unit.name} has no layer {pattern!r} in all its splits.{did_you_mean(pattern, common)}"
                f" Layers: {', '.join(common)}."
            )
        chosen.update(hits)
    return [name for name in common if name in chosen]


def _layer_chunks(unit: Unit, layers: list[str]) -> list[list[str]]:
    """Groups of layers whose features (all splits, float32) fit the load budget."""
    rows = sum(info.num_rows for info in unit.splits.values())
    with h5py.File(unit.splits["train"].path, "r") as f:
        widths = [int(f["features"][name].shape[1]) for name in layers]
    chunks: list[list[str]] = [[]]
    budget = 0
    for name, width in zip(layers, widths, strict=True):
        size = rows * width * 4
        if chunks[-1] and budget + size > MAX_LOAD_BYTES:
            chunks.append([])
            budget = 0
        chunks[-1].append(name)
        budget += size
    return chunks


def _load_features(unit: Unit, layers: list[str], val_rows: np.ndarray | None):
    """Per layer: train features and evaluation features (validation rows, then test rows)."""
    feats = {}
    for split, info in unit.splits.items():
        _, _, arrays = read_arrays(info.path, layers)
        for name, arr in arrays.items():
            check_finite(arr, name, str(info.path))
        feats[split] = arrays
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


def _rows(unit, layers, plan, l2s, val_acc, test_acc, n_test, backend) -> pd.DataFrame:
    """Store rows for accuracies of shape (layers, P, L)."""
    info = unit.splits["train"]
    num_layers, num_probes, num_l2 = val_acc.shape
    depth_of = dict(zip(info.layers, info.depths, strict=False))
    shape = (num_layers, num_probes, num_l2)
    li, pi, ji = (a.ravel() for a in np.indices(shape))
    keys = np.asarray(plan.keys, dtype=np.int64).reshape(-1, 2)
    selected = np.zeros(shape, bool)
    best = select_l2(val_acc)  # (layers, P)
    np.put_along_axis(selected, best[..., None], True, axis=-1)
    pretrain = info.pretrain
    frame = pd.DataFrame(
        {
            "model": info.model or unit.model_key,
            "model_key": unit.model_key,
            **{k: _number(pretrain.get(k), integer=k == "params") for k in PRETRAIN_KEYS},
            "task": unit.task,
            "layer": np.asarray(layers, dtype=object)[li],
            "depth": np.asarray([depth_of.get(n, np.nan) for n in layers], dtype=np.float64)[li],
            "shots": keys[pi, 0],
            "seed": keys[pi, 1],
            "l2": l2s[ji],
            "val_accuracy": val_acc.ravel(),
            "test_accuracy": test_acc.ravel(),
            "n_train": np.asarray([len(s) for s in plan.subsets], dtype=np.int64)[pi],
            "n_test": n_test,
            "probe": PROBE_NAME,
            "backend": backend,
            "created_at": pd.Timestamp(datetime.now(UTC)),
            "selected": selected.ravel(),
        }
    )
    return frame[COLUMNS]


def _number(value, integer: bool = False):
    """A pretraining knob as a number, or None (null) when unknown or not numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(round(number)) if integer and np.isfinite(number) else number
