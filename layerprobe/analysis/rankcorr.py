"""Spearman rank correlation with what a reader needs to believe it: bootstrap intervals and the
partial correlation given a third variable.

Across ~20 tasks one ρ says little on its own (a bootstrap over the demo's tasks spanned
[−0.80, +0.02]), and a fitted e_IR mostly restates the last layer's observed error, so a
correlation of layer depth with e_IR may only be one with last-layer accuracy. Hence:

* :func:`bootstrap_rho` — percentile intervals from resampled pairs (rows drawn with
  replacement), every draw ranked and correlated at once (ranks with ties averaged, then
  Pearson on the ranks: Spearman's definition);
* :func:`partial_spearman` — the correlation of x and y once z's rank is partialled out:
  (r_xy − r_xz·r_yz) / sqrt((1 − r_xz²)(1 − r_yz²)) on ranks, with a t test on n − 3 degrees of
  freedom.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata, spearmanr
from scipy.stats import t as student_t


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(ρ, two-sided p) over the pairs where both are finite; NaN with fewer than 3 pairs or a
    constant variable."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ρ of every row pair of ``x`` and ``y`` (B, n) -> (B,); NaN where a row is constant."""
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of the finite draws; NaN when fewer than half are finite
    (most resamples had a constant variable: the data cannot say)."""
    finite = draws[np.isfinite(draws)]
    if len(finite) < len(draws) / 2 or not len(finite):
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def bootstrap_rho(
    x: np.ndarray, y: np.ndarray, *, draws: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of Spearman's ρ over ``draws`` resamples of the (x, y) pairs.

    Parameters
    ----------
    x, y : (n,) paired values; pairs with a non-finite value are left out first.

    Returns
    -------
    (lo, hi); NaN with fewer than 4 pairs.
    """
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 4:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(x), size=(draws, len(x)))
    return percentile_interval(rowwise_spearman(x[idx], y[idx]), level)


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Spearman correlation of x and y given z, and its two-sided p (t test, n − 3 df).

    NaN with fewer than 4 complete triples or when z explains x or y completely.
    """
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    x, y, z = x[keep], y[keep], z[keep]
    n = len(x)
    if n < 4 or min(np.ptp(x), np.ptp(y), np.ptp(z)) == 0:
        return math.nan, math.nan
    r = np.corrcoef(np.stack([rankdata(x), rankdata(y), rankdata(z)]))  # each ranked once
    r_xy, r_xz, r_yz = r[0, 1], r[0, 2], r[1, 2]
    den = math.sqrt(max((1 - r_xz**2) * (1 - r_yz**2), 0.0))
    if den == 0:
        return math.nan, math.nan
    rho = float(np.clip((r_xy - r_xz * r_yz) / den, -1.0, 1.0))
    if abs(rho) == 1:
        return rho, 0.0
    t = rho * math.sqrt((n - 3) / (1 - rho**2))
    return rho, float(2 * student_t.sf(abs(t), n - 3))
