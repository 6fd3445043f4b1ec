"""Cosine k-NN probes: equal to scikit-learn's KNeighborsClassifier, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from layerprobe.errors import ConfigError, EnvironmentProblem
from layerprobe.probe import ProbeSet, knn_accuracy, knn_accuracy_batch, knn_backend, knn_sweep
from layerprobe.probe.knn import normalise, predict, top_neighbours

KS = (1, 2, 4, 7, 10, 25)


def blobs(n, dim=12, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, dim)) + 0.4 * np.eye(classes, dim)[y] + 0.2
    return x.astype(np.float32), y


def sklearn_predictions(x, y, z, ks):
    return np.stack(
        [
            KNeighborsClassifier(k, metric="cosine", algorithm="brute")
            .fit(x.astype(np.float64), y)
            .predict(z.astype(np.float64))
            for k in ks
        ],
        axis=1,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_majority_predictions_equal_sklearn(dtype):
    # Small k over 5 classes: class-count ties are frequent (sklearn: smallest class wins).
    for seed in range(3):
        x, y = blobs(150, seed=seed)
        z, _ = blobs(120, seed=seed + 10)
        xn, zn = (
            normalise(torch.as_tensor(x, dtype=torch.float64)),
            normalise(torch.as_tensor(z, dtype=torch.float64)),
        )
        ks = np.asarray(KS)
        sims, idx = top_neighbours((zn @ xn.T).to(dtype), int(ks[-1]), ks)
        ours = predict(sims, torch.as_tensor(y)[idx], ks, num_classes=5, vote="majority").numpy()
        np.testing.assert_array_equal(ours, sklearn_predictions(x, y, z, KS))


def test_accuracy_equals_sklearn_and_precisions_agree():
    x, y = blobs(200, seed=1)
    z, yz = blobs(90, seed=2)
    expected = (sklearn_predictions(x, y, z, KS) == yz[:, None]).mean(0)
    for precision in ("float32", "float64"):
        np.testing.assert_array_equal(
            knn_accuracy(x, y, z, yz, ks=KS, precision=precision), expected
        )


def test_weighted_vote_is_dinov2s():
    """exp(sim / T) weights, argmax of class totals: a direct computation."""
    x, y = blobs(100, seed=3)
    z, yz = blobs(40, seed=4)
    xn, zn = (
        a / np.linalg.norm(a, axis=1, keepdims=True) for a in (x.astype(float), z.astype(float))
    )
    sims = zn @ xn.T
    expected = []
    for k in KS:
        nbr = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        totals = np.zeros((len(z), 5))
        for i in range(len(z)):
            np.add.at(totals[i], y[nbr[i]], np.exp(sims[i, nbr[i]] / 0.07))
        expected.append((totals.argmax(1) == yz).mean())
    ours = knn_accuracy(x, y, z, yz, ks=KS, vote="weighted", precision="float64")
    np.testing.assert_allclose(ours, expected)


def test_batch_equals_one_at_a_time_and_groups():
    layers = [blobs(120, dim=d, seed=s)[0] for d, s in ((12, 5), (12, 6), (7, 7))]
    y = blobs(120, seed=5)[1]
    tests = [blobs(60, dim=d, seed=s)[0] for d, s in ((12, 8), (12, 9), (7, 10))]
    yt = blobs(60, seed=8)[1]
    subsets = [np.arange(30), np.arange(120), np.arange(40, 120)]
    batch = knn_accuracy_batch(layers, y, tests, yt, ks=KS, subsets=subsets)
    assert batch.shape == (3, 3, len(KS))
    for i, (tr, te) in enumerate(zip(layers, tests, strict=True)):
        for p, idx in enumerate(subsets):
            np.testing.assert_array_equal(batch[i, p], knn_accuracy(tr[idx], y[idx], te, yt, ks=KS))
    # Backend signature: (layers, P, G, K) counts; two groups split the evaluation rows.
    group = np.arange(60) % 2
    probes = ProbeSet(layers, y, subsets, tests, yt, group, 2, 5)
    counts = knn_backend(probes, np.asarray(KS), device="cpu", precision="float32")
    assert counts.shape == (3, 3, 2, len(KS))
    np.testing.assert_array_equal(counts.sum(2) / 60, batch)
    both = knn_sweep(probes, KS, votes=("majority", "weighted"))
    np.testing.assert_array_equal(both["majority"], counts)


def test_k_larger_than_train_set_is_a_one_line_config_error():
    x, y = blobs(30)
    with pytest.raises(ConfigError, match="larger than a train set of 30 rows") as err:
        knn_accuracy(x, y, x, y, ks=(10, 31))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="larger than a train set of 8 rows"):
        knn_accuracy_batch([x], y, [x], y, ks=(10,), subsets=[np.arange(8)])
    with pytest.raises(ConfigError, match="k >= 1"):
        knn_accuracy(x, y, x, y, ks=(0, 3))
    with pytest.raises(ConfigError, match="unknown k-NN vote"):
        knn_accuracy(x, y, x, y, ks=(3,), vote="soft")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_an_environment_problem():
    x, y = blobs(30)
    with pytest.raises(EnvironmentProblem, match="GPU"):
        knn_accuracy(x, y, x, y, ks=(3,), device="cuda")


def test_unknown_family_is_a_one_line_error():
    from layerprobe.errors import UnknownNameError
    from layerprobe.probe.families import get_family

    assert get_family("knn") is knn_backend
    with pytest.raises(UnknownNameError, match="did you mean|Did you mean"):
        get_family("logistc")
