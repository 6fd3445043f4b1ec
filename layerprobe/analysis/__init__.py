"""analysis: what the results store says about saturation, layers, knobs and similarity.

Everything here reads the store through :mod:`layerprobe.results` (the one reader) and, for
layer similarity, the feature cache through :mod:`layerprobe.extract`. Imported on first use, so
commands that only read the store stay quick to start:

``AnalysisConfig`` (the analysis options), ``checkpoint_points`` (one US/DS point per
checkpoint), ``upper_hull``, ``fit_saturation`` (the paper's Eq. 1 on the rising upper hull, with
statuses and profile-likelihood intervals) and ``fit_store`` (read a store, then fit it),
``layer_saturation`` and ``saturation_correlation`` (layer-wise saturation against e_IR),
``knob_effects`` / ``knob_information`` / ``knob_pairs`` (pre-training knobs), the ``plot_*``
figures and ``write_report``; ``layer_similarity``, ``cka_maps`` and ``linear_cka`` (debiased
linear CKA from the feature cache).
"""

from importlib import import_module

_LAZY = {
    "AnalysisConfig": "config",
    "checkpoint_points": "points",
    "upper_hull": "hull",
    "FORMS": "fit",
    "Form": "fit",
    "fit_curve": "fit",
    "fit_group": "fit",
    "fit_points": "fit",
    "fit_saturation": "fit",
    "fit_store": "fit",
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
        return getattr(import_module(f"layerprobe.analysis.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'layerprobe.analysis' has no attribute {name!r}")


__all__ = [*_LAZY]
