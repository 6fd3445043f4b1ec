"""probe: closed-form linear probes on cached features, batched over layers, seeds and λ.

Python API::

    from layerprobe.probe import ridge_accuracy
    acc = ridge_accuracy(x_train, y_train, x_test, y_test, l2s=[1.0, 1024.0])  # (L,)

``ridge_accuracy_batch`` runs many probes (layers × train subsets) in one call;
``probe_cache(cache_dir, results_dir, ...)`` probes a whole feature cache into the results
store, as ``layerprobe probe`` does.
"""

from layerprobe.probe.api import ridge_accuracy, ridge_accuracy_batch, ridge_scores
from layerprobe.probe.backends import BACKENDS, get_backend
from layerprobe.probe.plan import plan_probes
from layerprobe.probe.problems import DEFAULT_L2S, ProbeSet, select_l2
from layerprobe.probe.run import ProbeConfig, find_units, probe_cache, probe_unit, run_probes

__all__ = [
    "BACKENDS",
    "DEFAULT_L2S",
    "ProbeConfig",
    "ProbeSet",
    "find_units",
    "get_backend",
    "plan_probes",
    "probe_cache",
    "probe_unit",
    "ridge_accuracy",
    "ridge_accuracy_batch",
    "ridge_scores",
    "run_probes",
    "select_l2",
]
