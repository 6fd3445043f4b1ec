"""Reading the results store: the one function every reader goes through.

``read`` is what ``results show``, ``results.load``, ``fit``, ``report``, ``scan`` and the
analysis functions stand on. It validates every part the same way, serves one generation of
each result, and only finite accuracies; ``load`` (every row and column) and
:func:`layerprobe.results.read.read_selected` (the analysis path) are thin callers of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from layerprobe.errors import DataError
from layerprobe.results.external import is_table, read_table
from layerprobe.results.frames import distinct_rows, first_rows, key_codes
from layerprobe.results.parts import BadPart, PartInfo, _unreadable, part_files, part_info
from layerprobe.results.schema import COLUMNS, PROBE_KEY, ROW_KEY, SCHEMA
from layerprobe.runtime.warn import warn as warn_user

# The columns the analysis path (``selected_only``) reads, with the types it reads them as (the
# schema's, knobs as floats). A part that lacks an optional column gets nulls there.
ANALYSIS_SCHEMA = pa.schema(
    [
        pa.field(name, pa.float64()) if name == "params" else SCHEMA.field(name)
        for name in SCHEMA.names
        if name not in ("k", "converged", "l2_select")
    ]
)
TEXT = (
    "model",
    "model_key",
    "upstream_task",
    "pretrain_model",
    "pretrain_schedule",
    "task",
    "layer",
    "probe",
    "backend",
    "config",  # a hash: few distinct values, 8 bytes a row as text (100 MB at 10 M rows)
)
# Accuracies served must be finite; a null val_accuracy means "not measured" (a fine-tune with
# a given learning rate), a null test_accuracy is refused like NaN.
ACCURACIES = {"test_accuracy": False, "val_accuracy": True}  # column: null allowed


def read(
    results_dir: str | Path,
    *,
    columns: Sequence[str] | None = None,
    selected_only: bool = False,
    layers: Sequence[str] | None = None,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    row_cache: bool = True,
) -> pd.DataFrame:
    """The rows of the results store below ``results_dir``: every reader's one entry point.

    Contract
    --------
    1. **Every part is validated from its footer** (:func:`layerprobe.results.parts.part_info`):
       readable Parquet, this schema version, the identity in its metadata gives its file name,
       its rows' model key and task are that identity's, the needed columns exist and are
       numeric where they must be. A part that fails is refused with :class:`BadPart` (one line
       naming the file and what to do) — or, with ``skip_bad``, left out with a warning.
    2. **One generation per result.** Parts are grouped by (model_key, task, probe, config);
       of each group only the part(s) with the newest ``created_at`` are read, so rows of
       superseded cache files, or of an earlier run with other shots, seeds or layers, are never
       served, even where a crash left the old part beside the new one. Within what is served,
       a row key present twice keeps its newest row.
    3. **Finite accuracies.** Every ``test_accuracy`` served is a finite number and every
       ``val_accuracy`` finite or null; a part holding NaN or ±inf in the rows read is refused
       (or skipped with ``skip_bad``; its generation then has no rows — an older part is never
       served in its place).
    4. **Fast.** Each part is opened once: the footer its validation parses is the one its
       rows are read with, only ``columns`` are decoded, and with ``selected_only`` only the
       row groups whose statistics hold a selected row (with the selected-first layout of
       :mod:`layerprobe.results.layout` the unselected row group is skipped). Parts are read
       on a few threads and their rows filtered (``selected`` / ``layers``) and cast to the
       schema per batch of :data:`BATCH` parts. With ``selected_only`` (and ``row_cache``),
       the selected rows of unchanged parts come from one file beside the store
       (:mod:`layerprobe.results.rowcache`): only new or changed parts are opened, and validated
       as above; the rows served are the same.

    Parameters
    ----------
    results_dir : the results folder (part files below it, any depth), or a ``.csv`` /
        ``.parquet`` table of US and DS accuracies, read by
        :func:`layerprobe.results.external.read_table` (its columns checked and completed to
        the schema; its own extra columns, e.g. a family, can be asked for in ``columns``).
    columns : the columns wanted (default: every column of the schema, or of
        ``ANALYSIS_SCHEMA`` with ``selected_only``); the row key and ``created_at`` are always
        read so that duplicates can be resolved.
    selected_only : only the rows of the λ chosen on validation (``selected == True``): the
        analysis path. Text columns then come as categoricals, ``params`` as float.
    layers : only these layers (filtered as the parts are read).
    skip_bad : leave out bad parts (with a warning naming each) instead of raising.
    warn : where warnings go (default: a :class:`~layerprobe.runtime.warn.LayerprobeWarning`).
    row_cache : with ``selected_only``, use (and bring up to date) the selected-rows cache
        ``<results_dir>/.layerprobe/selected-rows.cache``; False reads every part directly.

    Returns
    -------
    DataFrame, one row per (model_key, task, layer, shots, seed, λ, k, probe, config) — per
    (model_key, task, layer, shots, seed, probe, config) with ``selected_only``. Without
    ``columns`` and ``selected_only`` it has the schema's columns in schema order, sorted by
    model key, task, probe, shots, seed, depth, λ and k. Missing optional columns are nulls.

    Raises
    ------
    DataError : no part files, no readable or selected rows, or a bad part (without
        ``skip_bad``).
    """
    return _read(
        results_dir,
        columns=columns,
        selected_only=selected_only,
        layers=layers,
        skip_bad=skip_bad,
        warn=warn,
        row_cache=row_cache,
    )[0]


def _read(
    results_dir: str | Path,
    *,
    columns: Sequence[str] | None,
    selected_only: bool,
    layers: Sequence[str] | None,
    skip_bad: bool,
    warn: Callable[[str], None] | None,
    row_cache: bool,
    apart: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """:func:`read`'s work; with ``apart`` (and ``selected_only``), also those columns once per
    checkpoint (:func:`read_apart`). Returns (rows, checkpoints or None)."""
    if is_table(results_dir):  # a published table instead of a store (results/external.py)
        table = read_table(results_dir, columns=columns, selected_only=selected_only, layers=layers)
        return table, None
    say = warn or _stderr
    files = part_files(results_dir)
    if not files:
        raise DataError(
            f"no results in {results_dir} (no .parquet part files); run "
            f"`layerprobe probe --cache CACHE --results {results_dir}` first"
        )
    base = ANALYSIS_SCHEMA if selected_only else SCHEMA
    key = PROBE_KEY if selected_only else ROW_KEY
    want = list(dict.fromkeys([*(columns or base.names), *key, "created_at"]))
    unknown = [c for c in want if c not in base.names]
    if unknown:
        raise ValueError(f"read: unknown column(s) {unknown}")
    schema = pa.schema([base.field(c) for c in want])

    apart = [c for c in apart if c in want and c != "model_key"] if selected_only else []
    side = None  # the rows of `apart` where they were taken apart as the rows were read
    if selected_only and row_cache:  # the selected rows of unchanged parts from one file
        from layerprobe.results.rowcache import read_parts

        infos, table, side = read_parts(
            files, schema, layers=layers, results_dir=results_dir, warn=say, apart=apart
        )
    else:
        infos, table = _read_parts(files, schema, selected_only, layers, results_dir)
    for info in infos:
        if isinstance(info, BadPart):
            if not skip_bad:
                raise info
            say(info.skipped())
    infos = [info for info in infos if not isinstance(info, BadPart)]
    served = newest_generation(infos)
    if len(served) < len(infos):  # rows of superseded generations are dropped
        newest = {id(info) for info in served}
        numbers = pa.array([i for i, info in enumerate(infos) if id(info) in newest], pa.int32())
        table = table.filter(pc.is_in(table[PART], numbers))
        if side is not None:
            side = side.filter(pc.is_in(side[PART], numbers))
    table = table.drop_columns([PART])
    keep = ds.field("selected") == True if selected_only else None  # noqa: E712
    if layers:
        wanted_layers = ds.field("layer").isin(list(layers))
        keep = wanted_layers if keep is None else keep & wanted_layers
    if _has_non_finite(table):
        bad = _non_finite_parts(served, schema, keep, results_dir)
        for err in bad:
            if not skip_bad:
                raise err
            say(err.skipped())
        served = [info for info in served if info.path not in {err.path for err in bad}]
        table, side = _scan(served, schema, keep, results_dir), None  # `apart` in the rows
    if not served:
        raise DataError(f"no readable results in {results_dir}; re-run `layerprobe probe`")
    if selected_only:
        table = _categorical(table)  # the table before it is dropped: its columns can be freed
        checkpoints = None
        if apart:  # reduced to one row per checkpoint before the rows become a DataFrame
            if side is None:
                side = table.select(["model_key", *apart])
                table = table.drop_columns(apart)
            checkpoints = _distinct(_pandas(_categorical(side.select(["model_key", *apart]))))
            del side
        frame = _pandas(table)
        if frame.empty and not layers:
            raise DataError(
                f"no rows of {results_dir} have selected == true (the λ chosen on validation); "
                "re-run `layerprobe probe` to write them"
            )
        rows = _newest(frame, list(key))
        if checkpoints is not None and len(rows) < len(frame):
            raise _Duplicates  # rows were dropped: their checkpoints' values are taken again
        return rows, checkpoints
    frame = _newest(_pandas(table), list(key))
    order = ["model_key", "task", "probe", "shots", "seed", "depth", "l2", "k"]
    frame = frame.sort_values(order if columns is None else list(key), kind="stable")
    frame = frame.reset_index(drop=True)
    return frame[[c for c in COLUMNS if c in want]], None


def read_apart(
    results_dir: str | Path,
    *,
    columns: Sequence[str],
    apart: Sequence[str],
    layers: Sequence[str] | None = None,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    row_cache: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`read` with ``selected_only``, the columns ``apart`` (ones that describe a
    checkpoint: its US accuracy, its knobs) returned once per checkpoint instead of on every row.

    At the paper's scale a float column is 80 MB on 10 M rows and 40 KB on 4,800 checkpoints:
    the columns apart are taken from the Arrow table before the rows become a DataFrame, so the
    rows and their transient copies never hold them.

    Returns
    -------
    rows : as :func:`read` returns them, with ``columns`` (and the probe key) but not ``apart``.
    checkpoints : ``model_key`` (text) and the columns of ``apart`` the results have: their
        distinct combinations in order of first appearance, as
        ``rows[["model_key", *apart]].drop_duplicates()`` of a full read — one row per
        checkpoint where its numbers agree on all its rows, as in a store layerprobe wrote
        (``checkpoints.groupby("model_key", sort=False).first()`` is then the full read's).
    """
    options = dict(layers=layers, skip_bad=skip_bad, warn=warn, row_cache=row_cache)
    want = list(dict.fromkeys([*columns, *apart]))
    if not is_table(results_dir):
        try:
            return _read(results_dir, columns=want, selected_only=True, apart=apart, **options)
        except _Duplicates:  # rare: a row key served twice; read whole, then take them apart
            pass
    rows, _ = _read(results_dir, columns=want, selected_only=True, **options)
    there = [c for c in apart if c in rows.columns and c != "model_key"]
    checkpoints = _distinct(rows[["model_key", *there]])
    return rows.drop(columns=[c for c in there if c not in columns]), checkpoints


def _distinct(frame: pd.DataFrame) -> pd.DataFrame:
    """The distinct rows of ``frame`` (missing values equal), in order of first appearance,
    ``model_key`` as text and a fresh index."""
    frame = distinct_rows(frame).reset_index(drop=True)
    frame["model_key"] = frame["model_key"].astype(str)
    return frame


class _Duplicates(Exception):
    """Duplicate rows were dropped after a checkpoint's values were taken (:func:`read_apart`)."""


def load(
    results_dir: str | Path,
    *,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every row of the store below ``results_dir`` (one per regularisation value): :func:`read`
    with all rows; see its contract.

    Parameters
    ----------
    results_dir : the folder given to ``layerprobe probe --results``.
    skip_bad : skip bad part files (with a warning) instead of raising.
    warn : where warnings go (default: a :class:`~layerprobe.runtime.warn.LayerprobeWarning`).
    columns : only these columns (plus the row key); default all of the schema.

    Returns
    -------
    DataFrame with the schema's columns (:mod:`layerprobe.results.schema`).
    """
    return read(results_dir, columns=columns, skip_bad=skip_bad, warn=warn)


def _read_parts(
    files: Sequence[Path],
    schema: pa.Schema,
    selected_only: bool,
    layers: Sequence[str] | None,
    results_dir,
) -> tuple[list[PartInfo | BadPart], pa.Table]:
    """Every part validated (:func:`part_info`) and its wanted rows read, opening each file once.

    The footer the validation parses is the one the read uses, so a part costs one open and one
    footer parse; with ``selected_only``, row groups whose statistics show no selected row (the
    unselected row group of the selected-first layout) are not decoded. Parts are handled on a
    few threads (pyarrow releases the GIL while it reads), and their rows are gathered into
    one table every :data:`BATCH` parts, so that many small tables are never held at once.

    Returns
    -------
    (per file in order its PartInfo or BadPart, the rows of the good parts as one table of
    ``schema`` plus a :data:`PART` column numbering the part among the good ones).
    """
    wanted = set(schema.names)

    def one(path: Path) -> tuple[PartInfo | BadPart, pa.Table | None]:
        return read_part(path, wanted, selected_only)

    infos: list[PartInfo | BadPart] = []
    chunks, pending = [], []
    bad = [0]  # BadParts so far

    def take(results) -> None:
        for info, rows in results:
            if rows is not None:  # numbered among the good parts, for newest_generation
                pending.append((len(infos) - bad[0], rows))
            infos.append(info)
            bad[0] += isinstance(info, BadPart)
            if len(pending) >= BATCH:
                chunks.append(_combine(pending, schema, results_dir, selected_only, layers))
                pending.clear()

    if len(files) < 32:
        take(one(path) for path in files)
    else:
        with ThreadPoolExecutor(min(4, 2 * (os.cpu_count() or 1))) as pool:
            for start in range(0, len(files), 2 * BATCH):  # a window: few results wait at once
                take(pool.map(one, files[start : start + 2 * BATCH]))
    if pending or not chunks:
        chunks.append(_combine(pending, schema, results_dir, selected_only, layers))
    return infos, pa.concat_tables(chunks)


def read_part(
    path: Path, wanted: set[str], selected_only: bool
) -> tuple[PartInfo | BadPart, pa.Table | None]:
    """One part validated (:func:`part_info`) and its wanted rows read (:func:`_part_rows`),
    opening the file once: (its PartInfo, its rows) or (the BadPart, None)."""
    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for truncated or foreign files
        return _unreadable(path, err), None
    try:
        info = part_info(path, file=file)
        return info, _part_rows(file, path, wanted, selected_only)
    except BadPart as err:
        return err, None
    finally:
        file.close()


def _part_rows(file: pq.ParquetFile, path: Path, wanted: set[str], selected_only: bool) -> pa.Table:
    """The wanted columns a part has, and the filter columns, from the row groups that may hold
    selected rows (all with ``selected_only`` false), in the part's own types; the rows are
    filtered per batch of parts (:func:`_combine`)."""
    meta = file.metadata
    names = meta.schema.names
    groups = list(range(meta.num_row_groups))
    if selected_only:
        index = names.index("selected")
        groups = [g for g in groups if _may_hold_true(meta.row_group(g).column(index))]
    columns = [c for c in names if c in wanted or c in ("selected", "layer")]
    try:
        return file.read_row_groups(groups, columns=columns, use_threads=False)
    except Exception as err:  # a damaged column chunk
        raise _unreadable(path, err) from err


def _may_hold_true(chunk) -> bool:
    """A ``selected`` column chunk that may hold a true value (no statistics: it may)."""
    stats = chunk.statistics
    if stats is None or not stats.has_min_max:
        return stats is None or stats.null_count != chunk.num_values
    return bool(stats.max)


def _combine(
    parts: list[tuple[int, pa.Table]],
    schema: pa.Schema,
    results_dir,
    selected_only: bool = False,
    layers: Sequence[str] | None = None,
) -> pa.Table:
    """The rows of a batch of parts ((number, rows) pairs) that pass the ``selected`` /
    ``layers`` filters, as one table of ``schema`` plus :data:`PART` (the part's number):
    each part's columns cast to the schema's types, columns a part lacks as nulls (the
    explicit-schema scan's rules); with ``selected_only`` the text columns of :data:`TEXT` stay
    (or become) dictionary-encoded. Parts of the same column types (as a writer makes them
    all) are concatenated, filtered and cast together."""
    dictionaries = selected_only
    schema = schema.append(pa.field(PART, pa.int32()))
    if dictionaries:
        schema = pa.schema(
            [
                pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in TEXT else f
                for f in schema
            ]
        )
    if not parts:
        return schema.empty_table()
    by_types: dict[pa.Schema, list[tuple[int, pa.Table]]] = {}
    for number, table in parts:
        by_types.setdefault(table.schema.remove_metadata(), []).append((number, table))
    out = []
    for group in by_types.values():
        table = pa.concat_tables([t.replace_schema_metadata(None) for _, t in group])
        numbers = np.repeat([n for n, _ in group], [len(t) for _, t in group]).astype(np.int32)
        table = table.append_column(PART, pa.array(numbers))
        if dictionaries:
            table = table.unify_dictionaries()
        table = table.combine_chunks()
        if selected_only:
            table = table.filter(pc.fill_null(table["selected"], False))
        if layers:
            if "layer" in table.column_names:
                layer = table["layer"]
                if pa.types.is_dictionary(layer.type):
                    layer = layer.cast(layer.type.value_type)
                table = table.filter(pc.is_in(layer, pa.array(list(layers), pa.string())))
            else:
                table = table.slice(0, 0)
        columns = []
        try:
            for field in schema:
                if field.name in table.column_names:
                    columns.append(_cast(table[field.name], field.type))
                else:
                    columns.append(pa.nulls(len(table), field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            raise DataError(
                f"cannot read the results in {results_dir} ({type(err).__name__}: {err}); "
                "find the bad part with `layerprobe results show --results DIR`"
            ) from err
        out.append(pa.Table.from_arrays(columns, schema=schema))
    if len(out) == 1:
        return out[0]
    table = pa.concat_tables(out)  # parts of several column types: back in file order
    return table.take(pc.sort_indices(table[PART]))  # a stable sort


def take_apart(table: pa.Table, apart: Sequence[str], part: str) -> tuple[pa.Table, pa.Table]:
    """``table`` without the columns ``apart``, and the few rows of them a checkpoint's first
    value can be on (for :func:`read_apart`).

    Those rows are the first, and each row where the part or any column of ``apart`` differs
    from the row before (missing values equal to each other): whichever parts are later left
    out (an older generation), each checkpoint's first row, and its first row with a value in
    each column, is among them. The store's rows come part by part, so that is a few rows per
    part instead of every row.

    Returns
    -------
    (``table`` less ``apart``, ``model_key``, ``part`` and ``apart`` at those rows)
    """
    apart = [c for c in apart if c in table.column_names]
    n = table.num_rows
    change = np.zeros(n, bool)
    change[:1] = True
    for name in [part, *apart]:
        column = table[name]
        before, after = column.slice(0, max(n - 1, 0)), column.slice(1)
        same = pc.fill_null(pc.equal(before, after), False)
        same = pc.or_(same, pc.and_(pc.is_null(before), pc.is_null(after)))
        if pa.types.is_floating(column.type):  # NaN equals NaN here
            both_nan = pc.and_(pc.is_nan(before), pc.is_nan(after))
            same = pc.or_(same, pc.fill_null(both_nan, False))
        change[1:] |= ~np.asarray(same.to_numpy(zero_copy_only=False), bool)
    side = table.select(["model_key", part, *apart]).filter(pa.array(change))
    return table.drop_columns(apart), side


def _cast(column: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    if column.type == to:
        return column
    if pa.types.is_dictionary(to):
        if pa.types.is_dictionary(column.type):
            return column.cast(to)
        return column.cast(to.value_type).dictionary_encode()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(to)


def newest_generation(infos: Sequence[PartInfo]) -> list[PartInfo]:
    """Of each generation key, the part(s) with the newest ``created_at`` (ties: all of them;
    their duplicate rows are resolved row by row)."""
    newest: dict[tuple, object] = {}
    for info in infos:
        best = newest.get(info.generation, _NONE)
        if best is _NONE or (info.created is not None and (best is None or info.created > best)):
            newest[info.generation] = info.created
    return [info for info in infos if info.created == newest[info.generation]]


_NONE = object()
PART = "__part"  # the number of the part a row came from, while the store is read
BATCH = 512  # parts' rows gathered into one table at a time


def _scan(served: Sequence[PartInfo], schema: pa.Schema, keep, results_dir) -> pa.Table:
    """One dataset scan over ``served``: ``schema``'s columns, rows passing ``keep``."""
    if not served:
        return schema.empty_table()
    full = schema
    for name in ("selected", "layer"):  # filter columns, read even where not returned
        if name not in full.names:
            full = full.append(SCHEMA.field(name))
    # An explicit schema: every part is cast to it, and absent columns read as nulls.
    dataset = ds.dataset([str(i.path) for i in served], format="parquet", schema=full)
    try:
        return dataset.to_table(columns=schema.names, filter=keep)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        raise DataError(
            f"cannot read the results in {results_dir} ({type(err).__name__}: {err}); "
            "find the bad part with `layerprobe results show --results DIR`"
        ) from err


def _bad_values(table: pa.Table) -> dict[str, tuple[int, int]]:
    """Per accuracy column with bad values: (NaN or null count, infinite count)."""
    out = {}
    for column, null_ok in ACCURACIES.items():
        if column not in table.column_names:
            continue
        values = table[column]
        finite = pc.fill_null(pc.is_finite(values), null_ok)
        if pc.all(finite).as_py() is not False:
            continue
        inf = pc.sum(pc.fill_null(pc.is_inf(values), False)).as_py() or 0
        out[column] = (len(values) - (pc.sum(finite).as_py() or 0) - inf, inf)
    return out


def _has_non_finite(table: pa.Table) -> bool:
    return bool(_bad_values(table))


def _non_finite_parts(served, schema, keep, results_dir) -> list[BadPart]:
    """The parts holding non-finite accuracies in the rows read (the error path: one scan per
    part, of the accuracy columns only)."""
    columns = pa.schema([schema.field(c) for c in ACCURACIES if c in schema.names])
    bad = []
    for info in served:
        found = _bad_values(_scan([info], columns, keep, results_dir))
        if found:
            what = ", ".join(
                f"{column} NaN/missing in {nan} row(s) and ±inf in {inf}"
                for column, (nan, inf) in found.items()
            )
            bad.append(
                BadPart(
                    info.path,
                    f"holds non-finite accuracies ({what})",
                    "layerprobe never writes them: delete it and probe that unit again",
                )
            )
    return bad


def _pandas(table: pa.Table) -> pd.DataFrame:
    """``table`` as a DataFrame, freeing each Arrow column as it is converted, so a large read
    does not hold both copies at once. A column is freed only when no other table holds it:
    the caller keeps no earlier table that shares ``table``'s columns (numeric columns without
    nulls are shared with the frame, not copied)."""
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _categorical(table: pa.Table) -> pa.Table:
    """Text columns as dictionaries: pandas gets categoricals instead of one object per row.
    Their categories are the values present, in order of first appearance."""
    for name in TEXT:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, _encoded(table[name]))
    return table


def _encoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` as one dictionary array of the values present, in order of first appearance
    (what ``dictionary_encode`` of its text gives).

    A column read as dictionaries (one per row group or part) gets one shared dictionary and
    its indices renumbered in that order — a few small integer arrays, where decoding to text
    and encoding again would build every row's string (a quarter GiB at 10 M rows).
    """
    if not pa.types.is_dictionary(column.type):
        return column.dictionary_encode()
    if column.null_count == 0:
        unified = pa.table({"c": column}).unify_dictionaries()["c"].combine_chunks()
        if len(unified.dictionary) == len(pc.unique(unified.dictionary)):
            indices = unified.indices.to_numpy()
            used = indices[first_rows(indices)]  # dictionary entries in order of first use
            # The narrowest index type (pandas' codes are int8 below 128 values): the indices
            # then become the categorical's codes as they are, not one more copy.
            kind = np.int8 if len(used) < 2**7 else np.int16 if len(used) < 2**15 else np.int32
            renumber = np.zeros(len(unified.dictionary), kind)
            renumber[used] = np.arange(len(used), dtype=kind)
            array = pa.DictionaryArray.from_arrays(
                pa.array(renumber[indices]), unified.dictionary.take(pa.array(used))
            )
            return pa.chunked_array([array])
    return column.cast(column.type.value_type).dictionary_encode()


def _newest(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Keep the newest row of each key (rows of tied parts of one generation)."""
    key = [c for c in key if c in frame.columns]
    if len(frame) and _any_duplicate(frame, key):
        frame = frame.sort_values("created_at", kind="stable")
        frame = frame.drop_duplicates(key, keep="last")
    return frame.reset_index(drop=True)


def _any_duplicate(frame: pd.DataFrame, key: list[str]) -> bool:
    """Whether two rows of ``frame`` share their ``key`` values (missing values equal), as
    ``frame.duplicated(key).any()``.

    The common answer is no, and this is the check every analysis read pays: one count (or one
    sort) of the single int64 array of :func:`key_codes` instead of pandas' hash of every
    column (0.6 GiB at 10 M rows).
    """
    combined, size = key_codes(frame, key)
    if combined is None:  # too many combinations for one int64: pandas' own check
        return bool(frame.duplicated(key).any())
    if size <= 4 * len(frame):  # a count per combination
        return bool((np.bincount(combined, minlength=size) > 1).any())
    combined.sort()
    return bool((combined[1:] == combined[:-1]).any())


def _stderr(message: str) -> None:
    warn_user(message, stacklevel=2)
