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

from layerprobe.runtime.lazy import lazy_names

_LAZY = {
    "AnalysisConfig": "layerprobe.analysis.config",
    "checkpoint_points": "layerprobe.analysis.points",
    "upper_hull": "layerprobe.analysis.hull",
    "FORMS": "layerprobe.analysis.fit",
    "Form": "layerprobe.analysis.fit",
    "fit_curve": "layerprobe.analysis.fit",
    "fit_group": "layerprobe.analysis.fit",
    "fit_points": "layerprobe.analysis.fit",
    "fit_saturation": "layerprobe.analysis.fit",
    "fit_store": "layerprobe.analysis.fit",
    "predict": "layerprobe.analysis.fit",
    "write_fits": "layerprobe.analysis.fit",
    "layer_curves": "layerprobe.analysis.layersat",
    "layer_saturation": "layerprobe.analysis.layersat",
    "task_layer_summary": "layerprobe.analysis.layersat",
    "depth_intervals": "layerprobe.analysis.layersat",
    "chance_levels": "layerprobe.analysis.layersat",
    "saturation_correlation": "layerprobe.analysis.layersat",
    "knob_effects": "layerprobe.analysis.knobs",
    "knob_information": "layerprobe.analysis.knobs",
    "knob_pairs": "layerprobe.analysis.pairs",
    "plot_saturation": "layerprobe.analysis.plots",
    "plot_layer_curves": "layerprobe.analysis.plots",
    "plot_eir_vs_shots": "layerprobe.analysis.plots",
    "plot_depth_vs_eir": "layerprobe.analysis.plots",
    "plot_knob_pairs": "layerprobe.analysis.plots",
    "plot_task_correlation": "layerprobe.analysis.plots",
    "task_correlation": "layerprobe.analysis.plots",
    "write_report": "layerprobe.analysis.report",
    "layer_similarity": "layerprobe.analysis.similarity",
    "cka_maps": "layerprobe.analysis.similarity",
    "linear_cka": "layerprobe.analysis.similarity",
}

__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [*_LAZY]
