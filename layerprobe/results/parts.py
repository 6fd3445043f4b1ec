"""Part files of the results store: one Parquet file per unit of work.

Layout: ``<results>/<model_key>/<task>.<probe>.<hash>.parquet``. The readable names are for
people; ``<hash>`` covers the unit's full identity (model key, task, probe configuration and
the identity of the cache files it read), so two distinct units never share a file however
their names simplify. The identity is also stored in the file's metadata: a reader checks
that the name, the metadata and the rows agree, and refuses a part that was renamed or
copied over another.

A part is written to a temporary name in the same folder and renamed when complete, so
readers never see half a file; temporary names start with a dot and are never read. Its
selected rows come first, in a row group of their own (:mod:`layerprobe.results.layout`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from layerprobe.errors import DataError, check_writable
from layerprobe.results.layout import write_part_table
from layerprobe.results.schema import COLUMNS, SCHEMA_VERSION, to_table

PART_SUFFIX = ".parquet"
IDENTITY_KEY = b"layerprobe_unit"
VERSION_KEY = b"layerprobe_schema_version"


def identity_hash(identity: dict) -> str:
    """Sixteen hex digits naming a unit identity (JSON, keys sorted)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(config: dict) -> str:
    """Ten hex digits naming a probe configuration (the ``config`` column)."""
    return identity_hash(config)[:10]


def readable(name: str) -> str:
    """A file-name-safe, readable form of a model key or task (``builtin/digits`` -> ``builtin__digits``).
    Not unique on its own: the identity hash beside it is."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", name.replace("/", "__")).strip(".")
    return safe[:80] or "_"


def part_path(results_dir: str | Path, identity: dict) -> Path:
    """Where the part of a unit lives; ``identity`` holds at least model_key, task and probe."""
    name = (
        f"{readable(identity['task'])}.{identity['probe']}.{identity_hash(identity)}{PART_SUFFIX}"
    )
    return Path(results_dir) / readable(identity["model_key"]) / name


def write_part(rows: pd.DataFrame, results_dir: str | Path, identity: dict) -> Path:
    """Write a unit's rows atomically (temporary name, then rename) and return the part's path."""
    path = part_path(results_dir, identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = to_table(rows)
    meta = dict(table.schema.metadata or {})
    meta[IDENTITY_KEY] = json.dumps(identity, sort_keys=True, default=str).encode()
    meta[VERSION_KEY] = str(SCHEMA_VERSION).encode()
    return write_part_table(table.replace_schema_metadata(meta), path)


def part_files(results_dir: str | Path) -> list[Path]:
    """The store's part files, sorted (temporary files of running writers are not included)."""
    root = Path(results_dir)
    if root.is_file():
        raise DataError(f"results folder {root} is a file; give --results the folder of part files")
    if not root.is_dir():
        raise DataError(
            f"results folder {root} does not exist; run `layerprobe probe --results {root}` first"
        )
    return sorted(p for p in root.rglob(f"*{PART_SUFFIX}") if not p.name.startswith("."))


def _unreadable(path: Path, err: Exception) -> DataError:
    return DataError(
        f"cannot read results part {path} ({type(err).__name__}: {err}); delete it and re-run "
        "`layerprobe probe`, or pass --skip-bad"
    )


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for truncated or foreign files
        raise _unreadable(path, err) from err


def read_metadata(path: Path, file: pq.ParquetFile | None = None) -> tuple[int | None, dict | None]:
    """(schema version, unit identity) from a part's footer; (None, None) when it has none."""
    meta = (file or _open(path)).schema_arrow.metadata or {}
    version = meta.get(VERSION_KEY) or meta.get(b"layerprobe_store_version")
    identity = meta.get(IDENTITY_KEY)
    return (
        int(version) if version is not None and version.isdigit() else None,
        json.loads(identity) if identity else None,
    )


def check_version(path: Path, version: int | None) -> None:
    """Refuse a part of another schema version, saying how to go on."""
    if version == SCHEMA_VERSION:
        return
    if version is None:
        raise DataError(
            f"results part {path} was not written by layerprobe (no schema version); move it out "
            "of the results folder, or pass --skip-bad"
        )
    raise DataError(
        f"results part {path} has results schema {version}, this layerprobe reads schema "
        f"{SCHEMA_VERSION}; probe again into a new --results folder (the feature caches are "
        "reused), or delete the old parts"
    )


def read_part(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """One part's rows, after checking its version and that its name, metadata and rows agree."""
    path = Path(path)
    file = _open(path)  # one open: the footer gives the identity, then the rows are read
    version, identity = read_metadata(path, file)
    check_version(path, version)
    if identity is None or path.name != part_path(path.parent.parent, identity).name:
        raise DataError(
            f"results part {path} does not carry the identity its name says (renamed or copied "
            "by hand?); move it out of the results folder, or pass --skip-bad"
        )
    wanted = COLUMNS if columns is None else list(dict.fromkeys(["model_key", "task", *columns]))
    try:
        frame = file.read(columns=wanted).to_pandas()
    except Exception as err:
        raise _unreadable(path, err) from err
    if len(frame) and (
        set(frame["model_key"]) != {identity["model_key"]}
        or set(frame["task"]) != {identity["task"]}
    ):
        raise DataError(
            f"results part {path} holds rows of another unit than its name says; move it out of "
            "the results folder, or pass --skip-bad"
        )
    return frame


def check_results_dir(results_dir: str | Path, option: str = "--results") -> Path:
    """Before any work: ``results_dir`` is (or can become) a writable folder whose parts are of
    this schema version. Raises :class:`ConfigError` / :class:`DataError` otherwise."""
    root = check_writable(results_dir, option)
    for path in part_files(root):
        try:
            version, _ = read_metadata(path)
        except DataError:
            continue  # a damaged part is reported when the store is read
        check_version(path, version)
        break  # one readable part tells the folder's version; all are checked again on load
    return root
