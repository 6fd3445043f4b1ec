"""k-NN probes against FAISS's exact inner-product index and scikit-learn, in the same run.

The probe families benchmark's sizes (``benchmarks/probe_families.py``): 12 layers, D = 384,
10 classes, 2,000 train rows, 200 validation + 1,000 test evaluation rows, full train set.
Every k of 10 / 20 / 50 / 200, both votes (majority, and dinov2's weighted vote, T = 0.07), on
L2-normalised features (cosine similarity):

- (a) layerprobe ``knn_sweep`` (float32 products, near ties settled in float64, one top-k for
  every k, votes by prefix sums);
- (b) FAISS (``faiss-cpu``): per layer ``faiss.IndexFlatIP`` (exact inner product) on the
  L2-normalised float32 features, ``search`` with k = 200, then both votes for every k from
  those neighbours in numpy (class totals grown k by k, argmax: ties to the smallest class, as
  (a)); the time includes normalising, building the index, searching and voting;
- (c) scikit-learn ``KNeighborsClassifier(metric="cosine", algorithm="brute")``, one fit and
  predict per k (majority vote only; its ``weights="distance"`` is another vote).

Checked: (b)'s correct counts per (layer, validation / test, k, vote) are compared with (a)'s,
and the per-row predictions too: a row may differ only where (b)'s float32 similarities put a
near tie (gap <= 1e-5) at a k boundary, which (a) settles in float64, or where the vote's two
best classes nearly tie; any other difference fails the run. (c)'s majority counts must equal
(a)'s.
Every method runs on one thread (torch, BLAS, FAISS's OpenMP); (a) and (b) run three times
interleaved and the median counts; CPU seconds of this process and wall seconds are printed,
with the load average. FAISS is an optional extra (``pip install layerprobe[bench]``): where it
is missing, (b) is skipped with a note.

Usage: ``python benchmarks/knn_faiss.py [--repeats 3]``.

Measured on the shared 2-core machine (load 6.7–7.2), 2026-12-07, faiss 1.15.1: (a) 0.775 CPU s,
(b) 1.163 CPU s: (a) 1.50× faster than FAISS in CPU seconds (1.46× wall), goal met; (c) 5.40 CPU s
(7.0×); counts and per-row predictions of both votes identical to FAISS's, majority counts
identical to scikit-learn's. More in docs/speed.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_families import LAYERS, TEST, VAL, make_stack, probe_set  # noqa: E402

from layerprobe.probe import DEFAULT_KS  # noqa: E402
from layerprobe.probe.families import knn_sweep  # noqa: E402
from layerprobe.probe.knn import NEAR_TIE, TEMPERATURE  # noqa: E402
from layerprobe.probe.solver import blas_threads  # noqa: E402

VOTES = ("majority", "weighted")


def faiss_knn(faiss, probes, ks: np.ndarray) -> tuple[dict, list]:
    """(b): {vote: (layers, 1, G, K) correct counts}, and per layer the (M, K) predictions of
    each vote with FAISS's (M, kmax) similarities and neighbour labels (to explain any
    difference)."""
    kmax = int(ks[-1])
    groups, y_eval = probes.eval_group, np.asarray(probes.y_eval)
    out = {v: np.zeros((len(probes.train), 1, probes.num_groups, len(ks)), np.int64) for v in VOTES}
    detail = []
    for i, (train, evals) in enumerate(zip(probes.train, probes.evals, strict=True)):
        x = np.array(train, dtype=np.float32)
        z = np.array(evals, dtype=np.float32)
        faiss.normalize_L2(x)
        faiss.normalize_L2(z)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        sims, nbr = index.search(z, kmax)
        labels = np.asarray(probes.y_train)[nbr]  # (M, kmax)
        onehot = np.zeros((len(z), kmax, probes.num_classes), np.float32)
        np.put_along_axis(onehot, labels[:, :, None], 1.0, axis=2)
        preds = {}
        for vote in VOTES:
            w = onehot
            if vote == "weighted":
                w = onehot * np.exp((sims - sims[:, :1]) / TEMPERATURE)[:, :, None]
            totals = np.cumsum(w, axis=1)[:, ks - 1]  # (M, K, C): every k's class totals
            preds[vote] = totals.argmax(2)  # the first maximum: ties to the smallest class
            right = preds[vote] == y_eval[:, None]
            for g in range(probes.num_groups):
                out[vote][i, 0, g] = right[groups == g].sum(0)
        detail.append((preds, sims, labels))
    return out, detail


def sklearn_knn(probes, ks: np.ndarray) -> np.ndarray:
    """(c): (layers, 1, G, K) majority-vote correct counts, one fit per k."""
    from sklearn.neighbors import KNeighborsClassifier

    out = np.zeros((len(probes.train), 1, probes.num_groups, len(ks)), np.int64)
    for i in range(len(probes.train)):
        for j, k in enumerate(ks):
            model = KNeighborsClassifier(int(k), metric="cosine", algorithm="brute")
            model.fit(probes.train[i].astype(np.float64), probes.y_train)  # exact similarities
            right = model.predict(probes.evals[i].astype(np.float64)) == probes.y_eval
            out[i, 0, :, j] = np.bincount(probes.eval_group[right], minlength=probes.num_groups)
    return out


def ours_rows(probes, ks: np.ndarray) -> list[dict]:
    """(a)'s per-row predictions, layer by layer, through the functions ``knn_sweep`` uses
    (untimed: only to compare row by row)."""
    from layerprobe.probe.knn import normalise, predict, top_neighbours

    out = []
    y = torch.as_tensor(np.asarray(probes.y_train, np.int64))
    for train, evals in zip(probes.train, probes.evals, strict=True):
        x64 = normalise(torch.as_tensor(train).double())
        z64 = normalise(torch.as_tensor(evals).double())
        sims = z64.float() @ x64.float().T
        vals, nbr = top_neighbours(sims, int(ks[-1]), ks, exact=lambda r, z=z64, x=x64: z[r] @ x.T)
        out.append(
            {
                v: predict(vals, y[nbr], ks, num_classes=probes.num_classes, vote=v).numpy()
                for v in VOTES
            }
        )
    return out


def explained(sims: np.ndarray, labels: np.ndarray, ks: np.ndarray, vote: str, classes: int):
    """(M, K) where a float32 (b) may differ from (a) by a tie: the similarity gap after the
    k-th neighbour (or, for k = kmax, after the (k-1)-th: FAISS returns no (k+1)-th) is
    <= NEAR_TIE, or the vote's two best classes are within 1e-4 of each other."""
    cut = np.minimum(ks, sims.shape[1] - 1) - 1
    gaps = sims[:, cut] - sims[:, cut + 1]
    w = np.exp((sims - sims[:, :1]) / TEMPERATURE) if vote == "weighted" else np.ones_like(sims)
    totals = np.zeros((len(sims), len(ks), classes))
    for j, k in enumerate(ks):
        for c in range(classes):
            totals[:, j, c] = (w[:, :k] * (labels[:, :k] == c)).sum(1)
    two = np.sort(totals, axis=2)[:, :, -2:]
    margins = (two[:, :, 1] - two[:, :, 0]) / two[:, :, 1]
    return (gaps <= NEAR_TIE) | (margins <= 1e-4)


def _timed(fn, *args) -> tuple:
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of (a) and (b)")
    args = parser.parse_args()
    try:
        import faiss
    except ImportError:
        faiss = None
        print("FAISS is not installed (pip install layerprobe[bench] adds faiss-cpu): (b) skipped")
    torch.set_num_threads(1)
    if faiss is not None:
        faiss.omp_set_num_threads(1)
    with blas_threads(1):
        run(args, faiss)


def run(args, faiss) -> None:
    feats, ys = make_stack()
    probes = probe_set(feats, ys)
    ks = np.asarray(DEFAULT_KS)
    times = {"a": [], "b": []}
    ours = theirs = detail = None
    for _ in range(args.repeats):
        ours, cpu, wall = _timed(knn_sweep, probes, ks, "cpu", "float32", VOTES)
        times["a"].append((cpu, wall))
        if faiss is not None:
            (theirs, detail), cpu, wall = _timed(faiss_knn, faiss, probes, ks)
            times["b"].append((cpu, wall))
    sk, sk_cpu, sk_wall = _timed(sklearn_knn, probes, ks)

    def med(name: str, j: int) -> float:
        return statistics.median(t[j] for t in times[name])

    print(
        f"{LAYERS} layers × D 384, 2,000 train rows, {VAL} + {TEST} evaluation rows, 10 classes; "
        f"k = {ks.tolist()}, votes {' and '.join(VOTES)}; 1 thread each; median of "
        f"{args.repeats} interleaved runs for (a) and (b)"
    )
    print(f"{'method':<52} {'CPU s':>7} {'÷ (a)':>7} {'wall s':>7} {'÷ (a)':>7}")
    a_cpu, a_wall = med("a", 0), med("a", 1)
    rows = [("(a) layerprobe knn_sweep (every k, both votes)", a_cpu, a_wall)]
    if faiss is not None:
        rows.append(("(b) FAISS IndexFlatIP, search k=200, both votes", med("b", 0), med("b", 1)))
    rows.append(("(c) scikit-learn, one fit per k, majority only", sk_cpu, sk_wall))
    for name, cpu, wall in rows:
        print(f"{name:<52} {cpu:>7.3f} {cpu / a_cpu:>7.2f} {wall:>7.3f} {wall / a_wall:>7.2f}")
    print(f"    (a) runs CPU s: {', '.join(f'{c:.3f}' for c, _ in times['a'])}")
    if faiss is not None:
        print(f"    (b) runs CPU s: {', '.join(f'{c:.3f}' for c, _ in times['b'])}")

    ok = bool((sk == ours["majority"]).all())
    print(f"(c) majority counts identical to (a): {ok}")
    if faiss is not None:
        rows = ours_rows(probes, ks)
        for vote in VOTES:
            same = bool((theirs[vote] == ours[vote]).all())
            differ = unexplained = 0
            for mine, (preds, sims, labels) in zip(rows, detail, strict=True):
                bad = mine[vote] != preds[vote]
                differ += int(bad.sum())
                tie = explained(sims, labels, ks, vote, probes.num_classes)
                unexplained += int((bad & ~tie).sum())
            print(
                f"(b) {vote} counts identical to (a): {same}; (row, k) predictions that differ: "
                f"{differ}, of which not at a near tie: {unexplained}"
            )
            ok = ok and unexplained == 0
        a_acc = ours["majority"][:, 0, 1, -1] / TEST
        print(f"test accuracy, majority k=200, per layer: {np.round(100 * a_acc, 1).tolist()}")
        ratio = med("b", 0) / a_cpu
        print(
            f"goal (a) at least as fast as (b): {'met' if ratio >= 1 else 'not met'} "
            f"({ratio:.2f}× in CPU seconds, {med('b', 1) / a_wall:.2f}× wall)"
        )
    print(f"(a) vs (c): {sk_cpu / a_cpu:.1f}× in CPU seconds")
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}"
        + (f", faiss {faiss.__version__}" if faiss is not None else "")
        + f"; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end"
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
