"""The selected-rows cache: the analysis path of the store's reader in one file.

``fit``, ``report`` and ``results knobs`` read only the selected-λ rows of every part
(:func:`layerprobe.results.store.read` with ``selected_only``). At the paper's scale that is
120,000 part files, and opening one costs about 2 ms (its footer), whatever is read from it.
So the reader keeps the selected rows of every valid part, every column of
:data:`~layerprobe.results.store.ANALYSIS_SCHEMA`, in one Parquet file beside the store,
``<results>/.layerprobe/selected-rows.cache`` (not ``*.parquet``: no store glob, nor a DuckDB or
pyarrow scan of ``**/*.parquet``, ever takes it for a part). Its footer holds the manifest (JSON, zlib-compressed): per
part its path (relative to the store), size, ``mtime_ns``, ``ctime_ns`` and inode, the
:class:`~layerprobe.results.parts.PartInfo` facts the reader needs (identity, generation key,
newest ``created_at``, number of rows) and how many cached rows are its.

On each read (:func:`read_parts`) every part file is stat'ed; a part whose four stat fields are
the manifest's is served from the cache without being opened. Every other part (new, rewritten,
touched, or written less than :data:`RACY_NS` before the cache was made, when a later rewrite
could carry the same time stamps) is read and validated exactly as without the cache; parts
that are gone drop out. When anything changed, the cache is written again, to a temporary name
and renamed (:func:`layerprobe.runtime.atomic.atomic_path`), so a ``kill -9`` leaves the old
cache or the new one and two readers at once both finish (the last rename wins). Bad parts are
never cached: they are read, and reported or skipped, on every read.

A cache that cannot be read (truncated, damaged, not ours) is ignored with one warning and
rebuilt; one of another format or schema is rebuilt silently. A store that cannot be written
(read-only, disk full) is read directly, with one warning. ``--no-row-cache`` (the analysis
configs' ``no_row_cache``) reads the parts directly and leaves the cache alone.
"""

from __future__ import annotations

import base64
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from layerprobe.results.parts import BadPart, PartInfo
from layerprobe.results.schema import SCHEMA_VERSION
from layerprobe.runtime.atomic import atomic_path
from layerprobe.runtime.ids import short_hash

CACHE_FOLDER = ".layerprobe"
CACHE_NAME = "selected-rows.cache"
FORMAT = 2  # 2: the manifest zlib-compressed (a fifth of the footer at 120,000 parts)
MANIFEST_KEY = b"layerprobe_row_cache"
# A part changed less than this before the cache's stat pass is not trusted from the cache: a
# rewrite within the file system's time-stamp granularity (or a clock a little off, on a shared
# file system) could leave size, times and inode as they were.
RACY_NS = 1_000_000_000
ROW_GROUP = 262_144  # rows per row group of the cache file (read one at a time)
STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino")


def cache_path(results_dir: str | Path) -> Path:
    """Where the selected-rows cache of the store ``results_dir`` lives."""
    return Path(results_dir) / CACHE_FOLDER / CACHE_NAME


def read_parts(
    files: Sequence[Path],
    schema: pa.Schema,
    *,
    layers: Sequence[str] | None,
    results_dir: str | Path,
    warn: Callable[[str], None],
    trust_cache: bool = True,
    apart: Sequence[str] = (),
) -> tuple[list[PartInfo | BadPart], pa.Table, pa.Table | None]:
    """What :func:`layerprobe.results.store._read_parts` returns for ``selected_only``, served
    from the cache where the parts are unchanged, and the cache brought up to date.

    Parameters
    ----------
    files : the store's part files (:func:`~layerprobe.results.parts.part_files`, sorted).
    schema : the columns wanted (fields of ``ANALYSIS_SCHEMA``).
    layers : only the rows of these layers (None: all).
    results_dir : the store folder (``files`` lie below it).
    warn : where the one-line warnings about the cache go.
    trust_cache : False: read every part (a cache found damaged while its rows were read).
    apart : columns of ``schema`` taken apart as they are read from the cache (see
        :func:`layerprobe.results.store.take_apart`); where the parts are read, they stay.

    Returns
    -------
    (per file in order its PartInfo or BadPart, the selected rows of the good parts as one table
    of ``schema`` — text columns dictionary-encoded — plus the reader's part-number column,
    and the rows of ``apart`` taken apart or None where they are still in the table)
    """
    from layerprobe.results.store import ANALYSIS_SCHEMA, PART, _read_parts

    root = Path(results_dir)
    path = cache_path(root)

    def without_cache():  # a cache found damaged while its rows were read: every part read
        return read_parts(
            files,
            schema,
            layers=layers,
            results_dir=root,
            warn=warn,
            trust_cache=False,
            apart=apart,
        )

    started = time.time_ns()
    rels = _relative(files, root)
    stats = [_stat(f) for f in files]
    cached = _load(path, warn) if trust_cache else None
    reuse = np.full(len(files), -1, np.int64)  # file -> manifest entry, -1: read the part
    if cached is not None:
        index = {rel: j for j, rel in enumerate(cached.manifest["path"])}
        for i, (rel, stat) in enumerate(zip(rels, stats, strict=True)):
            j = index.get(rel, -1)
            if j >= 0 and stat is not None and cached.trusted(j, stat):
                reuse[i] = j
        if (reuse == np.arange(len(files))).all() and len(files) == cached.count:
            infos = [cached.info(j, f) for j, f in enumerate(files)]
            del index, rels, stats  # a third of a GiB at 120,000 parts: not held while rows
            cached.drop_manifest()  # become a table (the offsets are all that is left to use)
            try:
                return infos, *cached.rows(schema, layers, PART, apart)
            except Exception as err:  # damaged pages (checksums): never an answer from it
                warn(_damaged(path, err))
                return without_cache()
            finally:
                cached.close()

    if cached is None and not _writable(path):  # nothing to reuse nor to keep: read directly
        warn(_not_written(path, "the folder is not writable"))
        return (*_read_parts(files, schema, True, layers, results_dir), None)
    fresh = np.flatnonzero(reuse < 0)
    fresh_infos, fresh_rows = _read_parts(
        [files[i] for i in fresh], ANALYSIS_SCHEMA, True, None, results_dir
    )
    good_fresh = fresh[[not isinstance(info, BadPart) for info in fresh_infos]]
    tables = [_renumber(fresh_rows, PART, good_fresh)]  # PART: the file's index
    infos: list[PartInfo | BadPart | None] = [None] * len(files)
    for i, info in zip(fresh, fresh_infos, strict=True):
        infos[i] = info
    kept = np.flatnonzero(reuse >= 0)
    if len(kept):
        for i in kept:
            infos[int(i)] = cached.info(int(reuse[i]), files[i])
        try:
            tables.append(cached.take(reuse[kept], kept, tables[0].schema, PART))
        except Exception as err:  # damaged pages (checksums): never an answer from it
            cached.close()
            warn(_damaged(path, err))
            return without_cache()
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if (np.diff(table[PART].to_numpy()) < 0).any():  # cached and read parts: back in file order
        table = table.take(pc.sort_indices(table[PART]))  # stable: each part's rows in order
    good = np.asarray([not isinstance(info, BadPart) for info in infos], bool)
    counts = np.bincount(table[PART].to_numpy(), minlength=len(files))
    if cached is not None:
        cached.close()
    _write(
        path,
        table.drop_columns([PART]),
        manifest=_manifest(
            [infos[i] for i in np.flatnonzero(good)],
            [rels[i] for i in np.flatnonzero(good)],
            [stats[i] for i in np.flatnonzero(good)],
            counts[good],
            started,
        ),
        warn=warn,
    )
    number = np.cumsum(good) - 1  # a good part's number among the good ones
    table = table.set_column(
        table.schema.get_field_index(PART),
        PART,
        pa.array(number[table[PART].to_numpy()], pa.int32()),
    )
    return infos, _project(table, schema, layers, PART), None


def _relative(files: Sequence[Path], root: Path) -> list[str]:
    """Each file's path below ``root``, with ``/`` (string slicing where the files' names start
    with the root's, as :func:`part_files` makes them: ``Path.relative_to`` costs 30 µs each)."""
    prefix = str(root).rstrip(os.sep) + os.sep
    out = []
    for f in files:
        text = str(f)
        rel = text[len(prefix) :] if text.startswith(prefix) else f.relative_to(root).as_posix()
        out.append(rel.replace(os.sep, "/") if os.sep != "/" else rel)
    return out


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # gone since it was listed: read it, and say so as the reader does
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def fingerprint() -> str:
    """What a cache must have been made for: this format, schema version and column types."""
    from layerprobe.results.store import ANALYSIS_SCHEMA

    return short_hash([FORMAT, SCHEMA_VERSION, ANALYSIS_SCHEMA.to_string()], 16)


class _Cache:
    """An open, checked cache file and its manifest (columns of one list per field)."""

    def __init__(self, file: pq.ParquetFile, manifest: dict) -> None:
        self.file, self.manifest = file, manifest
        self.count = len(manifest["path"])
        self.offsets = np.concatenate([[0], np.cumsum(manifest["rows"], dtype=np.int64)])
        self.limit = manifest["made_ns"] - RACY_NS
        self.times: dict[str, datetime] = {}

    def trusted(self, j: int, stat: tuple[int, int, int, int]) -> bool:
        m = self.manifest
        return (
            stat == tuple(m[name][j] for name in STAT_FIELDS) and max(stat[1], stat[2]) < self.limit
        )

    def info(self, j: int, path: Path) -> PartInfo:
        m = self.manifest
        generation = tuple(m["generation"][j]) if m["generation"][j] else ("part", str(path))
        created = m["created"][j]
        if created is not None:
            if created not in self.times:  # parts of one run share their time
                self.times[created] = datetime.fromisoformat(created)
            created = self.times[created]
        return PartInfo(path, m["identity"][j], generation, created, m["num_rows"][j])

    def rows(
        self, schema: pa.Schema, layers, part: str, apart: Sequence[str] = ()
    ) -> tuple[pa.Table, pa.Table | None]:
        """The cached rows of every entry, as :func:`read_parts` returns them (entry j is part
        number j), read one row group at a time, filtered to ``layers`` and with the columns
        ``apart`` taken apart (:func:`~layerprobe.results.store.take_apart`) as they come:
        (rows, the rows of ``apart`` or None)."""
        from layerprobe.results.store import take_apart

        names = list(dict.fromkeys([*schema.names, "layer"]))
        numbers = np.repeat(np.arange(self.count, dtype=np.int32), np.diff(self.offsets))
        out, sides, start = [], [], 0
        for g in range(self.file.metadata.num_row_groups):
            table = self.file.read_row_group(g, columns=names, use_threads=False)
            table = table.append_column(
                part, pa.array(numbers[start : start + len(table)], pa.int32())
            )
            start += len(table)
            table, side = take_apart(_project(table, schema, layers, part), apart, part)
            out.append(table)
            sides.append(side)
        if not out:
            empty = self._empty(names).append_column(part, pa.array([], pa.int32()))
            table, side = take_apart(_project(empty, schema, layers, part), apart, part)
            out, sides = [table], [side]
        return pa.concat_tables(out), pa.concat_tables(sides) if apart else None

    def take(self, entries: np.ndarray, files: np.ndarray, like: pa.Schema, part: str) -> pa.Table:
        """Every column of the rows of manifest ``entries``, in that order, with ``part`` set
        to the matching ``files`` index; in the types of ``like``."""
        lengths = self.offsets[entries + 1] - self.offsets[entries]
        starts = np.repeat(self.offsets[entries] - np.cumsum(lengths) + lengths, lengths)
        rows = starts + np.arange(lengths.sum(), dtype=np.int64)
        table = self.file.read(use_threads=False).take(pa.array(rows))
        table = table.append_column(part, pa.array(np.repeat(files, lengths).astype(np.int32)))
        return pa.Table.from_arrays(
            [_as(table[field.name], field.type) for field in like], schema=like
        )

    def _empty(self, names) -> pa.Table:
        schema = self.file.schema_arrow
        return pa.schema([schema.field(n) for n in names]).empty_table()

    def drop_manifest(self) -> None:
        """Free the manifest (the parts' facts, once :meth:`info` has been asked for them)."""
        self.manifest = None

    def close(self) -> None:
        self.file.close()


def _load(path: Path, warn: Callable[[str], None]) -> _Cache | None:
    """The cache at ``path`` if there is one made for this reader; a damaged one is ignored
    with one warning (it is rebuilt), one of another format or schema silently."""
    if not path.exists():
        return None
    try:
        file = pq.ParquetFile(path, page_checksum_verification=True)
        raw = (file.metadata.metadata or {}).get(MANIFEST_KEY)
        if raw is None:
            raise ValueError("it has no manifest")
        if raw[:1] == b"{":  # an uncompressed manifest: a cache of format 1, rebuilt silently
            file.close()
            return None
        manifest = json.loads(zlib.decompress(base64.b64decode(raw)))
        if manifest.get("fingerprint") != fingerprint():
            file.close()
            return None
        cache = _Cache(file, manifest)
        columns = ("path", "identity", "generation", "created", "num_rows", "rows", *STAT_FIELDS)
        if any(len(manifest[name]) != cache.count for name in columns):
            raise ValueError("its manifest is inconsistent")
        if cache.offsets[-1] != file.metadata.num_rows:
            raise ValueError(
                f"it holds {file.metadata.num_rows} rows, its manifest {cache.offsets[-1]}"
            )
        return cache
    except Exception as err:  # truncated, damaged or foreign: never an answer from it
        warn(_damaged(path, err))
        return None


def _damaged(path: Path, err: Exception) -> str:
    what = str(err).splitlines()[0] if str(err) else ""
    return (
        f"ignoring the row cache {path}: it cannot be read ({type(err).__name__}: {what}); "
        "it is rebuilt from the parts"
    )


def _manifest(infos, rels, stats, rows, started: int) -> dict:
    return {
        "fingerprint": fingerprint(),
        "made_ns": started,
        "path": list(rels),
        # a part that could not be stat'ed (it appeared while it was listed) matches no stat
        **{name: [-1 if s is None else s[k] for s in stats] for k, name in enumerate(STAT_FIELDS)},
        "identity": [info.identity for info in infos],
        "generation": [None if info.generation[0] == "part" else info.generation for info in infos],
        "created": [None if info.created is None else info.created.isoformat() for info in infos],
        "num_rows": [info.num_rows for info in infos],
        "rows": [int(n) for n in rows],
    }


def _write(path: Path, table: pa.Table, *, manifest: dict, warn) -> None:
    """Write the cache atomically; where that fails (read-only store, disk full), warn once."""
    # In the Parquet footer only (not in the Arrow schema it also stores, where it would be
    # kept a second time and decoded with the schema).
    manifest = json.dumps(manifest, separators=(",", ":"), default=str).encode()
    manifest = base64.b64encode(zlib.compress(manifest, 6)).decode("ascii")
    table = table.replace_schema_metadata(None)
    try:
        with atomic_path(path, fsync=True) as tmp:
            with pq.ParquetWriter(
                tmp, table.schema, compression="zstd", write_page_checksum=True
            ) as writer:
                writer.write_table(table, row_group_size=ROW_GROUP)
                writer.add_key_value_metadata({MANIFEST_KEY.decode(): manifest})
    except OSError as err:
        warn(_not_written(path, f"{type(err).__name__}: {err.strerror or err}"))


def _not_written(path: Path, why: str) -> str:
    return (
        f"could not write the row cache {path} ({why}); the parts were read directly (pass "
        "--no-row-cache to stop trying)"
    )


def _writable(path: Path) -> bool:
    """Whether the cache's folder (or the nearest existing folder above it) may be written."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK)


def _renumber(table: pa.Table, part: str, files: np.ndarray) -> pa.Table:
    """``table``'s ``part`` numbers (indices into ``files``) replaced by the files' indices."""
    numbers = files.astype(np.int32)[table[part].to_numpy()] if len(table) else []
    return table.set_column(table.schema.get_field_index(part), part, pa.array(numbers, pa.int32()))


def _project(table: pa.Table, schema: pa.Schema, layers, part: str) -> pa.Table:
    """``schema``'s columns of ``table`` and ``part``, in the types the reader's batches have
    (text columns dictionary-encoded), filtered to ``layers``."""
    from layerprobe.results.store import TEXT

    if layers:
        layer = table["layer"]
        if pa.types.is_dictionary(layer.type):
            layer = layer.cast(layer.type.value_type)
        table = table.filter(pc.is_in(layer, pa.array(list(layers), pa.string())))
    fields = [
        pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in TEXT else f for f in schema
    ]
    out = pa.schema([*fields, pa.field(part, pa.int32())])
    return pa.Table.from_arrays([_as(table[f.name], f.type) for f in out], schema=out)


def _as(column, to: pa.DataType):
    from layerprobe.results.store import _cast

    return _cast(column, to)
