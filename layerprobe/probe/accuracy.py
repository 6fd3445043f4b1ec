"""Counting correct argmax predictions for every (problem, λ) without an argmax kernel.

Evaluation rows are sorted by label once, so that for the rows of class ``c`` a prediction
is right exactly when ``s_c > max(s_0 … s_{c-1})`` and ``s_c >= max(s_0 … s_{C-1})``: the
same answer as ``argmax`` (which picks the first of tied maxima), computed with one running
elementwise maximum over the classes instead of a strided argmax, which is several times
slower on the CPU.

The count is written once for numpy arrays (the CPU) and torch tensors (CUDA, and the logistic
probes): the operations used have the same meaning in both, or are spelt once in
``arrays.py``; torch is imported only when a tensor is handed over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerprobe.probe.arrays import cast, like, namespace

MAX_SEGMENTS = 64  # above this many classes in a block, count through argmax instead


@dataclass
class EvalRows:
    """Evaluation rows (validation and test together) in label order.

    Attributes
    ----------
    order : (M,) permutation that sorts the rows by label (apply it to the features).
    segments : (label, start, stop) of each label's run of rows, in sorted order.
    groups : (G, M) bool, row membership of each group (e.g. validation, test), sorted order:
        a numpy array, or a torch tensor on the scores' device.
    """

    order: np.ndarray
    segments: list[tuple[int, int, int]]
    groups: np.ndarray

    @classmethod
    def build(cls, labels: np.ndarray, group: np.ndarray, num_groups: int) -> EvalRows:
        labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        values, starts = np.unique(sorted_labels, return_index=True)
        stops = np.append(starts[1:], len(labels))
        segments = [(int(v), int(a), int(b)) for v, a, b in zip(values, starts, stops, strict=True)]
        member = np.asarray(group)[order][None, :] == np.arange(num_groups)[:, None]
        return cls(order, segments, member)

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


def count_correct(scores, rows: EvalRows, num_l2: int, *, tol: float = 0.0):
    """Correct predictions per group and λ, and the predictions too close to call.

    Parameters
    ----------
    scores : (P, M, C * L) scores of P problems, rows in ``rows.order``, columns class-major
        (a numpy array or a torch tensor; the results are of the same kind).
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
    xp = namespace(scores)
    num_problems, _, width = scores.shape
    num_classes = width // num_l2
    s = scores.reshape(num_problems, -1, num_classes, num_l2)
    groups = cast(like(rows.groups, s), "float32")
    if len(rows.segments) > MAX_SEGMENTS:
        return _count_by_argmax(s, rows, groups, tol)
    # One pass over the classes keeps, for every row, the best score of the classes other
    # than its own; just before class c is visited, the rows labelled c also note the best
    # of the classes below c, which they must beat strictly (argmax keeps the first maximum).
    # Rows whose label is no class of the scores (never in train) are never right.
    by_label = {label: (start, stop) for label, start, stop in rows.segments}
    others = xp.full_like(s[:, :, 0], -np.inf)  # (P, M, L)
    own = xp.empty_like(others)
    below = xp.full_like(others, -np.inf)
    known = np.zeros(s.shape[1], dtype=bool)  # rows of a train class
    for c in range(num_classes):
        if c in by_label:
            start, stop = by_label[c]
            below[:, start:stop] = others[:, start:stop]
            own[:, start:stop] = s[:, start:stop, c]
            known[start:stop] = True
            for part in (slice(0, start), slice(stop, None)):  # every row but class c's own
                xp.maximum(others[:, part], s[:, part, c], out=others[:, part])
        else:
            xp.maximum(others, s[:, :, c], out=others)
    known = like(known, s)[:, None]
    right = xp.greater(own, below)  # right = own > below & own >= others & known, in place
    right &= xp.greater_equal(own, others)
    right &= known
    counts = _counts(groups, right)
    if not tol:
        return counts, None
    # unsure = |own - others| <= tol (|own| + |others|), in place on the spent buffers
    xp.abs(own, out=below)
    below += xp.abs(others)
    below *= tol
    others -= own
    xp.abs(others, out=others)
    unsure = xp.less_equal(others, below)
    unsure &= known
    return counts, unsure if unsure.any() else None


def _count_by_argmax(s, rows, groups, tol):
    """Many classes: one strided argmax (the first of tied maxima, as numpy) beats a loop."""
    xp = namespace(s)
    labels = like(rows.sorted_labels(), s)
    right = s.argmax(2) == labels[None, :, None]
    counts = _counts(groups, right)
    if not tol:
        return counts, None
    # The best class other than the row's own: the maximum with the own class masked out.
    mine = np.arange(s.shape[2])[None, :] == rows.sorted_labels()[:, None]  # (M, C)
    best = xp.amax(xp.where(like(mine, s)[None, :, :, None], -np.inf, s), 2)  # (P, M, L)
    own = s[:, like(np.arange(s.shape[1]), s), labels]  # (P, M, L)
    unsure = abs(own - best) <= tol * (abs(own) + abs(best))
    return counts, unsure if unsure.any() else None


def _counts(groups, right):
    """(P, G, L) int64 per-group counts of ``right`` (P, M, L), summed as float32 matrix
    products (exact below 2**24 rows)."""
    return cast(namespace(right).round(groups @ cast(right, "float32")), "int64")
