"""Probe backends: the same recipe computed three ways, chosen by name.

Every backend is a function ``(probes: ProbeSet, l2s, device, precision) -> (layers, P, G, L)``
int64 counts of correct predictions.

- ``torch`` (default): batched closed form; on the CPU through numpy, on CUDA through torch
  (fast; the CPU path never imports torch);
- ``cuml``: cuML's ``Ridge`` on a GPU, one fit per probe and λ (the ``gpu`` extra);
- ``sklearn``: scikit-learn's ``Ridge``, one fit per probe and λ (slow; a reference).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from layerprobe.errors import ConfigError, EnvironmentProblem
from layerprobe.probe.config import PRECISIONS
from layerprobe.probe.problems import ProbeSet
from layerprobe.probe.recipe import BIAS, STD_EPS
from layerprobe.runtime.devices import resolve_device_name


class Backend(Protocol):
    """A ridge backend: ``(probes, l2s, *, device, precision) -> counts (layers, P, 2, L)``."""

    def __call__(
        self, probes: ProbeSet, l2s: np.ndarray, *, device: str, precision: str
    ) -> np.ndarray: ...


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


def torch_backend(probes: ProbeSet, l2s: np.ndarray, *, device: str, precision: str) -> np.ndarray:
    """The batched closed form: on the CPU through numpy (no torch import), on CUDA through
    torch; the same counts either way."""
    _check_precision(precision)
    name = resolve_device_name(device)
    if name == "cpu":
        from layerprobe.probe.numpy_sweep import sweep

        return sweep_probes(sweep, probes, l2s, dtype=np.dtype(precision).type)
    import torch

    from layerprobe.probe.torch_backend import sweep

    dtype = getattr(torch, precision)
    return sweep_probes(sweep, probes, l2s, device=torch.device(name), dtype=dtype)


def sweep_probes(sweep, probes: ProbeSet, l2s: np.ndarray, **options) -> np.ndarray:
    """``sweep`` — the numpy path's or the torch path's — on the problems of ``probes``, its
    evaluation rows put in label order here; ``options``: the path's device and dtype.

    Returns
    -------
    (layers, P, G, L) int64 counts of correct predictions.
    """
    from layerprobe.probe.accuracy import EvalRows

    rows = EvalRows.build(probes.y_eval, probes.eval_group, probes.num_groups)
    return sweep(
        probes.train,
        probes.y_train,
        probes.subsets,
        evals=probes.evals,
        rows=rows,
        l2s=l2s,
        num_classes=probes.num_classes,
        **options,
    )


def needs_torch(probe: str, backend: str, device: str) -> bool:
    """Whether probing family ``probe`` with ``backend`` on ``device`` imports torch: all
    but the ridge probe's CPU and non-torch backends."""
    if probe != "ridge":
        return True
    return backend == "torch" and resolve_device_name(device) != "cpu"


def _recipe_arrays(x_train, y_train, x_eval, num_classes, xp, dtype):
    """The recipe's standardised, bias-augmented arrays and ±1 targets, in module ``xp``."""
    x_train = xp.asarray(x_train, dtype=xp.float64)
    mu = x_train.mean(axis=0)
    sd = x_train.std(axis=0) + STD_EPS

    def augment(x):
        x = xp.asarray(x, dtype=xp.float64)
        return xp.concatenate([(x - mu) / sd, xp.full((x.shape[0], 1), BIAS)], axis=1)

    y = 2.0 * xp.eye(num_classes)[xp.asarray(y_train)] - 1.0
    return tuple(a.astype(dtype, copy=False) for a in (augment(x_train), y, augment(x_eval)))


def _fit_each(probes: ProbeSet, l2s: np.ndarray, xp, dtype, predict) -> np.ndarray:
    """(layers, P, G, L) counts from one fit per (layer, probe, λ) on the recipe's arrays;
    ``predict(xa, y, ea, l2)`` returns the (M,) predicted classes of the evaluation rows."""
    out = np.zeros((len(probes.train), len(probes.subsets), probes.num_groups, len(l2s)), np.int64)
    for i, (train, evals) in enumerate(zip(probes.train, probes.evals, strict=True)):
        for p, idx in enumerate(probes.subsets):
            arrays = _recipe_arrays(
                train[idx], probes.y_train[idx], evals, probes.num_classes, xp, dtype
            )
            for j, l2 in enumerate(l2s):
                right = np.asarray(predict(*arrays, float(l2))) == probes.y_eval
                out[i, p, :, j] = np.bincount(probes.eval_group[right], minlength=probes.num_groups)
    return out


def sklearn_backend(
    probes: ProbeSet, l2s: np.ndarray, *, device: str, precision: str
) -> np.ndarray:
    from sklearn.linear_model import Ridge

    _check_precision(precision)
    if device.startswith("cuda"):
        raise ConfigError(
            "the sklearn backend runs on the CPU only; use --device cpu (or --backend torch)"
        )

    def predict(xa, y, ea, l2):
        # Ridge without intercept on the augmented data is exactly (xaᵀxa + λI) W = xaᵀ y.
        model = Ridge(alpha=l2, fit_intercept=False, solver="cholesky").fit(xa, y)
        return np.argmax(model.predict(ea), axis=1)

    return _fit_each(probes, l2s, np, np.float64, predict)


def cuml_backend(probes: ProbeSet, l2s: np.ndarray, *, device: str, precision: str) -> np.ndarray:
    _check_precision(precision)
    cp, ridge_cls = _import_cuml()
    if device == "cpu":
        raise ConfigError("the cuml backend runs on a GPU only; use --device cuda or auto")

    def predict(xa, y, ea, l2):
        return cp.asnumpy(cp.argmax(_cuml_fit_predict(ridge_cls, cp, xa, y, ea, l2), axis=1))

    dtype = cp.float32 if precision == "float32" else cp.float64
    return _fit_each(probes, l2s, cp, dtype, predict)


def _import_cuml():
    try:
        import cupy as cp
        from cuml.linear_model import Ridge
    except ImportError as err:
        raise EnvironmentProblem(
            f"the cuml backend needs RAPIDS cuML ({err}); install layerprobe[gpu] on a CUDA machine, "
            "or use --backend torch"
        ) from err
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as err:  # cupy raises its own CUDARuntimeError without a driver
        raise EnvironmentProblem(
            f"the cuml backend needs a CUDA GPU, none is usable ({err})"
        ) from err
    if count == 0:
        raise EnvironmentProblem(
            "the cuml backend needs a CUDA GPU and none is visible; use --backend torch"
        )
    return cp, Ridge


def _cuml_fit_predict(ridge_cls, cp, xa, y, ea, l2):
    """Scores (M, C) of one λ; one multi-target fit, or one fit per class on older cuML."""
    try:
        model = ridge_cls(alpha=l2, fit_intercept=False, solver="svd").fit(xa, y)
        scores = cp.asarray(model.predict(ea))
        if scores.ndim == 2 and scores.shape[1] == y.shape[1]:
            return scores
    except (ValueError, TypeError, NotImplementedError):
        pass  # cuML releases without multi-target Ridge
    cols = []
    for c in range(y.shape[1]):
        model = ridge_cls(alpha=l2, fit_intercept=False, solver="eig").fit(xa, y[:, c])
        cols.append(cp.asarray(model.predict(ea)).reshape(-1))
    return cp.stack(cols, axis=1)


def check_backend(name: str, device: str, precision: str) -> None:
    """Fail early (before any work) on a backend, device or precision this machine cannot run."""
    get_backend(name)
    _check_precision(precision)
    if name == "torch":
        resolve_device_name(device)
    elif name == "cuml":
        _import_cuml()


def get_backend(name: str) -> Backend:
    """The ridge backend called ``name``; :class:`UnknownNameError` otherwise (the ridge
    :class:`~layerprobe.probe.families.Family` of ``FAMILIES`` holds them)."""
    from layerprobe.probe.families import FAMILIES

    return FAMILIES.get("ridge").backends.get(name)
