"""The closed-form probe: exact against a direct solve, backends agree, argmax semantics, λ choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerprobe.errors import ConfigError, DataError, EnvironmentProblem, UnknownNameError
from layerprobe.probe import (
    DEFAULT_L2S,
    plan_probes,
    ridge_accuracy,
    ridge_accuracy_batch,
    ridge_scores,
    select_l2,
)
from layerprobe.probe.accuracy import EvalRows, count_correct

L2S = [2.0**-10, 2.0**-3, 1.0, 2.0**4, 2.0**10, 2.0**19]


def blobs(n, dim, classes=4, seed=0, shift=1.5):
    """Float32 features with class structure (and a non-zero mean and mixed scales)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, dim) + 5.0
    x[:, :classes] += shift * np.eye(classes)[y]
    return x.astype(np.float32), y


def two_layers(seed: int):
    """Two layers of 12-dim blobs: 90 train rows (layer seeds ``seed``, ``seed + 1``), 70 test
    rows (``seed + 2``, ``seed + 3``), their labels, and 8-, 40- and 90-row few-shot subsets."""
    layers = [blobs(90, 12, seed=s)[0] for s in (seed, seed + 1)]
    tests = [blobs(70, 12, seed=s)[0] for s in (seed + 2, seed + 3)]
    subsets = [np.arange(8), np.arange(40), np.arange(90)]
    return layers, blobs(90, 12)[1], tests, blobs(70, 12)[1], subsets


def direct_scores(x, y, z, l2s, classes):
    """The recipe solved per λ with numpy.linalg.solve: (XᵀX + λI) W = XᵀY, standardised + bias."""
    x, z = x.astype(np.float64), z.astype(np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-5
    xa = np.hstack([(x - mu) / sd, np.full((len(x), 1), 100.0)])
    za = np.hstack([(z - mu) / sd, np.full((len(z), 1), 100.0)])
    targets = 2.0 * np.eye(classes)[y] - 1.0
    eye = np.eye(xa.shape[1])
    return np.stack([za @ np.linalg.solve(xa.T @ xa + l2 * eye, xa.T @ targets) for l2 in l2s])


@pytest.mark.parametrize("n_train", [12, 200], ids=["dual-N<D", "primal-N>=D"])
def test_predictions_equal_direct_solve(n_train):
    x, y = blobs(n_train, 40, seed=1)
    z, _ = blobs(50, 40, seed=2)
    expected = direct_scores(x, y, z, L2S, 4)
    scale = np.abs(expected).max(axis=(1, 2), keepdims=True)
    exact = ridge_scores(x, y, z, l2s=L2S, score_precision="float64")
    np.testing.assert_allclose(exact, expected, rtol=0, atol=1e-6 * scale.max())
    assert np.abs(exact - expected).max() / scale.max() < 1e-6
    fast = ridge_scores(x, y, z, l2s=L2S)  # float32 products, as the sweep runs
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-4 * scale.max())
    np.testing.assert_array_equal(fast.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("n_train", [12, 200], ids=["dual", "primal"])
def test_accuracy_equals_direct_solve(n_train):
    x, y = blobs(n_train, 40, seed=3)
    z, yz = blobs(80, 40, seed=4)
    expected = (direct_scores(x, y, z, L2S, 4).argmax(-1) == yz).mean(1)
    np.testing.assert_array_equal(ridge_accuracy(x, y, z, yz, l2s=L2S), expected)
    np.testing.assert_array_equal(
        ridge_accuracy(x, y, z, yz, l2s=L2S, precision="float32"), expected
    )


def test_batch_matches_one_at_a_time_and_sklearn():
    layers = [blobs(120, 30, seed=s)[0] for s in (5, 6)] + [blobs(120, 7, seed=7)[0]]
    y = blobs(120, 30)[1]
    tests = [blobs(60, 30, seed=s)[0] for s in (8, 9)] + [blobs(60, 7, seed=10)[0]]
    yt = blobs(60, 30)[1]
    subsets = [np.arange(8), np.arange(40), np.arange(120)]  # dual, dual, primal side
    batch = ridge_accuracy_batch(layers, y, tests, yt, l2s=L2S, subsets=subsets)
    assert batch.shape == (3, 3, len(L2S))
    for i, (tr, te) in enumerate(zip(layers, tests, strict=True)):
        for p, idx in enumerate(subsets):
            np.testing.assert_array_equal(
                batch[i, p], ridge_accuracy(tr[idx], y[idx], te, yt, l2s=L2S)
            )
    reference = ridge_accuracy_batch(
        layers, y, tests, yt, l2s=L2S, subsets=subsets, backend="sklearn"
    )
    np.testing.assert_array_equal(batch, reference)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
@pytest.mark.parametrize("many_classes", [False, True])
def test_accuracy_count_has_argmax_tie_semantics(monkeypatch, many_classes, kind):
    from layerprobe.probe import accuracy

    if many_classes:
        monkeypatch.setattr(accuracy, "MAX_SEGMENTS", 0)
    rng = np.random.default_rng(0)
    classes, l2s, rows = 4, 3, 40
    scores = rng.integers(0, 3, size=(2, rows, classes, l2s)).astype(np.float32)  # many exact ties
    labels = rng.integers(0, classes, rows)
    group = rng.integers(0, 2, rows)
    ev = EvalRows.build(labels, group, 2)
    block = scores[:, ev.order].reshape(2, rows, -1).copy()
    block = torch.from_numpy(block) if kind == "torch" else block
    counts, unsure = count_correct(block, ev, l2s)
    right = scores.argmax(2) == labels[None, :, None]  # numpy: the first of tied maxima
    expected = np.stack([(right & (group == g)[None, :, None]).sum(1) for g in (0, 1)], axis=1)
    np.testing.assert_array_equal(np.asarray(counts), expected)
    assert unsure is None
    # Flagged as too close to call: exactly the rows whose label ties the best other class.
    counts, unsure = count_correct(block, ev, l2s, tol=1e-6)
    np.testing.assert_array_equal(np.asarray(counts), expected)
    s = scores[:, ev.order]
    own = np.take_along_axis(s, np.sort(labels)[None, :, None, None], axis=2)[:, :, 0]
    others = np.where(
        np.arange(classes)[None, None, :, None] == np.sort(labels)[None, :, None, None], -np.inf, s
    )
    np.testing.assert_array_equal(np.asarray(unsure), own == others.max(2))


def test_near_ties_are_settled_in_float64(monkeypatch):
    from layerprobe.probe import recipe

    layers, y, tests, yt, subsets = two_layers(seed=21)
    expected = np.stack(
        [
            [
                (direct_scores(tr[idx], y[idx], te, L2S, 4).argmax(-1) == yt).mean(1)
                for idx in subsets
            ]
            for tr, te in zip(layers, tests, strict=True)
        ]
    )
    np.testing.assert_array_equal(
        ridge_accuracy_batch(layers, y, tests, yt, l2s=L2S, subsets=subsets), expected
    )
    monkeypatch.setattr(recipe, "NEAR_TIE", 1.0)  # everything is 'too close': all float64
    np.testing.assert_array_equal(
        ridge_accuracy_batch(layers, y, tests, yt, l2s=L2S, subsets=subsets), expected
    )


def test_constant_features_do_not_score_every_row_right():
    x = np.ones((20, 5), np.float32)
    y = np.arange(20) % 2
    acc = ridge_accuracy(x, y, np.ones((10, 5), np.float32), np.arange(10) % 2, l2s=[1.0])
    assert acc[0] == pytest.approx(0.5)


def test_select_l2_prefers_larger_lambda_on_ties():
    val = np.array([[0.5, 0.9, 0.9, 0.1], [0.7, 0.2, 0.2, 0.7]])
    np.testing.assert_array_equal(select_l2(val), [2, 3])


def test_default_grid_is_2_pow_minus10_to_19():
    assert len(DEFAULT_L2S) == 30 and DEFAULT_L2S[0] == 2.0**-10 and DEFAULT_L2S[-1] == 2.0**19


def test_shots_nested_and_disjoint_from_validation():
    labels = np.repeat(np.arange(5), 40)
    plan = plan_probes(labels, [1, 5, 10, 25, 0], seeds=3, has_val_split=False, task="t")
    assert plan.val is not None and len(plan.val) == 5 * 8  # 20% of 40 per class
    by_key = dict(zip(plan.keys, plan.subsets, strict=True))
    assert (0, 1) not in by_key and len(by_key[(0, 0)]) == 200 - 40  # full split once
    for seed in range(3):
        previous: set = set()
        for k in (1, 5, 10, 25):
            shots = by_key[(k, seed)]
            assert np.bincount(labels[shots]).tolist() == [k] * 5
            assert previous <= set(shots.tolist())  # nested
            assert not set(shots.tolist()) & set(plan.val.tolist())  # never validation rows
            previous = set(shots.tolist())
    assert not np.array_equal(by_key[(25, 0)], by_key[(25, 1)])  # seeds differ


def test_same_seed_same_accuracies():
    x, y = blobs(300, 24, seed=11)
    z, yz = blobs(100, 24, seed=12)
    plan = plan_probes(y, [1, 5], seeds=2, has_val_split=True)
    a = ridge_accuracy_batch([x], y, [z], yz, subsets=plan.subsets)
    plan2 = plan_probes(y, [1, 5], seeds=2, has_val_split=True)
    b = ridge_accuracy_batch([x], y, [z], yz, subsets=plan2.subsets)
    np.testing.assert_array_equal(a, b)


def test_bad_inputs_are_one_line_user_errors():
    x, y = blobs(40, 6)
    z, yz = blobs(20, 6)
    bad = x.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match="row 7"):
        ridge_accuracy(bad, y, z, yz)
    with pytest.raises(DataError, match="6 wide .* 5"):
        ridge_accuracy(x, y, z[:, :5], yz)
    with pytest.raises(DataError, match="single class"):
        ridge_accuracy(x, np.zeros(40, np.int64), z, yz)
    with pytest.raises(DataError, match="fewer than 25 shots"):
        plan_probes(np.repeat([0, 1], 20), [25], 1, has_val_split=False, task="t")
    with pytest.raises(ConfigError, match="positive"):
        ridge_accuracy(x, y, z, yz, l2s=[0.0, 1.0])
    with pytest.raises(UnknownNameError, match="sklearn"):
        ridge_accuracy(x, y, z, yz, backend="sklern")


def test_gpu_requests_fail_clearly_without_a_gpu():
    x, y = blobs(40, 6)
    if not torch.cuda.is_available():
        with pytest.raises(EnvironmentProblem, match="GPU"):
            ridge_accuracy(x, y, x, y, device="cuda")
    try:
        import cuml  # noqa: F401
    except ImportError:
        with pytest.raises(EnvironmentProblem, match="cuML"):
            ridge_accuracy(x, y, x, y, backend="cuml", device="auto")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_cuml_agree_with_cpu():
    x, y = blobs(150, 30, seed=13)
    z, yz = blobs(90, 30, seed=14)
    subsets = [np.arange(12), np.arange(150)]
    cpu = ridge_accuracy_batch([x], y, [z], yz, l2s=L2S, subsets=subsets, device="cpu")
    np.testing.assert_array_equal(
        ridge_accuracy_batch([x], y, [z], yz, l2s=L2S, subsets=subsets, device="cuda"), cpu
    )
    pytest.importorskip("cuml")
    np.testing.assert_array_equal(
        ridge_accuracy_batch(
            [x], y, [z], yz, l2s=L2S, subsets=subsets, backend="cuml", device="cuda"
        ),
        cpu,
    )


def test_row_blocks_and_argmax_counting_give_the_same_counts(monkeypatch):
    from layerprobe.probe import accuracy, recipe

    layers, y, tests, yt, subsets = two_layers(seed=15)
    expected = ridge_accuracy_batch(layers, y, tests, yt, l2s=L2S, subsets=subsets)
    monkeypatch.setattr(recipe, "SCORES_BYTES", 3 * 4 * 4 * len(L2S) * 7)  # 7-row blocks
    np.testing.assert_array_equal(
        ridge_accuracy_batch(layers, y, tests, yt, l2s=L2S, subsets=subsets), expected
    )
    monkeypatch.setattr(accuracy, "MAX_SEGMENTS", 0)  # the many-classes path
    np.testing.assert_array_equal(
        ridge_accuracy_batch(layers, y, tests, yt, l2s=L2S, subsets=subsets), expected
    )


def test_float16_features_as_stored_in_caches():
    x, y = blobs(60, 10, seed=19)
    z, yz = blobs(40, 10, seed=20)
    x16, z16 = x.astype(np.float16), z.astype(np.float16)
    np.testing.assert_array_equal(
        ridge_accuracy(x16, y, z16, yz, l2s=L2S),
        ridge_accuracy(x16.astype(np.float32), y, z16.astype(np.float32), yz, l2s=L2S),
    )
