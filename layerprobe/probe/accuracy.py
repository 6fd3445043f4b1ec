"""Counting correct argmax predictions for every (problem, λ) without an argmax kernel.

Evaluation rows are sorted by label once, so that for the rows of class ``c`` a prediction
is right exactly when ``s_c > max(s_0 … s_{c-1})`` and ``s_c >= max(s_{c+1} … s_{C-1})``:
the same answer as ``argmax`` (which picks the first of tied maxima), computed with two
vectorised maxima over contiguous class slices instead of a strided argmax, which is
several times slower on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class EvalRows:
    """Evaluation rows (validation and test together) in label order.

    Attributes
    ----------
    order : (M,) permutation that sorts the rows by label (apply it to the features).
    segments : (label, start, stop) of each label's run of rows, in sorted order.
    groups : (G, M) bool, row membership of each group (e.g. validation, test), sorted order.
    """

    order: np.ndarray
    segments: list[tuple[int, int, int]]
    groups: torch.Tensor

    @classmethod
    def build(
        cls, labels: np.ndarray, group: np.ndarray, num_groups: int, device="cpu"
    ) -> EvalRows:
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        values, starts = np.unique(sorted_labels, return_index=True)
        stops = np.append(starts[1:], len(labels))
        segments = [(int(v), int(a), int(b)) for v, a, b in zip(values, starts, stops, strict=True)]
        member = np.asarray(group)[order][None, :] == np.arange(num_groups)[:, None]
        return cls(order, segments, torch.as_tensor(member, device=device))

    @property
    def sizes(self) -> np.ndarray:
        """(G,) number of rows in each group."""
        return self.groups.sum(1).cpu().numpy()


def count_correct(scores: torch.Tensor, rows: EvalRows, num_l2: int) -> torch.Tensor:
    """Correct predictions per group and λ.

    Parameters
    ----------
    scores : (P, M, C * L) scores of P problems, rows in ``rows.order``, columns class-major.
    rows : the evaluation rows.
    num_l2 : L.

    Returns
    -------
    (P, G, L) int64 counts of rows whose argmax over classes is their label.
    """
    num_problems, _, width = scores.shape
    num_classes = width // num_l2
    s = scores.view(num_problems, -1, num_classes, num_l2)
    # Counts are summed as float32 matrix products (exact below 2**24 rows).
    counts = scores.new_zeros((num_problems, rows.groups.shape[0], num_l2), dtype=torch.float32)
    for label, start, stop in rows.segments:
        if label >= num_classes:  # a class the train split never had: never predicted
            continue
        block = s[:, start:stop]  # (P, rows, C, L)
        own = block[:, :, label]
        right = torch.ones_like(own, dtype=torch.bool)
        if label > 0:
            right &= own > block[:, :, :label].amax(2)
        if label + 1 < num_classes:
            right &= own >= block[:, :, label + 1 :].amax(2)
        member = rows.groups[:, start:stop].to(torch.float32)  # (G, rows)
        counts += member @ right.to(torch.float32)  # (G, rows) @ (P, rows, L) -> (P, G, L)
    return counts.round().to(torch.int64)
