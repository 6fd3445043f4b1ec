"""A part-file layout that lets readers skip the unselected λ rows without decoding them.

Parquet keeps min/max statistics per row group, and pyarrow skips a row group whose statistics
cannot match the filter. A part written with its ``selected`` rows first, in a row group of
their own, therefore lets ``read_selected`` (filter ``selected == True``) read one row in 30 of
the default λ grid instead of decoding every row and throwing 29 in 30 away. At the paper's
scale that is the difference between minutes and seconds (benchmarks/analysis_scale.py).

``write_part_table`` is what a part writer can call; the order of the rows is the only change,
so any reader sees the same table.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from layerprobe.runtime.atomic import atomic_path


def write_part_table(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` atomically, selected rows first in their own row group."""
    path = Path(path)
    chosen = pc.fill_null(table["selected"], False)
    groups = [table.filter(chosen), table.filter(pc.invert(chosen))]
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, table.schema) as writer:
        for group in groups:
            if len(group):
                writer.write_table(group, row_group_size=len(group))
    return path
