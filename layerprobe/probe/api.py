"""Plain Python entry points: accuracies (and scores) of closed-form probes on arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from layerprobe.errors import DataError
from layerprobe.probe.backends import get_backend
from layerprobe.probe.problems import DEFAULT_L2S, ProbeSet, check_finite, check_l2s

if TYPE_CHECKING:  # the functions returning tensors import torch when called
    import torch


def _as_layers(x, what: str) -> list[np.ndarray]:
    if getattr(x, "ndim", None) == 2:  # one array or tensor: one layer
        return [np.asarray(x)]
    layers = [np.asarray(a) for a in x]
    if not layers:
        raise DataError(f"{what}: no features given")
    return layers


def _num_classes(num_classes: int | None, *labels: np.ndarray) -> int:
    found = int(max(int(y.max()) for y in labels if len(y))) + 1
    if num_classes is None:
        return found
    if num_classes < found:
        raise DataError(f"num_classes={num_classes} but labels go up to {found - 1}")
    return int(num_classes)


def array_probes(x_train, y_train, x_test, y_test, *, subsets=None, num_classes=None) -> ProbeSet:
    """The :class:`ProbeSet` of the array API: one probe per (layer, train subset), every probe
    scored on all test rows (one evaluation group); features checked finite."""
    train, tests = _as_layers(x_train, "x_train"), _as_layers(x_test, "x_test")
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if subsets is None:
        subsets = [np.arange(len(y_train))]
    subsets = [np.asarray(s, dtype=np.int64) for s in subsets]
    for i, (tr, te) in enumerate(zip(train, tests, strict=False)):
        check_finite(tr, str(i), "x_train")
        check_finite(te, str(i), "x_test")
    return ProbeSet(
        train=train,
        y_train=y_train,
        subsets=subsets,
        evals=tests,
        y_eval=y_test,
        eval_group=np.zeros(len(y_test), np.int64),
        num_groups=1,
        num_classes=_num_classes(num_classes, y_train, y_test),
    ).check()


def group_accuracy(counts: np.ndarray, probes: ProbeSet) -> np.ndarray:
    """(layers, P, K) accuracies in [0, 1] from the (layers, P, 1, K) correct counts of the
    array API's probes (one evaluation group: all test rows)."""
    return counts[:, :, 0, :] / max(len(probes.y_eval), 1)


def one_probe(x_train, y_train, x_test, y_test, *, batch, **options) -> np.ndarray:
    """The accuracies of one probe (one layer, all train rows) through the batched function
    ``batch`` (``ridge_accuracy_batch``, …): its (layers, P, K) output at layer 0, probe 0."""
    return batch([x_train], y_train, [x_test], y_test, **options)[0, 0]


def one_problem(x_train, y_train, *, l2s, num_classes):
    """One probe's train problem as tensors for the score functions: features (1, n, D),
    labels (1, n) int64, the number of classes C and the λ values (L,) (checked)."""
    import torch

    y_train = np.asarray(y_train)
    c = _num_classes(num_classes, y_train)
    l2 = torch.as_tensor(check_l2s(l2s))
    x = torch.as_tensor(np.asarray(x_train))[None]
    y = torch.as_tensor(y_train, dtype=torch.int64)[None]
    return x, y, c, l2


def with_bias(x_test, dtype: torch.dtype) -> torch.Tensor:
    """(m, D + 1) test features of ``dtype`` with the constant column the lift maps to the
    bias."""
    import torch

    return torch.nn.functional.pad(torch.as_tensor(np.asarray(x_test)).to(dtype), (0, 1), value=1.0)


def ridge_accuracy_batch(
    x_train: Sequence[np.ndarray] | np.ndarray,
    y_train: np.ndarray,
    x_test: Sequence[np.ndarray] | np.ndarray,
    y_test: np.ndarray,
    *,
    l2s: Sequence[float] = DEFAULT_L2S,
    subsets: Sequence[np.ndarray] | None = None,
    num_classes: int | None = None,
    backend: str = "torch",
    device: str = "cpu",
    precision: str = "float64",
) -> np.ndarray:
    """Test accuracy of many closed-form probes, batched.

    One probe per (layer, train subset): the subset's rows of that layer's train features
    are the probe's train set; every probe is scored on all of ``x_test``'s rows.

    Parameters
    ----------
    x_train : per layer (N, D_layer) train features, or one (N, D) array (one layer).
    y_train : (N,) int labels in [0, C).
    x_test : per layer (M, D_layer) test features (same layers as ``x_train``).
    y_test : (M,) int labels.
    l2s : λ values (sorted ascending in the output).
    subsets : P index arrays into the train rows (default: one probe on all rows).
    num_classes : C (default: the largest label + 1).
    backend : ``torch``, ``cuml`` or ``sklearn``.
    device : ``cpu``, ``cuda`` or ``auto`` (torch backend).
    precision : ``float64`` or ``float32`` for the Gram matrices and their decomposition.

    Returns
    -------
    (layers, P, L) accuracies in [0, 1].
    """
    probes = array_probes(
        x_train, y_train, x_test, y_test, subsets=subsets, num_classes=num_classes
    )
    l2 = check_l2s(l2s)
    counts = get_backend(backend)(probes, l2, device=device, precision=precision)
    return group_accuracy(counts, probes)


def ridge_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    l2s: Sequence[float] = DEFAULT_L2S,
    num_classes: int | None = None,
    backend: str = "torch",
    device: str = "cpu",
    precision: str = "float64",
) -> np.ndarray:
    """Test accuracy of one closed-form probe for each λ.

    Parameters
    ----------
    x_train : (n, D) train features; y_train : (n,) int labels.
    x_test : (m, D) test features; y_test : (m,) int labels.
    l2s : λ values. Other parameters as :func:`ridge_accuracy_batch`.

    Returns
    -------
    (L,) accuracies in [0, 1], λ in ascending order.
    """
    return one_probe(
        x_train,
        y_train,
        x_test,
        y_test,
        batch=ridge_accuracy_batch,
        l2s=l2s,
        num_classes=num_classes,
        backend=backend,
        device=device,
        precision=precision,
    )


def ridge_scores(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    l2s: Sequence[float] = DEFAULT_L2S,
    num_classes: int | None = None,
    precision: str = "float64",
    score_precision: str = "float32",
) -> np.ndarray:
    """Decision scores ``[(x - mu) / sd, 100] @ W(λ)`` of one probe for each λ (torch, CPU).

    ``score_precision`` is the dtype of the products with the test features (float32 in the
    sweep; float64 gives the exact least-squares solution's scores).

    Returns
    -------
    (L, m, C) scores; the prediction is their argmax over the last axis.
    """
    import torch

    from layerprobe.probe.solver import decompose, lambda_weights

    x, y, c, l2 = one_problem(x_train, y_train, l2s=l2s, num_classes=num_classes)
    score_dtype = getattr(torch, score_precision)
    dec = decompose(x, y, c, dtype=getattr(torch, precision))
    weights = lambda_weights(dec, l2, score_dtype)[0]  # (r, C * L), class-major
    z = with_bias(x_test, score_dtype)
    scores = z @ dec.lift[0].to(score_dtype) @ weights  # (m, C * L)
    return scores.view(len(z), c, len(l2)).permute(2, 0, 1).numpy()
