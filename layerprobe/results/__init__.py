"""results: reading the results store (Parquet), summarising and analysing it.

``read(DIR, ...)`` is the store's one reader (every command and function reading results goes
through it: parts validated alike, one generation per result, finite accuracies; see its
docstring). ``load(DIR)`` returns every probe result below ``DIR`` as a pandas DataFrame, one row
per (model, task, layer, shots, seed, λ); ``layer_summary`` reduces it to the layer-wise accuracy
at the λ chosen on validation (mean ± std over seeds).

The analysis (imported on first use, so `layerprobe results show` stays quick to start):
``read_selected`` (only the selected-λ rows, with column projection and predicate pushdown),
``fit_saturation`` (the paper's Eq. 1 on the upper hull), ``layer_saturation`` and
``saturation_correlation`` (layer-wise saturation against e_IR), ``knob_effects`` and
``knob_information`` (pre-training knobs), ``knob_pairs`` (head-knob effects from matched
pairs), ``read_table`` (a published .csv/.parquet table as store rows), the ``plot_*`` figures and ``write_report``; ``layer_similarity``, ``cka_maps`` and
``linear_cka`` (layer similarity, debiased linear CKA, from the feature cache).
"""

from importlib import import_module

from layerprobe.results.show import filter_table, format_summary, layer_summary, selected
from layerprobe.results.store import load, part_files, read

_LAZY = {
    "read_selected": "read",
    "checkpoint_points": "points",
    "upper_hull": "hull",
    "FORMS": "fit",
    "Form": "fit",
    "fit_curve": "fit",
    "fit_group": "fit",
    "fit_points": "fit",
    "fit_saturation": "fit",
    "predict": "fit",
    "write_fits": "fit",
    "layer_curves": "layersat",
    "layer_saturation": "layersat",
    "task_layer_summary": "layersat",
    "depth_intervals": "layersat",
    "chance_levels": "layersat",
    "saturation_correlation": "layersat",
    "knob_effects": "knobs",
    "knob_information": "knobs",
    "knob_pairs": "pairs",
    "read_table": "external",
    "plot_saturation": "plots",
    "plot_layer_curves": "plots",
    "plot_eir_vs_shots": "plots",
    "plot_depth_vs_eir": "plots",
    "plot_knobs": "plots",
    "plot_task_correlation": "plots",
    "task_correlation": "plots",
    "write_report": "report",
    "layer_similarity": "similarity",
    "cka_maps": "similarity",
    "linear_cka": "similarity",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"layerprobe.results.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'layerprobe.results' has no attribute {name!r}")


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
