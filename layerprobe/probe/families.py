"""The logistic and k-NN probe families: backend-style functions and the Python API.

Backend-style functions have the ridge backends' signature,
``fn(probes: ProbeSet, grid, device, precision) -> (layers, P, G, len(grid))`` int64 correct
counts, so the probe runner can call them in place of the ridge backend (``grid`` is the λ
values for logistic, the k values for k-NN). :func:`logistic_sweep` returns the convergence
report as well (gradient norms, converged flags), which results rows should carry.

Python API (accuracies on arrays, as :func:`layerprobe.probe.ridge_accuracy`)::

    from layerprobe.probe import knn_accuracy, logistic_accuracy
    acc = logistic_accuracy(x_train, y_train, x_test, y_test, l2s=[1.0, 64.0])  # (L,)
    acc = knn_accuracy(x_train, y_train, x_test, y_test, ks=(10, 20))  # (K,)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from layerprobe.errors import ConfigError
from layerprobe.probe.api import array_probes, group_accuracy, one_probe, one_problem, with_bias
from layerprobe.probe.backends import (
    Backend,
    _check_precision,
    cuml_backend,
    sklearn_backend,
    torch_backend,
)
from layerprobe.probe.problems import (
    DEFAULT_KS,
    MAX_ITER,
    TEMPERATURE,
    TOL,
    ProbeSet,
    check_ks,
    check_l2s,
    check_votes,
)
from layerprobe.registry import Registry
from layerprobe.runtime.devices import resolve_device
from layerprobe.runtime.warn import LayerprobeWarning

if TYPE_CHECKING:  # the families below import torch when they run, not here
    from layerprobe.probe.logistic_sweep import LogisticResult

# λ of the logistic probe (summed cross-entropy + λ/2 ‖W‖², i.e. scikit-learn's C = 1/λ):
# 1, 4, …, 2^20 (11 values). Smaller λ fit the training rows ever more closely and need
# many more steps; give them explicitly when wanted.
DEFAULT_LOGISTIC_L2S: tuple[float, ...] = tuple(float(4.0**k) for k in range(0, 11))


class NotConvergedWarning(LayerprobeWarning):
    """Some logistic probes stopped at the iteration cap above the gradient tolerance."""


def logistic_sweep(
    probes: ProbeSet,
    l2s: Sequence[float],
    *,
    device: str = "cpu",
    precision: str = "float64",
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> LogisticResult:
    """Fit every (layer, probe, λ) and count correct predictions, with the convergence report.

    Parameters
    ----------
    probes : the probes (train pool per layer, subsets, evaluation rows and groups).
    l2s : λ values (sorted ascending in the output).
    device : ``cpu``, ``cuda`` or ``auto``; ``cuda`` without a GPU is an EnvironmentProblem.
    precision : dtype of the large products with the train features (``float32`` is about
        1.5× faster and reaches the same tolerance down to ~1e-6); iterates, logits and
        sums are float64 either way.
    tol : converged when ‖∇(f / n)‖₂ <= tol (f: summed cross-entropy + λ/2 ‖W‖²).
    max_iter : L-BFGS step cap.

    Returns
    -------
    :class:`LogisticResult`: counts (layers, P, G, L), grad_norm / converged / iterations
    (layers, P, L).
    """
    import torch

    from layerprobe.probe.logistic_sweep import sweep

    _check_precision(precision)
    if not tol > 0 or max_iter < 0:
        raise ConfigError(f"need tol > 0 and max_iter >= 0, got tol={tol}, max_iter={max_iter}")
    dtype = torch.float64 if precision == "float64" else torch.float32
    return sweep(
        probes,
        check_l2s(l2s),
        device=resolve_device(device),
        dtype=dtype,
        tol=tol,
        max_iter=max_iter,
    )


def logistic_backend(
    probes: ProbeSet, l2s: np.ndarray, *, device: str, precision: str
) -> np.ndarray:
    """(layers, P, G, L) correct counts of logistic probes (the ridge backends' signature).

    Problems that did not converge are reported by a :class:`NotConvergedWarning`; use
    :func:`logistic_sweep` to get the per-problem flags.
    """
    result = logistic_sweep(probes, l2s, device=device, precision=precision)
    _warn_unconverged(result)
    return result.counts


def knn_sweep(
    probes: ProbeSet,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    device: str = "cpu",
    precision: str = "float32",
    votes: Sequence[str] = ("majority", "weighted"),
    temperature: float = TEMPERATURE,
) -> dict[str, np.ndarray]:
    """Correct counts of cosine k-NN probes for every vote from one top-k.

    ``precision`` is the dtype of the similarity products; float32 settles near ties at the
    k boundaries in float64, so both give the same neighbour sets.

    Returns
    -------
    {vote: (layers, P, G, K) int64}, k ascending.
    """
    import torch

    from layerprobe.probe.knn_sweep import sweep

    _check_precision(precision)
    dtype = torch.float64 if precision == "float64" else torch.float32
    return sweep(
        probes,
        ks,
        device=resolve_device(device),
        dtype=dtype,
        votes=check_votes(votes),
        temperature=temperature,
    )


def knn_backend(probes: ProbeSet, ks: np.ndarray, *, device: str, precision: str) -> np.ndarray:
    """(layers, P, G, K) correct counts, majority vote (the ridge backends' signature)."""
    return knn_sweep(probes, ks, device=device, precision=precision, votes=("majority",))[
        "majority"
    ]


def knn_weighted_backend(
    probes: ProbeSet, ks: np.ndarray, *, device: str, precision: str
) -> np.ndarray:
    """(layers, P, G, K) correct counts, dinov2's weighted vote (T = 0.07)."""
    return knn_sweep(probes, ks, device=device, precision=precision, votes=("weighted",))[
        "weighted"
    ]


@dataclass(frozen=True)
class Family:
    """A probe family and the backends that compute it.

    Attributes
    ----------
    name : as ``--probe`` spells it (``ridge``, ``logistic``, ``knn``, ``knn_weighted``).
    backends : backend name -> backend-style function ``fn(probes, grid, device, precision)
        -> (layers, P, G, len(grid))`` int64 correct counts (``grid``: λ values, or k values
        for k-NN); ``--backend`` picks one.
    solve : optional ``solve(probes, grid, device, precision) -> (counts, converged)`` with the
        (layers, P, len(grid)) convergence flags; None = the backend's counts, no flags.
    """

    name: str
    backends: Registry[Backend]
    solve: Callable[..., tuple[np.ndarray, np.ndarray | None]] | None = None


# Every probe family, by name: the one registry of families and of their backends.
FAMILIES: Registry[Family] = Registry("probe family")


def _register(name: str, backends: dict[str, Backend], solve=None) -> Family:
    table: Registry[Backend] = Registry("probe backend")
    for backend, fn in backends.items():
        table.register(backend, fn)
    return FAMILIES.register(name, Family(name, table, solve))


def _logistic_solve(probes: ProbeSet, l2s: np.ndarray, device: str, precision: str):
    result = logistic_sweep(probes, l2s, device=device, precision=precision)
    return result.counts, result.converged


_register("ridge", {"torch": torch_backend, "cuml": cuml_backend, "sklearn": sklearn_backend})
_register("logistic", {"torch": logistic_backend}, _logistic_solve)
_register("knn", {"torch": knn_backend})
_register("knn_weighted", {"torch": knn_weighted_backend})


def get_family(name: str) -> Backend:
    """The default (torch) backend-style function of family ``name``;
    :class:`UnknownNameError` otherwise."""
    return FAMILIES.get(name).backends.get("torch")


def _warn_unconverged(result: LogisticResult) -> None:
    bad = int((~result.converged).sum())
    if bad:
        warnings.warn(
            f"{bad} of {result.converged.size} logistic probes did not reach ‖grad‖ <= "
            f"{result.tol:g} (largest {result.grad_norm.max():.3g}); raise max_iter",
            NotConvergedWarning,
            stacklevel=3,
        )


def logistic_accuracy_batch(
    x_train: Sequence[np.ndarray] | np.ndarray,
    y_train: np.ndarray,
    x_test: Sequence[np.ndarray] | np.ndarray,
    y_test: np.ndarray,
    *,
    l2s: Sequence[float] = DEFAULT_LOGISTIC_L2S,
    subsets: Sequence[np.ndarray] | None = None,
    num_classes: int | None = None,
    device: str = "cpu",
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    return_result: bool = False,
    precision: str = "float64",
):
    """Test accuracy of many logistic probes, batched (one per layer × train subset).

    Parameters
    ----------
    x_train : per layer (N, D_layer) train features, or one (N, D) array.
    y_train : (N,) int labels in [0, C).
    x_test : per layer (M, D_layer) test features.
    y_test : (M,) int labels.
    l2s : λ values (ascending in the output); the penalty is λ/2 ‖W‖² on the summed
        cross-entropy, i.e. scikit-learn's ``C = 1/λ``.
    subsets : P index arrays into the train rows (default: one probe on all rows).
    num_classes : C (default: the largest label + 1).
    device : ``cpu``, ``cuda`` or ``auto``.
    tol, max_iter : convergence tolerance on ‖∇(f / n)‖₂ and the step cap.
    return_result : also return the :class:`LogisticResult` (gradient norms, flags).
    precision : dtype of the large products (``float32``: faster; tol >= ~1e-6).

    Returns
    -------
    (layers, P, L) accuracies in [0, 1] (and the result when ``return_result``).
    Problems that did not converge raise a :class:`NotConvergedWarning`.
    """
    probes = array_probes(
        x_train, y_train, x_test, y_test, subsets=subsets, num_classes=num_classes
    )
    result = logistic_sweep(
        probes, l2s, device=device, precision=precision, tol=tol, max_iter=max_iter
    )
    _warn_unconverged(result)
    acc = group_accuracy(result.counts, probes)
    return (acc, result) if return_result else acc


def logistic_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    l2s: Sequence[float] = DEFAULT_LOGISTIC_L2S,
    num_classes: int | None = None,
    device: str = "cpu",
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> np.ndarray:
    """Test accuracy (L,) of one multinomial logistic probe per λ (ascending); x_train (n, D),
    x_test (m, D). Other parameters as :func:`logistic_accuracy_batch`."""
    return one_probe(
        x_train,
        y_train,
        x_test,
        y_test,
        batch=logistic_accuracy_batch,
        l2s=l2s,
        num_classes=num_classes,
        device=device,
        tol=tol,
        max_iter=max_iter,
    )


def logistic_scores(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    l2s: Sequence[float] = DEFAULT_LOGISTIC_L2S,
    num_classes: int | None = None,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> tuple[np.ndarray, LogisticResult]:
    """Logits ``[(x - mu) / sd, 100] @ W(λ)`` of one logistic probe per λ (CPU, float64).

    Returns
    -------
    (L, m, C) logits (softmax over the last axis gives the probabilities), and the fit's
    convergence report as a :class:`LogisticResult` with empty counts.
    """
    import torch

    from layerprobe.probe.logistic import fit, rotate
    from layerprobe.probe.logistic_sweep import LogisticResult
    from layerprobe.runtime.pools import single_threaded_pool

    x, y, c, l2 = one_problem(x_train, y_train, l2s=l2s, num_classes=num_classes)
    with single_threaded_pool(1, name="layerprobe-logistic") as pool:
        basis = rotate(x, y, c)
        found = pool.submit(
            fit,
            basis,
            y,
            l2,
            num_classes=c,
            product_dtype=torch.float64,
            tol=tol,
            max_iter=max_iter,
        ).result()
    z = with_bias(x_test, torch.float64)
    logits = torch.einsum("mr,clr->lmc", z @ basis.lift[0], found.weights[0])
    report = LogisticResult(
        np.zeros((1, 1, 0, len(l2)), np.int64),
        found.grad_norm.numpy()[None],
        found.converged.numpy()[None],
        found.iterations.numpy()[None],
        tol,
    )
    return logits.numpy(), report


def knn_accuracy_batch(
    x_train: Sequence[np.ndarray] | np.ndarray,
    y_train: np.ndarray,
    x_test: Sequence[np.ndarray] | np.ndarray,
    y_test: np.ndarray,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    vote: str = "majority",
    subsets: Sequence[np.ndarray] | None = None,
    num_classes: int | None = None,
    device: str = "cpu",
    precision: str = "float32",
    temperature: float = TEMPERATURE,
) -> np.ndarray:
    """Test accuracy of many cosine k-NN probes (one per layer × train subset), every k.

    Parameters
    ----------
    x_train, y_train, x_test, y_test, subsets, num_classes, device : as
        :func:`logistic_accuracy_batch`.
    ks : k values (ascending in the output); each at most the smallest train set.
    vote : ``majority`` (ties: smallest class) or ``weighted`` (dinov2: exp(sim / T)).
    precision : dtype of the similarity products (neighbour sets are float64's either way).
    temperature : T of the weighted vote.

    Returns
    -------
    (layers, P, K) accuracies in [0, 1].
    """
    probes = array_probes(
        x_train, y_train, x_test, y_test, subsets=subsets, num_classes=num_classes
    )
    check_ks(ks, [len(s) for s in probes.subsets])
    counts = knn_sweep(
        probes, ks, device=device, precision=precision, votes=(vote,), temperature=temperature
    )[vote]
    return group_accuracy(counts, probes)


def knn_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    vote: str = "majority",
    num_classes: int | None = None,
    device: str = "cpu",
    precision: str = "float32",
    temperature: float = TEMPERATURE,
) -> np.ndarray:
    """Test accuracy (K,) of one cosine k-NN probe for each k (ascending); x_train (n, D),
    x_test (m, D). Other parameters as :func:`knn_accuracy_batch`."""
    return one_probe(
        x_train,
        y_train,
        x_test,
        y_test,
        batch=knn_accuracy_batch,
        ks=ks,
        vote=vote,
        num_classes=num_classes,
        device=device,
        precision=precision,
        temperature=temperature,
    )


def check_family(name: str) -> str:
    """``name`` if it is a probe family, else :class:`UnknownNameError` listing them."""
    FAMILIES.get(name)
    return name


def family_solver(family: str, backend: str, *, device: str, precision: str):
    """``solve(probes, grid) -> (counts (layers, P, G, L), converged (layers, P, L) or None)``
    for a family; ``grid`` is the λ values (ridge, logistic) or the k values (k-NN)."""
    found = FAMILIES.get(family)
    if backend not in found.backends and family != "ridge":  # ridge names an unknown backend
        raise ConfigError(
            f"--backend {backend} applies to the ridge probe; {family} runs on "
            f"{', '.join(found.backends)}"
        )
    fn = found.backends.get(backend)
    if found.solve is not None:
        return lambda probes, grid: found.solve(probes, grid, device, precision)
    return lambda probes, grid: (fn(probes, grid, device=device, precision=precision), None)
