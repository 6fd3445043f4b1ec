"""Cosine k-NN probes, batched: one similarity product and one top-k for every k of the grid.

Features are L2-normalised rows (as stored, not standardised; a zero row stays zero, as
scikit-learn's ``normalize``), so the cosine similarity is a dot product. For a block of
evaluation rows, the similarities to a layer's whole train pool come from one matrix
product; each probe (train subset) takes its columns, one ``topk`` for the largest k gives
the neighbours of every k (the k nearest are the first k of the sorted top), and the votes
of every k are prefix sums over the neighbours.

Votes:

- ``majority``: the class with the most of the k neighbours; ties go to the smallest class
  index. This is scikit-learn's ``KNeighborsClassifier(metric="cosine")`` rule (its
  uniform-weight predict takes the argmax of class counts, the first maximum).
- ``weighted``: dinov2's k-NN evaluation: each neighbour votes with weight exp(sim / T),
  T = 0.07 (dinov2 takes a softmax over the neighbours, which only rescales every class's
  total of a row by the same factor); ties go to the smallest class index.

A neighbour set is ambiguous only when the k-th and (k+1)-th similarities tie. With
``float32`` similarities, rows whose gap at any k of the grid is below ``NEAR_TIE`` are
recomputed in float64, so the neighbour sets are those of exact (float64) similarities.
Exact float64 ties are broken by ``torch.topk`` (scikit-learn's choice there is arbitrary too).
"""

from __future__ import annotations

import numpy as np
import torch

# The grid, the votes and their checks live beside the λ grids (no torch needed to check them).
from layerprobe.probe.problems import DEFAULT_KS as DEFAULT_KS
from layerprobe.probe.problems import TEMPERATURE as TEMPERATURE
from layerprobe.probe.problems import VOTES as VOTES
from layerprobe.probe.problems import check_ks as check_ks
from layerprobe.probe.problems import check_votes as check_votes

BLOCK_BYTES = 64 << 20  # similarities of one block of evaluation rows to one train pool
NEAR_TIE = 1e-5  # float32 similarity gaps below this are settled in float64


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x / torch.where(norm == 0, torch.ones_like(norm), norm)


def top_neighbours(
    sims: torch.Tensor, kmax: int, ks: np.ndarray, *, exact=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities and indices (m, kmax) of the kmax most similar train rows, sorted.

    sims : (m, n) similarities of m evaluation rows to n train rows.
    exact : None, or a function ``rows -> (len(rows), n) float64 similarities``: rows whose
        gap between the k-th and (k+1)-th similarity is at most NEAR_TIE for some k of ``ks``
        get their neighbours from those instead.
    """
    top = min(kmax + 1, sims.shape[1])  # one more: the gap after the k-th neighbour
    vals, idx = _topk(sims, top)
    cut = torch.as_tensor(ks[ks < top] - 1, device=sims.device)
    if exact is not None and len(cut):
        rows = ((vals[:, cut] - vals[:, cut + 1]) <= NEAR_TIE).any(1).nonzero().flatten()
        if len(rows):
            v, i = _topk(exact(rows), top)
            vals, idx = vals.clone(), idx.clone()
            vals[rows], idx[rows] = v.to(vals.dtype), i
    return vals[:, :kmax], idx[:, :kmax]


def _topk(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest of each row, sorted descending. On the CPU through numpy's
    ``argpartition`` and a sort of the k (as scikit-learn does): about twice as fast as
    ``torch.topk`` for k = 200 of 2,000 columns. The gathers index the flat arrays (a few
    times faster than ``take_along_axis``)."""
    if sims.device.type != "cpu":
        return sims.topk(k, dim=1)
    a = np.ascontiguousarray(sims.numpy())
    m, n = a.shape
    part = np.argpartition(a, n - k, axis=1)[:, n - k :] if k < n else np.argsort(a, 1)
    vals = a.ravel()[part + (np.arange(m) * n)[:, None]]
    order = np.argsort(-vals, axis=1, kind="stable")
    flat = order + (np.arange(m) * part.shape[1])[:, None]
    return torch.from_numpy(vals.ravel()[flat]), torch.from_numpy(part.ravel()[flat])


def predict(
    sims: torch.Tensor,
    labels: torch.Tensor,
    ks: np.ndarray,
    *,
    num_classes: int,
    vote: str,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """(m, K) predicted classes for every k from the sorted neighbours' similarities (m, kmax)
    and labels (m, kmax): class totals grown k by k (scatter-add of the next neighbours'
    votes), argmax (the first maximum: ties go to the smallest class)."""
    if vote == "weighted":
        # exp(sim / T) relative to the row's best neighbour: the same argmax, no overflow.
        weights = torch.exp((sims - sims[:, :1]) / temperature)
    else:
        weights = torch.ones_like(sims)
    totals = sims.new_zeros((sims.shape[0], num_classes))
    out, done = [], 0
    for k in ks:
        k = int(k)
        totals.scatter_add_(1, labels[:, done:k], weights[:, done:k])
        out.append(totals.argmax(1))
        done = k
    return torch.stack(out, dim=1)
