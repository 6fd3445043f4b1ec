"""Every logistic probe of a :class:`ProbeSet`: batched fits, then counts on the evaluation rows.

Problems of the same size (all layers of one width × the subsets of one size) are rotated
and fitted together, all λ at once (:mod:`layerprobe.probe.logistic`); their evaluation rows
are scored with one product each and counted as the ridge backend counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from layerprobe.probe.accuracy import EvalRows, count_correct
from layerprobe.probe.logistic import MAX_ITER, TOL, fit, rotate
from layerprobe.probe.problems import ProbeSet
from layerprobe.probe.solver import matmul
from layerprobe.runtime.pools import single_threaded_pool

FIT_BYTES = 64 << 20  # one (problems, C, L, n) float64 tensor of a fitted batch; ~8 live at once


@dataclass
class LogisticResult:
    """Outcome of every (layer, probe, λ).

    Attributes
    ----------
    counts : (layers, P, G, L) int64 correct predictions per evaluation group.
    grad_norm : (layers, P, L) ‖∇(f / n)‖₂ reached (f: summed cross-entropy + λ/2 ‖W‖²).
    converged : (layers, P, L) bool, ``grad_norm <= tol``.
    iterations : (layers, P, L) Newton steps taken.
    tol : the tolerance used.
    """

    counts: np.ndarray
    grad_norm: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    tol: float


def sweep(
    probes: ProbeSet,
    l2s: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,  # of the products with the train features
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> LogisticResult:
    """Fit and score every (layer, subset, λ) of ``probes`` (λ sorted ascending)."""
    device = torch.device(device)
    num_layers, num_p, num_l = len(probes.train), len(probes.subsets), len(l2s)
    shape = (num_layers, num_p, num_l)
    counts = np.zeros((num_layers, num_p, probes.num_groups, num_l), np.int64)
    gnorm, iters = np.zeros(shape), np.zeros(shape, np.int64)
    conv = np.zeros(shape, bool)
    rows = EvalRows.build(probes.y_eval, probes.eval_group, probes.num_groups)
    groups_dev = torch.as_tensor(rows.groups, device=device)
    rows = EvalRows(rows.order, rows.segments, groups_dev)
    l2 = torch.as_tensor(np.asarray(l2s, np.float64), device=device)
    y_pool = torch.as_tensor(np.asarray(probes.y_train, np.int64), device=device)
    by_size: dict[int, list[int]] = {}
    for p, idx in enumerate(probes.subsets):
        by_size.setdefault(len(idx), []).append(p)
    jobs = []
    for layers in _same_width(probes.train):
        for size, ids in by_size.items():
            per_problem = size * num_l * probes.num_classes * 8
            step = max(1, FIT_BYTES // (per_problem * len(ids)))
            jobs += [(layers[a : a + step], ids) for a in range(0, len(layers), step)]
    workers = min(torch.get_num_threads(), len(probes.train)) if device.type == "cpu" else 1
    if workers > 1:  # one share of the layers per core, as the ridge backend does
        jobs = [
            (list(map(int, share)), ids)
            for part, ids in jobs
            for share in np.array_split(part, min(workers, len(part)))
        ]

    def run(job) -> None:
        layers, ids = job
        out = _fit_and_count(probes, layers, ids, y_pool, l2, rows, device, dtype, tol, max_iter)
        for (i, p), (c, g, k, it) in out.items():
            counts[i, p], gnorm[i, p], conv[i, p], iters[i, p] = c, g, k, it

    if device.type != "cpu":
        for job in jobs:
            run(job)
    else:
        with single_threaded_pool(max(workers, 1), name="layerprobe-logistic") as pool:
            list(pool.map(run, jobs))
    return LogisticResult(counts, gnorm, conv, iters, tol)


def _same_width(train) -> list[list[int]]:
    """Runs of consecutive layers of equal width."""
    runs: list[list[int]] = []
    for i, x in enumerate(train):
        if runs and train[runs[-1][0]].shape[1] == x.shape[1]:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _fit_and_count(probes, layers, ids, y_pool, l2, rows, device, dtype, tol, max_iter):
    """{(layer, probe): (counts (G, L), grad norms (L,), converged (L,), iterations (L,))}."""
    x = torch.stack([torch.as_tensor(probes.train[i]) for i in layers]).to(device)
    idx = torch.as_tensor(np.stack([probes.subsets[p] for p in ids]), device=device)
    xs = x[:, idx].flatten(0, 1)  # (layers * subsets, n, D), layer-major
    ys = y_pool[idx].repeat(len(layers), 1)
    # Features are scored relative to the pool mean, as in the ridge backend: it keeps
    # products free of a large common offset.
    origin = x.to(torch.float64).mean(1, keepdim=True).repeat_interleave(len(ids), dim=0)
    basis = rotate(xs, ys, probes.num_classes, origin=origin)
    del xs
    result = fit(
        basis,
        ys,
        l2,
        num_classes=probes.num_classes,
        product_dtype=dtype,
        tol=tol,
        max_iter=max_iter,
    )
    order = torch.as_tensor(rows.order, device=device)
    out = {}
    for a, i in enumerate(layers):
        z = torch.as_tensor(probes.evals[i]).to(device)[order].to(torch.float64)
        part = slice(a * len(ids), (a + 1) * len(ids))
        z = torch.nn.functional.pad(z[None] - origin[part], (0, 1), value=1.0)  # (k, M, D + 1)
        w = result.weights[part]  # (k, C, L, r)
        k, c, num_l, r = w.shape
        cols = w.to(torch.float64).reshape(k, c * num_l, r).transpose(1, 2)  # class-major
        scores = matmul(matmul(z, basis.lift[part]), cols)
        found, _ = count_correct(scores, rows, num_l)
        for b, p in enumerate(ids):
            j = a * len(ids) + b
            out[(i, p)] = (
                found[b].cpu().numpy(),
                result.grad_norm[j].double().cpu().numpy(),
                result.converged[j].cpu().numpy(),
                result.iterations[j].cpu().numpy(),
            )
    return out
