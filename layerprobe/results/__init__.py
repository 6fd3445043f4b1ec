"""results: the results store every probe writes through (Parquet parts) and its one reader.

``read(DIR, ...)`` is the store's one reader (every command and function reading results goes
through it: parts validated alike, one generation per result, finite accuracies; see its
docstring). ``load(DIR)`` returns every probe result below ``DIR`` as a pandas DataFrame, one row
per (model, task, layer, shots, seed, λ); ``read_selected`` only the rows at the λ chosen on
validation, with column projection; ``read_table`` a published .csv/.parquet table as store
rows; ``layer_summary`` reduces rows to the layer-wise accuracy at the selected λ (mean ± std
over seeds).

The analysis of the store (fit, layer saturation, knobs, similarity, the report) is the
:mod:`layerprobe.analysis` room.
"""

from layerprobe.results.show import filter_table, format_summary, layer_summary, selected
from layerprobe.results.store import load, part_files, read
from layerprobe.runtime.lazy import lazy_names

_LAZY = {
    "read_selected": "layerprobe.results.read",
    "read_table": "layerprobe.results.external",
}

__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [
    "filter_table",
    "format_summary",
    "layer_summary",
    "load",
    "part_files",
    "read",
    "selected",
    *_LAZY,
]
