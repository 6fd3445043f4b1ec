"""Units of work: each (model key, task) of the feature cache with complete ``train`` and
``test`` splits (and ``val`` when present), found through the cache's one reader
(:func:`layerprobe.extract.cache.find_caches`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from layerprobe.errors import CacheError, UserError
from layerprobe.extract.cache import CacheInfo, find_caches, pretrain_with_upstream
from layerprobe.runtime.warn import warn as warn_user


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


def find_units(
    cache_dir: str | Path,
    model_keys: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    *,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Unit]:
    """Every complete (model key, task) under ``cache_dir`` with ``train`` and ``test`` splits.

    Parameters
    ----------
    cache_dir : the cache folder that ``layerprobe extract`` wrote.
    model_keys, tasks : only these (default: all); one the cache does not hold raises
        :class:`layerprobe.errors.UnknownNameError`.
    skip_bad : report an unusable cache file through ``warn`` and go on without it, instead of
        raising its :class:`CacheError`.
    warn : where warnings go (default: a ``LayerprobeWarning``).

    Returns
    -------
    The units, sorted by (model key, task); :class:`CacheError` when none is usable.
    """
    root = Path(cache_dir)
    report = warn or stderr_warning
    on_bad = (lambda err: report(f"skipping {err}")) if skip_bad else None
    units: dict[tuple[str, str], Unit] = {}
    for info in find_caches(root, model_keys, tasks, on_bad=on_bad):
        unit = units.setdefault((info.model_key, info.task), Unit(info.model_key, info.task))
        unit.splits[info.split] = info
    found = sorted(units.values(), key=lambda u: (u.model_key, u.task))
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


def stderr_warning(message: str) -> None:
    """Give ``message`` as a :class:`~layerprobe.runtime.warn.LayerprobeWarning` (on the command
    line: ``layerprobe: warning: <message>`` on stderr)."""
    warn_user(message, stacklevel=2)
