"""results: reading the results store (Parquet) and summarising it.

``load(DIR)`` returns every probe result below ``DIR`` as a pandas DataFrame, one row per
(model, task, layer, shots, seed, λ); ``layer_summary`` reduces it to the layer-wise accuracy
at the λ chosen on validation (mean ± std over seeds).
"""

from layerprobe.results.show import filter_table, format_summary, layer_summary, selected
from layerprobe.results.store import load, part_files

__all__ = ["filter_table", "format_summary", "layer_summary", "load", "part_files", "selected"]
