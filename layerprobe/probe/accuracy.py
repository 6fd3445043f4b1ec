"""Counting correct argmax predictions for every (problem, λ) without an argmax kernel.

Evaluation rows are sorted by label once, so that for the rows of class ``c`` a prediction
is right exactly when ``s_c > max(s_0 … s_{c-1})`` and ``s_c >= max(s_0 … s_{C-1})``: the
same answer as ``argmax`` (which picks the first of tied maxima), computed with one running
elementwise maximum over the classes instead of a strided argmax, which is several times
slower on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MAX_SEGMENTS = 64  # above this many classes in a block, count through argmax instead


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
    def build(cls, labels: np.ndarray, group: np.ndarray, num_groups: int) -> EvalRows:
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        values, starts = np.unique(sorted_labels, return_index=True)
        stops = np.append(starts[1:], len(labels))
        segments = [(int(v), int(a), int(b)) for v, a, b in zip(values, starts, stops, strict=True)]
        member = np.asarray(group)[order][None, :] == np.arange(num_groups)[:, None]
        return cls(order, segments, torch.as_tensor(member))

    def slice(self, start: int, stop: int) -> EvalRows:
        """Rows ``start:stop`` of the sorted order (segments clipped and shifted)."""
        if start == 0 and stop == len(self.order):
            return self
        segments = [
            (label, max(a, start) - start, min(b, stop) - start)
            for label, a, b in self.segments
            if a < stop and b > start
        ]
        return EvalRows(self.order[start:stop], segments, self.groups[:, start:stop])

    def sorted_labels(self) -> np.ndarray:
        """(M,) label of each row, in sorted order."""
        return np.repeat([seg[0] for seg in self.segments], [b - a for _, a, b in self.segments])


def count_correct(
    scores: torch.Tensor, rows: EvalRows, num_l2: int, *, tol: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Correct predictions per group and λ, and the predictions too close to call.

    Parameters
    ----------
    scores : (P, M, C * L) scores of P problems, rows in ``rows.order``, columns class-major.
    rows : the evaluation rows.
    num_l2 : L.
    tol : with tol > 0, also flag every (problem, row, λ) whose own-class score is within
        ``tol * (|own| + |best other|)`` of the best other class: their float32 verdict may
        differ from the exact one.

    Returns
    -------
    counts : (P, G, L) int64 rows whose argmax over classes is their label.
    unsure : (P, M, L) bool flags, or None when tol is 0 or nothing is flagged.
    """
    num_problems, _, width = scores.shape
    num_classes = width // num_l2
    s = scores.view(num_problems, -1, num_classes, num_l2)
    groups = rows.groups.to(torch.float32)
    if len(rows.segments) > MAX_SEGMENTS:
        return _count_by_argmax(s, rows, groups, tol)
    # One pass over the classes keeps, for every row, the best score of the classes other
    # than its own; just before class c is visited, the rows labelled c also note the best
    # of the classes below c, which they must beat strictly (argmax keeps the first maximum).
    # Rows whose label is no class of the scores (never in train) are never right.
    by_label = {label: (start, stop) for label, start, stop in rows.segments}
    others = torch.full_like(s[:, :, 0], -torch.inf)  # (P, M, L)
    own = torch.empty_like(others)
    below = torch.full_like(others, -torch.inf)
    known = torch.zeros(s.shape[1], dtype=torch.bool, device=s.device)  # rows of a train class
    for c in range(num_classes):
        if c in by_label:
            start, stop = by_label[c]
            below[:, start:stop] = others[:, start:stop]
            own[:, start:stop] = s[:, start:stop, c]
            known[start:stop] = True
            for part in (slice(0, start), slice(stop, None)):  # every row but class c's own
                torch.maximum(others[:, part], s[:, part, c], out=others[:, part])
        else:
            torch.maximum(others, s[:, :, c], out=others)
    right = (own > below) & (own >= others) & known[:, None]
    # Counts are summed as float32 matrix products (exact below 2**24 rows).
    counts = (groups @ right.to(torch.float32)).round().to(torch.int64)  # (P, G, L)
    if not tol:
        return counts, None
    unsure = ((own - others).abs() <= tol * (own.abs() + others.abs())) & known[:, None]
    return counts, unsure if unsure.any() else None


def _count_by_argmax(s, rows, groups, tol):
    """Many classes: one strided argmax (the first of tied maxima, as numpy) beats a loop."""
    labels = torch.as_tensor(rows.sorted_labels(), device=s.device)
    right = s.argmax(2) == labels[None, :, None]
    counts = (groups @ right.to(torch.float32)).round().to(torch.int64)
    if not tol:
        return counts, None
    top2 = s.topk(2, dim=2).values  # (P, M, 2, L)
    own = s.gather(2, labels.view(1, -1, 1, 1).expand(s.shape[0], -1, 1, s.shape[3])).squeeze(2)
    best = torch.where(own >= top2[:, :, 0], top2[:, :, 1], top2[:, :, 0])
    unsure = (own - best).abs() <= tol * (own.abs() + best.abs())
    return counts, unsure if unsure.any() else None
