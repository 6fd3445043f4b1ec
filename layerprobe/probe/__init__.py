"""probe: closed-form linear probes on cached features, batched over layers, seeds and λ.

Python API::

    from layerprobe.probe import ridge_accuracy
    acc = ridge_accuracy(x_train, y_train, x_test, y_test, l2s=[1.0, 1024.0])  # (L,)

Other probe families on the same arrays: ``logistic_accuracy`` (multinomial logistic
regression, L2 penalty λ, sklearn's C = 1/λ) and ``knn_accuracy`` (cosine k-NN, majority or
dinov2's weighted vote), with ``*_batch`` variants and backend-style ``logistic_backend`` /
``knn_backend`` for the runner.

``ridge_accuracy_batch`` runs many probes (layers × train subsets) in one call;
``probe_cache(cache_dir, results_dir, ...)`` probes a whole feature cache into the results
store, as ``layerprobe probe`` does.
"""

from layerprobe.runtime.lazy import lazy_names

# Names load on first use, so importing a light module of the room (its config) does not
# import torch.
_LAZY = {
    "ridge_accuracy": "layerprobe.probe.api",
    "ridge_accuracy_batch": "layerprobe.probe.api",
    "ridge_scores": "layerprobe.probe.api",
    "get_backend": "layerprobe.probe.backends",
    "ProbeConfig": "layerprobe.probe.config",
    "DEFAULT_LOGISTIC_L2S": "layerprobe.probe.families",
    "FAMILIES": "layerprobe.probe.families",
    "Family": "layerprobe.probe.families",
    "knn_accuracy": "layerprobe.probe.families",
    "knn_accuracy_batch": "layerprobe.probe.families",
    "knn_backend": "layerprobe.probe.families",
    "knn_sweep": "layerprobe.probe.families",
    "knn_weighted_backend": "layerprobe.probe.families",
    "logistic_accuracy": "layerprobe.probe.families",
    "logistic_accuracy_batch": "layerprobe.probe.families",
    "logistic_backend": "layerprobe.probe.families",
    "logistic_scores": "layerprobe.probe.families",
    "logistic_sweep": "layerprobe.probe.families",
    "DEFAULT_KS": "layerprobe.probe.problems",
    "plan_probes": "layerprobe.probe.plan",
    "DEFAULT_L2S": "layerprobe.probe.problems",
    "ProbeSet": "layerprobe.probe.problems",
    "select_l2": "layerprobe.probe.problems",
    "find_units": "layerprobe.probe.run",
    "probe_cache": "layerprobe.probe.run",
    "probe_unit": "layerprobe.probe.run",
    "run_probes": "layerprobe.probe.run",
}

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_L2S",
    "DEFAULT_LOGISTIC_L2S",
    "FAMILIES",
    "Family",
    "ProbeConfig",
    "ProbeSet",
    "find_units",
    "get_backend",
    "knn_accuracy",
    "knn_accuracy_batch",
    "knn_backend",
    "knn_sweep",
    "knn_weighted_backend",
    "logistic_accuracy",
    "logistic_accuracy_batch",
    "logistic_backend",
    "logistic_scores",
    "logistic_sweep",
    "plan_probes",
    "probe_cache",
    "probe_unit",
    "ridge_accuracy",
    "ridge_accuracy_batch",
    "ridge_scores",
    "run_probes",
    "select_l2",
]
