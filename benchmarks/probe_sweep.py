"""The standard probe sweep, timed against two baselines in the same run.

Sweep: 12 layers × 20 tasks × shots 1/5/10/25 × 3 seeds × 30 λ = 86,400 probe fits;
D = 384, 10 classes, 2,000 train and 1,000 test rows per task, random features with class
structure. λ is chosen on 200 validation rows held out of train (the CLI's default scheme),
so every fit is scored on 1,200 rows (validation + test).

- layerprobe: the torch backend (``layerprobe.probe.backends.torch_backend``), CPU — its
  numpy path; and its torch path (``layerprobe.probe.torch_backend.sweep`` on the CPU, the
  engine before the numpy path), interleaved, counts compared;
- (a) numpy: the same recipe written plainly, one eigendecomposition per probe and a loop
  over λ (float64 throughout);
- (b) scikit-learn ``RidgeClassifier`` on the same standardised features, one fit per probe
  and λ, timed on a slice and extrapolated.

Usage: ``python benchmarks/probe_sweep.py [--tasks 20] [--baseline-tasks 20] [--sklearn-fits 720]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from layerprobe.probe.backends import sweep_probes, torch_backend
from layerprobe.probe.plan import plan_probes
from layerprobe.probe.problems import DEFAULT_L2S, ProbeSet, select_l2
from layerprobe.probe.torch_backend import sweep as torch_path_sweep

LAYERS, DIM, CLASSES, TRAIN, TEST = 12, 384, 10, 2000, 1000
SHOTS, SEEDS = (1, 5, 10, 25), 3


def make_task(task: int):
    """Features of one task: per layer, class means of growing strength plus noise."""
    rng = np.random.default_rng(task)
    y_train = rng.permutation(np.arange(TRAIN) % CLASSES)
    y_test = rng.permutation(np.arange(TEST) % CLASSES)
    train, test = [], []
    for layer in range(LAYERS):
        centers = rng.normal(size=(CLASSES, DIM)) * (0.05 + 0.02 * layer)
        scale = rng.uniform(0.5, 2.0, DIM)  # features of different scales, as real ones
        train.append(
            ((centers[y_train] + rng.normal(size=(TRAIN, DIM))) * scale + 1.0).astype(np.float32)
        )
        test.append(
            ((centers[y_test] + rng.normal(size=(TEST, DIM))) * scale + 1.0).astype(np.float32)
        )
    plan = plan_probes(y_train, SHOTS, SEEDS, has_val_split=False)
    y_eval = np.concatenate([y_train[plan.val], y_test])
    group = np.repeat([0, 1], [len(plan.val), TEST])
    evals = [np.concatenate([tr[plan.val], te]) for tr, te in zip(train, test, strict=True)]
    return ProbeSet(train, y_train, plan.subsets, evals, y_eval, group, 2, CLASSES)


def numpy_recipe(probes: ProbeSet, l2s: np.ndarray) -> np.ndarray:
    """(a) The recipe, plainly: per probe one eigh on the cheaper side, then a loop over λ."""
    out = np.zeros((len(probes.train), len(probes.subsets), 2, len(l2s)), np.int64)
    targets = 2.0 * np.eye(probes.num_classes) - 1.0
    for i, (train, evals) in enumerate(zip(probes.train, probes.evals, strict=True)):
        for p, idx in enumerate(probes.subsets):
            x = train[idx].astype(np.float64)
            mu, sd = x.mean(0), x.std(0) + 1e-5
            xa = np.pad((x - mu) / sd, ((0, 0), (0, 1)), constant_values=100.0)
            ea = np.pad((evals - mu) / sd, ((0, 0), (0, 1)), constant_values=100.0)
            y = targets[probes.y_train[idx]]
            if len(xa) >= xa.shape[1]:
                eigs, q = np.linalg.eigh(xa.T @ xa)
                lhs, rhs = q, q.T @ (xa.T @ y)
            else:
                eigs, q = np.linalg.eigh(xa @ xa.T)
                lhs, rhs = xa.T @ q, q.T @ y
            eigs = np.maximum(eigs, 0.0)
            for j, l2 in enumerate(l2s):
                w = (lhs / (eigs + l2)) @ rhs
                right = np.argmax(ea @ w, axis=1) == probes.y_eval
                out[i, p, :, j] = np.bincount(probes.eval_group[right], minlength=2)
    return out


def sklearn_slice(probes: ProbeSet, l2s: np.ndarray, fits: int):
    """(b) RidgeClassifier, one fit per (probe, λ), on the first ``fits`` fits of a task."""
    from sklearn.linear_model import RidgeClassifier

    done, keys, counts = 0, [], []
    start = time.perf_counter()
    for i, (train, evals) in enumerate(zip(probes.train, probes.evals, strict=True)):
        for p, idx in enumerate(probes.subsets):
            x = train[idx].astype(np.float64)
            mu, sd = x.mean(0), x.std(0) + 1e-5
            xs, es = (x - mu) / sd, (evals - mu) / sd
            for j, l2 in enumerate(l2s):
                model = RidgeClassifier(alpha=float(l2)).fit(xs, probes.y_train[idx])
                right = model.predict(es) == probes.y_eval
                counts.append(np.bincount(probes.eval_group[right], minlength=2))
                keys.append((i, p, j))
                done += 1
                if done == fits:
                    return time.perf_counter() - start, keys, np.array(counts)
    return time.perf_counter() - start, keys, np.array(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--baseline-tasks", type=int, default=20, help="tasks timed for (a)")
    parser.add_argument("--sklearn-fits", type=int, default=720, help="fits timed for (b)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of layerprobe per task")
    args = parser.parse_args()
    l2s = np.asarray(DEFAULT_L2S)
    fits = LAYERS * args.tasks * len(SHOTS) * SEEDS * len(l2s)
    print(
        f"{fits:,} probe fits; {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    torch_backend(
        make_task(999), l2s, device="cpu", precision="float64"
    )  # warm-up (thread pools, allocator)
    ours, ours32, theirs, numpy_time = [], [], [], 0.0
    torch_same = torch_total = 0
    same, entries, max_diff = 0, 0, 0
    sk_time = sk_fits = 0
    sk_diffs, sk_selected_diffs = [], []
    for task in range(args.tasks):
        probes = make_task(task)
        sizes = probes.group_sizes()
        runs, torch_runs = [], []
        for _ in range(args.repeats):  # numpy path and torch path, interleaved
            t = time.perf_counter()
            counts = torch_backend(probes, l2s, device="cpu", precision="float64")
            runs.append(time.perf_counter() - t)
            t = time.perf_counter()
            torch_counts = sweep_probes(torch_path_sweep, probes, l2s, device="cpu")
            torch_runs.append(time.perf_counter() - t)
        ours.append(runs)
        theirs.append(torch_runs)
        torch_same += int((counts == torch_counts).sum())
        torch_total += counts.size
        t = time.perf_counter()
        torch_backend(probes, l2s, device="cpu", precision="float32")
        ours32.append(time.perf_counter() - t)
        if task < args.baseline_tasks:
            t = time.perf_counter()
            reference = numpy_recipe(probes, l2s)
            numpy_time += time.perf_counter() - t
            same += int((reference == counts).sum())
            entries += reference.size
            max_diff = max(max_diff, int(np.abs(reference - counts).max()))
        if task == 0:
            sk_time, keys, sk_counts = sklearn_slice(probes, l2s, args.sklearn_fits)
            sk_fits = len(keys)
            ours_acc = np.array([counts[i, p, :, j] for i, p, j in keys]) / sizes
            sk_acc = sk_counts / sizes
            sk_diffs = np.abs(ours_acc - sk_acc)[:, 1] * 100
            # Test accuracy at the λ chosen on validation, per probe (ties: larger λ).
            per_probe = {}
            for (i, p, _), a, b in zip(keys, ours_acc, sk_acc, strict=True):
                per_probe.setdefault((i, p), []).append((a, b))
            for pairs in per_probe.values():
                if len(pairs) == len(l2s):
                    a, b = np.array(pairs).transpose(1, 0, 2)
                    ja, jb = select_l2(a[:, 0]), select_l2(b[:, 0])
                    sk_selected_diffs.append(abs(a[ja, 1] - b[jb, 1]) * 100)

    total = sum(statistics.median(r) for r in ours)
    best = sum(min(r) for r in ours)
    total32 = sum(ours32)
    torch_path_total = sum(statistics.median(r) for r in theirs)
    numpy_total = numpy_time * args.tasks / max(min(args.baseline_tasks, args.tasks), 1)
    sk_total = sk_time / max(sk_fits, 1) * fits
    print()
    print(f"{'method':<46} {'time (s)':>10} {'fits/s':>10} {'vs layerprobe':>14}")
    rows = [
        ("layerprobe torch, float64 eigh (median/task)", total),
        ("layerprobe torch, float64 eigh (best/task)", best),
        ("layerprobe torch, --precision float32", total32),
        ("torch path on the CPU, float64 (median/task)", torch_path_total),
        (
            f"(a) numpy recipe, eigh per probe ({min(args.baseline_tasks, args.tasks)} tasks)",
            numpy_total,
        ),
        (f"(b) sklearn RidgeClassifier ({sk_fits} fits, extrapolated)", sk_total),
    ]
    for name, seconds in rows:
        print(f"{name:<46} {seconds:>10.2f} {fits / seconds:>10,.0f} {seconds / total:>13.1f}x")
    print()
    print(f"counts vs the torch path: {torch_same:,} of {torch_total:,} identical")
    print(
        f"accuracies vs (a): {same:,} of {entries:,} (probe, λ, split) counts identical; "
        f"largest difference {max_diff} row(s)"
    )
    if len(sk_diffs):
        print(
            f"accuracies vs (b), {sk_fits} fits: test accuracy |Δ| mean {np.mean(sk_diffs):.3f}, "
            f"max {np.max(sk_diffs):.2f} points; at the selected λ "
            f"({len(sk_selected_diffs)} probes) max {max(sk_selected_diffs, default=0):.2f} points"
        )
    print(
        f"goals: sweep <= 8 s: {total:.2f} s; >= 4x faster than (a): {numpy_total / total:.1f}x; "
        f">= 100x faster than (b): {sk_total / total:.0f}x"
    )


if __name__ == "__main__":
    main()
