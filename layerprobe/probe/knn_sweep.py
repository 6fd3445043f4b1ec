"""Every k-NN probe of a :class:`ProbeSet`: per layer and block of evaluation rows, one
similarity product with the whole train pool, then per probe one top-k and the votes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from layerprobe.probe.knn import (
    BLOCK_BYTES,
    TEMPERATURE,
    check_ks,
    check_votes,
    normalise,
    predict,
    top_neighbours,
)
from layerprobe.probe.problems import ProbeSet


def sweep(
    probes: ProbeSet,
    ks: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    votes: Sequence[str] = ("majority",),
    temperature: float = TEMPERATURE,
) -> dict[str, np.ndarray]:
    """Correct-prediction counts of every (layer, probe, group, k), per vote.

    Returns
    -------
    {vote: (layers, P, G, K) int64}, k sorted ascending.
    """
    votes = check_votes(votes)
    ks = check_ks(ks, [len(s) for s in probes.subsets])
    kmax = int(ks[-1])
    shape = (len(probes.train), len(probes.subsets), probes.num_groups, len(ks))
    out = {vote: np.zeros(shape, np.int64) for vote in votes}
    y_pool = torch.as_tensor(np.asarray(probes.y_train, np.int64), device=device)
    y_eval = torch.as_tensor(np.asarray(probes.y_eval, np.int64), device=device)
    groups = torch.nn.functional.one_hot(
        torch.as_tensor(np.asarray(probes.eval_group, np.int64), device=device), probes.num_groups
    ).to(torch.float64)  # (M, G)
    subsets = [torch.as_tensor(np.asarray(s, np.int64), device=device) for s in probes.subsets]
    exact = dtype != torch.float64
    for i, (train, evals) in enumerate(zip(probes.train, probes.evals, strict=True)):
        x64 = normalise(torch.as_tensor(train).to(device, torch.float64))
        z64 = normalise(torch.as_tensor(evals).to(device, torch.float64))
        x, z = x64.to(dtype), z64.to(dtype)
        block = max(1, BLOCK_BYTES // (x.shape[0] * x.element_size()))
        for start in range(0, z.shape[0], block):
            rows = slice(start, start + block)
            sims_all = z[rows] @ x.T  # (m, N): every probe's similarities at once
            for p, idx in enumerate(subsets):
                full = len(idx) == x.shape[0] and _is_range(idx)
                sims = sims_all if full else sims_all[:, idx]
                settle = _exact(z64[rows], x64, idx) if exact else None
                sims, nbr = top_neighbours(sims, kmax, ks, exact=settle)
                labels = y_pool[idx][nbr]
                for vote in votes:
                    right = predict(
                        sims,
                        labels,
                        ks,
                        num_classes=probes.num_classes,
                        vote=vote,
                        temperature=temperature,
                    )
                    right = (right == y_eval[rows, None]).to(torch.float64)  # (m, K)
                    counts = (groups[rows].T @ right).round().to(torch.int64)  # (G, K)
                    out[vote][i, p] += counts.cpu().numpy()
    return out


def _exact(z64, x64, idx):
    """rows -> float64 similarities of those evaluation rows to the probe's train rows."""
    return lambda r: z64[r] @ (x64 if len(idx) == len(x64) and _is_range(idx) else x64[idx]).T


def _is_range(idx: torch.Tensor) -> bool:
    return bool((idx == torch.arange(len(idx), device=idx.device)).all())
