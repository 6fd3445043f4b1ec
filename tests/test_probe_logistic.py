"""Logistic probes: equal to scikit-learn's LogisticRegression at C = 1/λ, batching, flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression

from layerprobe.errors import ConfigError, EnvironmentProblem
from layerprobe.probe import (
    ProbeSet,
    logistic_accuracy,
    logistic_accuracy_batch,
    logistic_backend,
    logistic_scores,
    logistic_sweep,
)
from layerprobe.probe.families import NotConvergedWarning
from layerprobe.probe.solver import blas_threads

L2S = [0.25, 1.0, 8.0, 64.0, 1024.0]
PROB_TOL = 1e-4  # |p_ours - p_sklearn| on every test row and class


def blobs(n, dim=10, classes=4, seed=0, shift=1.0):
    """Float32 features with class structure, a non-zero mean and mixed scales."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, dim) + 5.0
    x[:, :classes] += shift * np.eye(classes)[y]
    return x.astype(np.float32), y


def recipe(x, z):
    """The recipe's standardised, bias-augmented arrays (float64)."""
    x, z = x.astype(np.float64), z.astype(np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-5
    return tuple(np.hstack([(a - mu) / sd, np.full((len(a), 1), 100.0)]) for a in (x, z))


def sklearn_probabilities(x, y, z, l2s):
    """sklearn minimises C Σ CE + ½‖W‖²: with C = 1/λ and no intercept of its own on the
    same augmented arrays (our bias column), exactly our objective Σ CE + λ/2 ‖W‖²."""
    xa, za = recipe(x, z)
    with blas_threads(1):  # tiny problems: BLAS threads only wait on each other
        return np.stack(
            [
                LogisticRegression(C=1.0 / l2, fit_intercept=False, tol=1e-10, max_iter=100_000)
                .fit(xa, y)
                .predict_proba(za)
                for l2 in l2s
            ]
        )


@pytest.mark.parametrize("n_train", [200, 8], ids=["primal-n>D", "dual-n<D"])
def test_probabilities_and_accuracies_equal_sklearn(n_train):
    x, y = blobs(n_train, seed=1)
    z, yz = blobs(120, seed=2)
    expected = sklearn_probabilities(x, y, z, L2S)
    logits, report = logistic_scores(x, y, z, l2s=L2S, tol=1e-9)
    assert report.converged.all() and (report.grad_norm <= 1e-9).all()
    np.testing.assert_allclose(softmax(logits, -1), expected, rtol=0, atol=PROB_TOL)
    acc = logistic_accuracy(x, y, z, yz, l2s=L2S, tol=1e-9)
    np.testing.assert_array_equal(acc, (expected.argmax(-1) == yz).mean(1))


def test_close_to_sklearn_with_its_own_unpenalised_intercept():
    """The bias column of 100 makes our bias almost unpenalised: sklearn's fit_intercept=True
    on the standardised features gives nearly the same model at moderate λ."""
    x, y = blobs(200, seed=3)
    z, _ = blobs(100, seed=4)
    xa, za = recipe(x, z)
    l2s = [1.0, 8.0]
    logits, _ = logistic_scores(x, y, z, l2s=l2s, tol=1e-9)
    for j, l2 in enumerate(l2s):
        model = LogisticRegression(C=1 / l2, tol=1e-12, max_iter=100_000).fit(xa[:, :-1], y)
        np.testing.assert_allclose(
            softmax(logits[j], -1), model.predict_proba(za[:, :-1]), rtol=0, atol=1e-3
        )


def test_batch_equals_one_at_a_time():
    layers = [blobs(120, dim=d, seed=s)[0] for d, s in ((10, 5), (10, 6), (6, 7))]
    y = blobs(120)[1]
    tests = [blobs(60, dim=d, seed=s)[0] for d, s in ((10, 8), (10, 9), (6, 10))]
    yt = blobs(60)[1]
    subsets = [np.arange(8), np.arange(40, 120), np.arange(120)]  # dual and primal sides
    batch, result = logistic_accuracy_batch(
        layers, y, tests, yt, l2s=L2S, subsets=subsets, return_result=True
    )
    assert batch.shape == (3, 3, len(L2S)) and result.converged.all()
    for i, (tr, te) in enumerate(zip(layers, tests, strict=True)):
        for p, idx in enumerate(subsets):
            np.testing.assert_array_equal(
                batch[i, p], logistic_accuracy(tr[idx], y[idx], te, yt, l2s=L2S)
            )
    # Backend signature: (layers, P, G, L) counts over the evaluation groups.
    probes = ProbeSet(layers, y, subsets, tests, yt, np.arange(60) % 2, 2, 4)
    counts = logistic_backend(probes, np.asarray(L2S), device="cpu", precision="float64")
    assert counts.shape == (3, 3, 2, len(L2S))
    np.testing.assert_array_equal(counts.sum(2) / 60, batch)


def test_non_convergence_is_flagged_never_hidden():
    x, y = blobs(200, seed=11, shift=3.0)  # well separated: small λ needs many steps
    probes = ProbeSet([x], y, [np.arange(200)], [x], y, np.zeros(200, np.int64), 1, 4)
    result = logistic_sweep(probes, [1e-3, 1e4], max_iter=2, tol=1e-10)
    assert result.converged.shape == (1, 1, 2)
    assert not result.converged[0, 0, 0]
    assert result.grad_norm[0, 0, 0] > 1e-10 and result.iterations[0, 0, 0] == 2
    with pytest.warns(NotConvergedWarning, match="did not reach"):
        logistic_accuracy(x, y, x, y, l2s=[1e-3], max_iter=2, tol=1e-10)
    full = logistic_sweep(probes, [1e-3, 1e4], tol=1e-6)
    assert full.converged.all() and (full.grad_norm <= 1e-6).all()


def test_bad_options_are_one_line_errors():
    x, y = blobs(40)
    with pytest.raises(ConfigError, match="positive"):
        logistic_accuracy(x, y, x, y, l2s=[0.0])
    with pytest.raises(ConfigError, match="tol"):
        logistic_accuracy(x, y, x, y, l2s=[1.0], tol=0)
    if not torch.cuda.is_available():
        with pytest.raises(EnvironmentProblem, match="GPU"):
            logistic_accuracy(x, y, x, y, l2s=[1.0], device="cuda")
