"""The demo's ladder carries what the study needs (fast: the ladder's definition, no training)."""

from __future__ import annotations

from dataclasses import astuple, replace
from itertools import combinations

from layerprobe.pipelines.demo import LADDER, QUICK_LADDER, SEEDS


def checkpoints(ladder) -> list[tuple]:
    """Every checkpoint a ladder writes, as the run it comes from with the epochs trained."""
    runs = [(r, e) for r in ladder for e in (*r.snapshots, r.epochs)]
    return [astuple(replace(r, name="", snapshots=(), epochs=(r.epochs, e))) for r, e in runs]


def matched_pairs(ladder, knob: str) -> int:
    """Pairs of checkpoints that differ in ``knob`` and in nothing else (schedule included)."""
    fields = [f for f in LADDER[0].__dataclass_fields__ if f != "name"]
    at = fields.index(knob) + 1  # astuple keeps the (blank) name first
    pairs = 0
    for a, b in combinations(checkpoints(ladder), 2):
        differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        pairs += differ == [at]
    return pairs


def test_the_ladder_has_twenty_checkpoints_with_matched_head_knob_pairs_and_three_seeds():
    assert len(checkpoints(LADDER)) >= 20 and SEEDS >= 3
    assert matched_pairs(LADDER, "head_wd") >= 3 and matched_pairs(LADDER, "head_lr_mult") >= 3
    assert len(checkpoints(QUICK_LADDER)) == 8 and matched_pairs(QUICK_LADDER, "head_wd") == 4
    assert set(QUICK_LADDER) <= set(LADDER)  # a quick run's folders are the full demo's
