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

from layerprobe.probe.api import ridge_accuracy, ridge_accuracy_batch, ridge_scores
from layerprobe.probe.backends import BACKENDS, get_backend
from layerprobe.probe.config import ProbeConfig
from layerprobe.probe.families import (
    DEFAULT_LOGISTIC_L2S,
    knn_accuracy,
    knn_accuracy_batch,
    knn_backend,
    knn_sweep,
    knn_weighted_backend,
    logistic_accuracy,
    logistic_accuracy_batch,
    logistic_backend,
    logistic_scores,
    logistic_sweep,
)
from layerprobe.probe.knn import DEFAULT_KS
from layerprobe.probe.plan import plan_probes
from layerprobe.probe.problems import DEFAULT_L2S, ProbeSet, select_l2
from layerprobe.probe.run import find_units, probe_cache, probe_unit, run_probes

__all__ = [
    "BACKENDS",
    "DEFAULT_KS",
    "DEFAULT_L2S",
    "DEFAULT_LOGISTIC_L2S",
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
