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
    groups = rows.groups.to(torch.float32)
    if len(rows.segments) > MAX_SEGMENTS:  # many classes: one strided argmax beats a loop
        labels = torch.as_tensor(
            np.repeat(
                [seg[0] for seg in rows.segments], [seg[2] - seg[1] for seg in rows.segments]
            ),
            device=scores.device,
        )
        right = s.argmax(2) == labels[None, :, None]  # first of tied maxima, as numpy
        return (groups @ right.to(torch.float32)).round().to(torch.int64)
    # One pass over the classes keeps a running maximum; just before class c joins it, the
    # rows labelled c check that they beat every earlier class strictly.
    running = s[:, :, 0].clone()  # (P, M, L)
    strict = {}
    by_label = {label: (start, stop) for label, start, stop in rows.segments}
    for c in range(1, num_classes):
        if c in by_label:
            start, stop = by_label[c]
            strict[c] = s[:, start:stop, c] > running[:, start:stop]
        torch.maximum(running, s[:, :, c], out=running)
    # Counts are summed as float32 matrix products (exact below 2**24 rows).
    counts = scores.new_zeros((num_problems, rows.groups.shape[0], num_l2), dtype=torch.float32)
    for label, (start, stop) in by_label.items():
        if label >= num_classes:  # a class the train split never had: never predicted
            continue
        right = s[:, start:stop, label] >= running[:, start:stop]  # ties the overall maximum
        if label in strict:
            right &= strict[label]
        counts += groups[:, start:stop] @ right.to(torch.float32)  # (P, G, L)
    return counts.round().to(torch.int64)
