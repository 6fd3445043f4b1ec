"""Whether a unit is done: its outputs exist and still match the identity of its inputs.

A unit counts as done only when

- it has a done record written by this check's version (``verify`` key), holding a stamp
  ``(size, mtime_ns, inode)`` and a token of each output, and the identity of its inputs;
- every output still exists and is the file the unit wrote: the same stamp, or, when the stamp
  moved, the same token (a cache file's extraction id; else the sha256 of its bytes);
- its inputs still have the identity they had when it ran: the task's image fingerprint of the
  split (:meth:`layerprobe.tasks.base.Task.fingerprint`, the value extraction records in the
  cache's ``task_fingerprint`` attribute) and the bytes of the model's weight files
  (``spec = ".../checkpoint.pt"``, ``checkpoint = ...``, a pre-training run's checkpoint) for
  extract and finetune units; the extraction ids of the cache files it read for probe units;
- every unit it depends on is done (a unit that runs again re-runs everything downstream).

:func:`check_units` is the one check behind ``status``, ``run --dry-run`` and ``run``. It is
cheap: one directory read per stage (a record is rewritten under a new inode, so the inode in
the listing tells its version), one ``stat`` per output, one image fingerprint per (task,
split) and one ``stat`` per weight file. Records are parsed once and kept as compact entries
in ``state/index.pkl`` keyed by their inode; a content hash is computed only for a file whose
stamp moved, and remembered there by its new stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from layerprobe.errors import UserError, first_line
from layerprobe.jobs.state import State
from layerprobe.jobs.units import CHECKPOINT, STAGES, Model, Plan
from layerprobe.runtime.atomic import atomic_path

VERSION = 1  # of the record fields below; records without it are run again
INDEX = "index.pkl"
INDEX_VERSION = 3


def stamp(path: str | Path) -> tuple[int, int, int] | None:
    """``(size, mtime_ns, inode)`` of ``path``, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def file_sha256(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes (``dir`` for a folder)."""
    if os.path.isdir(path):
        return "dir"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def cache_token(path: str | Path) -> str:
    """The extraction id of a cache file (what probes key their results on), or a token that
    matches nothing when the file cannot be read."""
    from layerprobe.errors import CacheError
    from layerprobe.extract.cache import read_info

    try:
        return str(read_info(path).identity()[0])
    except (CacheError, OSError) as err:
        return f"unreadable: {first_line(err)}"


def output_token(path: str | Path) -> str:
    """What identifies an output's content: a cache file's extraction id, else its sha256."""
    if str(path).endswith(".h5"):
        return cache_token(path)
    try:
        return file_sha256(path)
    except OSError as err:
        return f"unreadable: {first_line(err)}"


def output_entries(paths, tokens: dict | None = None) -> list[list]:
    """``[size, mtime_ns, inode, token]`` of each output, for a done record (``tokens``: those
    already known, by path)."""
    out = []
    for path in paths:
        known = (tokens or {}).get(str(path))
        out.append([*(stamp(path) or (-1, -1, -1)), known or output_token(path)])
    return out


_hashed: dict[tuple, str] = {}  # (path, stamp) -> sha256, per process


def file_entries(paths) -> list[list]:
    """``[path, size, mtime_ns, inode, sha256]`` of each input file (hashed once per process
    and stamp)."""
    out = []
    for path in paths:
        key = (str(path), stamp(path))
        if key not in _hashed:
            _hashed[key] = file_sha256(path)
        out.append([str(path), *(key[1] or (-1, -1, -1)), _hashed[key]])
    return out


def model_files(model: Model) -> list[Path]:
    """The files whose bytes are the model's weights: a pre-training run's checkpoint, a
    checkpoint spec, a ``checkpoint = ...`` file (none for a named architecture)."""
    if model.point is not None:
        return [model.run_dir / CHECKPOINT]
    from layerprobe.backbones.spec import parse_spec

    files = []
    try:
        spec = parse_spec(model.table["spec"])
    except UserError:
        spec = None
    if spec is not None and spec.namespace == "layerprobe":
        files.append(Path(spec.name))
    if model.table.get("checkpoint"):
        files.append(Path(model.table["checkpoint"]))
    return files


def data_fingerprint(task: str, split: str, content: bool = False) -> str:
    """The image fingerprint of a task's split, as extraction records it."""
    from layerprobe.tasks.registry import get_task

    return get_task(task).fingerprint(split, content)


@dataclass
class Check:
    """Per unit of a plan: ``done[i]``; ``reasons[i]``: why unit ``i``'s done record no longer
    counts (one line, e.g. "its input folder changed since it ran")."""

    done: list[bool]
    reasons: dict[int, str] = field(default_factory=dict)

    def lines(self, plan: Plan, limit: int = 20) -> list[str]:
        """``<stage> <unit id>: <reason>`` of the first ``limit`` units, then how many more."""
        items = sorted(self.reasons.items())
        out = [f"{plan.units[i].stage} {plan.units[i].id}: {why}" for i, why in items[:limit]]
        if len(items) > limit:
            out.append(f"… and {len(items) - limit:,} more")
        return out


class _Inputs:
    """Current identities of inputs, each computed once per check."""

    def __init__(self, index: dict, content: bool):
        self.index, self.content = index, content
        self.fingerprints: dict[tuple[str, str], str] = {}
        self.files: dict[str, tuple | None] = {}
        self.same: dict[tuple, bool | None] = {}

    def data(self, task: str, split: str) -> str:
        key = (task, split)
        if key not in self.fingerprints:
            try:
                fp = data_fingerprint(task, split, False)
                if self.content:  # the content hash is remembered by the stat fingerprint
                    memo = self.index.setdefault("content", {})
                    if (task, split, fp) not in memo:
                        memo[(task, split, fp)] = data_fingerprint(task, split, True)
                        self.index["dirty"] = True
                    fp = memo[(task, split, fp)]
            except UserError as err:
                fp = f"unreadable: {first_line(err)}"
            self.fingerprints[key] = fp
        return self.fingerprints[key]

    def file_same(self, entry: tuple) -> bool | None:
        """Whether the input file of ``entry`` ``(path, size, mtime, ino, sha)`` still has
        those bytes (None: it is gone). A moved stamp costs one hash, remembered by stamp."""
        if entry not in self.same:
            self.same[entry] = self._file_same(entry)
        return self.same[entry]

    def _file_same(self, entry: tuple) -> bool | None:
        path, recorded, sha = entry[0], tuple(entry[1:4]), entry[4]
        if path not in self.files:
            self.files[path] = stamp(path)
        now = self.files[path]
        if now is None:
            return None
        if now == recorded:
            return True
        memo = self.index.setdefault("files", {})
        if memo.get(path, (None,))[0] != now:
            try:
                memo[path] = (now, file_sha256(path))
            except OSError:
                return None
            self.index["dirty"] = True
        return memo[path][1] == sha


def _read_index(state: State) -> dict:
    try:
        with open(state.root / INDEX, "rb") as f:
            index = pickle.load(f)
        if isinstance(index, dict) and index.get("version") == INDEX_VERSION:
            index["dirty"] = False
            return index
    except Exception:  # noqa: BLE001 - a missing or damaged index is rebuilt from the records
        pass
    return {"version": INDEX_VERSION, "units": {}, "files": {}, "content": {}, "dirty": False}


def _write_index(state: State, index: dict) -> None:
    """Atomically (temporary name, then rename); an unwritable state folder only costs speed."""
    if not index.pop("dirty", False):
        return
    try:
        with atomic_path(state.root / INDEX) as tmp, open(tmp, "wb") as f:
            pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError:
        pass


def _listing(state: State, stage: str) -> dict[str, int]:
    """Done records of a stage: unit id -> the record file's inode (one directory read; a
    record is rewritten under a new inode, so the inode tells its version)."""
    try:
        with os.scandir(state.root / "done" / stage) as entries:
            return {e.name: e.inode() for e in entries if not e.name.startswith(".")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


class _Entries:
    """Index entries built from records: one flat tuple per unit, ``(record inode, extraction
    id, inputs, path, size, mtime_ns, inode[, path, ...])``, its inputs (and equal strings)
    shared between units so that the index stays small."""

    def __init__(self, state: State, index: dict):
        self.root, self.index = str(state.root / "done"), index
        self.shared: dict = {}

    def share(self, value):
        return self.shared.setdefault(value, value)

    def read(self, stage: str, uid: str) -> dict | None:
        try:
            with open(f"{self.root}/{stage}/{uid}", "rb") as f:
                raw = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None

    def make(self, plan: Plan, i: int, ino: int) -> tuple | None:
        """The entry of unit ``i`` from its record; None when it has none readable; inputs
        None for a record that cannot be checked (an older layerprobe's)."""
        unit = plan.units[i]
        raw = self.read(unit.stage, unit.id)
        if raw is None:
            return None
        outputs, stamps = raw.get("outputs", []), raw.get("stamps", [])
        if raw.get("verify") != VERSION or len(outputs) != len(stamps):
            return (ino, None, None)
        outs = [v for p, e in zip(outputs, stamps, strict=True) for v in (str(p), *map(int, e[:3]))]
        ins = raw.get("inputs", {})
        files = tuple(self.share(tuple(e)) for e in ins.get("files", []))
        if unit.stage == "extract":
            inputs = self.share((self.share(str(ins.get("data"))), files))
        elif unit.stage == "probe":
            caches = ins.get("caches", {})
            inputs = tuple(self.share(str(caches.get(plan.units[d].id))) for d in unit.deps)
        else:
            inputs = self.share((None, files))
        made = raw.get("extraction_id")
        return (ino, None if made is None else self.share(str(made)), inputs, *outs)


def check_units(plan: Plan, state: State, *, save: bool = True) -> Check:
    """Which units of ``plan`` are done (see the module docstring), and why a unit with a done
    record is not.

    Parameters
    ----------
    plan : the job's units, dependencies first.
    state : the job's records.
    save : keep what was read and hashed in ``state/index.pkl`` (for the next check).

    Returns
    -------
    Check : ``done`` (one bool per unit, plan order) and ``reasons`` (unit index -> one line).
    """
    index = _read_index(state)
    inputs = _Inputs(index, bool(plan.job.extract.get("content_hash", False)))
    entries = _Entries(state, index)
    listed = {s: _listing(state, s) for s in STAGES}
    kept = {s: index["units"].setdefault(s, {}) for s in STAGES}
    done = [False] * len(plan.units)
    made: list[str | None] = [None] * len(plan.units)  # extraction ids of done extract units
    check = Check(done)
    reasons = check.reasons
    stat = os.stat
    for i, unit in enumerate(plan.units):
        stage, uid = unit.stage, unit.id
        ino = listed[stage].get(uid)
        if ino is None:
            continue
        entry = kept[stage].get(uid)
        if entry is None or entry[0] != ino:
            entry = entries.make(plan, i, ino)
            if entry is None:
                continue
            kept[stage][uid] = entry
            index["dirty"] = True
        if entry[2] is None:
            reasons[i] = "its record was written by an older layerprobe (no output stamps)"
            continue
        why = None
        for d in unit.deps:
            if not done[d]:
                why = f"its input {plan.units[d].stage} {plan.units[d].id} runs again"
                break
        if why is None:
            for k in range(3, len(entry), 4):
                path, size, mtime, inode = entry[k : k + 4]
                try:
                    st = stat(path)
                except OSError:
                    why = f"its output {path} is missing"
                    break
                if st.st_size != size or st.st_mtime_ns != mtime or st.st_ino != inode:
                    raw = entries.read(stage, uid) or {}
                    n = (k - 3) // 4
                    token = (raw.get("stamps") or [[None] * 4] * (n + 1))[n][3]
                    if output_token(path) != token:
                        why = f"its output {path} changed since it ran"
                        break
                    moved = list(entry)  # the same content: remember the new stamp
                    moved[k + 1 : k + 4] = st.st_size, st.st_mtime_ns, st.st_ino
                    entry = kept[stage][uid] = tuple(moved)
                    index["dirty"] = True
        if why is None:
            if stage == "probe":  # the common case, inline: the extraction ids it read
                for d, read in zip(unit.deps, entry[2], strict=False):
                    if read != made[d]:
                        why = f"the cache of {plan.units[d].id} was extracted again since it ran"
                        break
            else:
                why = _inputs_changed(plan, i, entry, inputs)
        if why:
            reasons[i] = why
        else:
            done[i] = True
            made[i] = entry[1]
    for stage, entries_kept in kept.items():  # records deleted since: forget them
        for uid in entries_kept.keys() - listed[stage].keys():
            del entries_kept[uid]
            index["dirty"] = True
    if save:
        _write_index(state, index)
    return check


def _inputs_changed(plan: Plan, i: int, entry: tuple, inputs: _Inputs) -> str | None:
    """Why the inputs of an extract, pretrain or finetune unit changed, or None."""
    unit = plan.units[i]
    recorded = entry[2]
    if unit.stage == "extract" and recorded[0] != inputs.data(unit.task, unit.split):
        what = "folder" if unit.task.startswith("folder:") else f"images of {unit.task}"
        return f"its input {what} changed since it ran"
    for file in recorded[1]:
        same = inputs.file_same(file)
        if same is None:
            return f"its model file {file[0]} is missing"
        if not same:
            return f"its model file {file[0]} changed since it ran"
    return None
