"""Profile-likelihood intervals for the saturation fit ``e_DS = k · e_US^α + e_IR``.

The confidence region of (k, α, e_IR) is the set of parameters whose sum of squared residuals
(SSE) is within a threshold of the best one:

    SSE(θ) ≤ SSE_min + Δ,   Δ = max(s² · F(level; 1, n − p), σ²_seed · χ²(level; 1)),

with s² = SSE_min / (n − p) the residual variance of the fit and σ²_seed the probe noise (the
mean squared standard error over seeds of the fitted points; 0 without seeds). For one
parameter this is the F-test profile interval (Δ = s²·F equals SSE_min · F / (n − p)); the noise
floor keeps it from collapsing when a few concave hull points fit the curve almost exactly. With
no spare degree of freedom (n ≤ p) and no seed noise, the data say nothing: Δ = ∞.

The region is evaluated exactly on a grid of (e_IR, α): for fixed e_IR and α the model is linear
in k, so the best k ≥ 0 and its SSE are closed-form from four sums per α, and the SSE of every
(e_IR, α) pair costs O(1). Projections of the region give the intervals:

* e_IR: the e_IR values whose best SSE over (k, α) is within the threshold (the minimum
  over the α grid refined by a parabola through its neighbours; linear interpolation at the
  two crossings of the 201-point e_IR grid);
* α: the same over a log grid of α (121 values from 0.01 to 20, steps of 6.5 %);
* k: for each (e_IR, α) inside the region the SSE is a parabola in k, so the k values within the
  threshold are an exact interval there; the union over the region is the k interval.

The grid is evaluated twice: over the whole range, then over a 61 × 61 grid spanning the region
found (plus a margin), so that a narrow region is resolved by many cells; the intervals are the
union of both.

The interval always contains the point estimate and is always reported; where the data do not
determine a parameter it reaches the bounds (e_IR: [0, 1]).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

LEVEL = 0.95
ALPHA_MIN, ALPHA_MAX = 0.01, 20.0
ALPHA_PROFILE = np.geomspace(ALPHA_MIN, ALPHA_MAX, 121)  # steps of 6.5 %
E_IR_PROFILE = np.linspace(0.0, 1.0, 201)  # steps of 0.005
ZOOM_POINTS = 61  # the fine grid over the region, per axis
ZOOM_MARGIN = 1.07  # one coarse α step beyond the region found on the coarse grid


def threshold(sse_min: float, n: int, p: int, *, noise_var: float = 0.0, level: float = LEVEL):
    """Δ: how much SSE above its minimum stays inside the ``level`` confidence region.

    Parameters
    ----------
    sse_min : the best sum of squared residuals (error units²).
    n, p : number of fitted points and of free parameters.
    noise_var : probe noise variance of one point (error units²; 0: unknown).

    Returns
    -------
    Δ (float; ``inf`` when n ≤ p and there is no noise estimate).
    """
    # The quantiles as scipy.stats computes them (chi2.ppf(q, 1) = 2 gammaincinv(1/2, q),
    # f.ppf(q, 1, d) = fdtri(1, d, q)), from scipy.special: importing scipy.stats would add
    # a third of a second to every `layerprobe fit`.
    floor = noise_var * (2.0 * special.gammaincinv(0.5, level)) if noise_var > 0 else 0.0
    if n <= p:
        return floor if floor > 0 else math.inf
    s2 = max(sse_min, 0.0) / (n - p)
    return max(s2 * special.fdtri(1, n - p, level), floor)


def profile_intervals(
    e_us: np.ndarray,
    e_ds: np.ndarray,
    theta: np.ndarray,
    *,
    sse_min: float,
    delta: float,
    with_e_ir: bool = True,
) -> dict[str, float]:
    """Profile-likelihood intervals of k, α and e_IR for one fit (see the module doc).

    Parameters
    ----------
    e_us, e_ds : (N,) US and DS errors of the fitted points (0–1).
    theta : (P,) the point estimate (k, α[, e_IR]); the intervals always contain it.
    sse_min : its SSE (or the best SSE known).
    delta : :func:`threshold`.
    with_e_ir : False for the power law (e_IR fixed at 0).

    Returns
    -------
    dict with k_lo, k_hi, alpha_lo, alpha_hi, e_ir_lo, e_ir_hi.
    """
    e_us, e_ds = np.asarray(e_us, float), np.asarray(e_ds, float)
    theta = np.asarray(theta, float)
    k_hat, a_hat = float(theta[0]), float(theta[1])
    c_hat = float(theta[2]) if with_e_ir else 0.0
    limit = sse_min + delta
    c = E_IR_PROFILE if with_e_ir else np.zeros(1)
    wide = _project(e_us, e_ds, ALPHA_PROFILE, c, limit)
    # Zoom in: a fine grid over the region found (with a margin of one coarse step), so that a
    # narrow region is resolved by many (α, e_IR) cells, not two or three.
    a_lo = max(ALPHA_MIN, min(wide["alpha_lo"], a_hat) / ZOOM_MARGIN)
    a_hi = min(ALPHA_MAX, max(wide["alpha_hi"], a_hat) * ZOOM_MARGIN)
    if with_e_ir:
        step = E_IR_PROFILE[1]
        c_lo = max(0.0, min(wide["e_ir_lo"], c_hat) - 2 * step)
        c_hi = min(1.0, max(wide["e_ir_hi"], c_hat) + 2 * step)
        c = np.linspace(c_lo, c_hi, ZOOM_POINTS)
    near = _project(e_us, e_ds, np.geomspace(a_lo, a_hi, ZOOM_POINTS), c, limit)
    out = {}
    for name, est in (("k", k_hat), ("alpha", a_hat), ("e_ir", c_hat)):
        los = [v for v in (wide[f"{name}_lo"], near[f"{name}_lo"]) if math.isfinite(v)]
        his = [v for v in (wide[f"{name}_hi"], near[f"{name}_hi"]) if math.isfinite(v)]
        out[f"{name}_lo"] = min([*los, est])
        out[f"{name}_hi"] = max([*his, est])
    return out


def _project(e_us, e_ds, alphas, c, limit) -> dict[str, float]:
    """The projections of {(k, α, e_IR): SSE ≤ limit} on each axis, from the grid ``alphas``
    (A,) × ``c`` (G,) of (α, e_IR) values (each end NaN when no cell is inside)."""
    z = np.power(e_us[None, :], alphas[:, None])  # (A, N)
    szz = np.maximum((z * z).sum(1), 1e-300)[:, None]  # (A, 1)
    sz, sze = z.sum(1)[:, None], (z * e_ds).sum(1)[:, None]
    n, se, see = len(e_ds), e_ds.sum(), (e_ds * e_ds).sum()
    szy = sze - c[None, :] * sz  # (A, G): Σ z·(e − c)
    syy = see - 2 * c * se + n * c * c  # (G,): Σ (e − c)²
    sse = syy[None, :] - np.maximum(szy, 0.0) ** 2 / szz  # best k ≥ 0 at each (α, c)
    inside = sse <= limit
    out: dict[str, float] = {}
    if len(c) > 2:
        out["e_ir_lo"], out["e_ir_hi"] = _interval(c, _parabolic_min(sse), limit)
    else:
        out["e_ir_lo"], out["e_ir_hi"] = (float(c[0]),) * 2 if inside.any() else (math.nan,) * 2
    log_a = np.log(alphas)
    lo, hi = _interval(log_a, _parabolic_min(sse.T) if len(c) > 2 else sse[:, 0], limit)
    out["alpha_lo"], out["alpha_hi"] = math.exp(lo), math.exp(hi)
    if inside.any():
        k_best = szy / szz
        s_free = syy[None, :] - szy**2 / szz  # the parabola's minimum (k unconstrained)
        r = np.sqrt(np.maximum(limit - s_free, 0.0) / szz)
        out["k_lo"] = float(np.where(inside, np.maximum(k_best - r, 0.0), np.inf).min())
        out["k_hi"] = float(np.where(inside, k_best + r, -np.inf).max())
    else:
        out["k_lo"] = out["k_hi"] = math.nan
    return out


def _parabolic_min(values: np.ndarray) -> np.ndarray:
    """Per column of ``values`` (R, C), its minimum over the rows, refined by the vertex of the
    parabola through the smallest value and its two neighbours (evenly spaced rows)."""
    i = np.clip(np.argmin(values, axis=0), 1, len(values) - 2)
    cols = np.arange(values.shape[1])
    a, b, c = values[i - 1, cols], values[i, cols], values[i + 1, cols]
    best = values.min(0)
    curve = a - 2 * b + c
    vertex = b - (c - a) ** 2 / np.where(curve > 0, 8 * curve, np.inf)
    return np.maximum(np.minimum(best, vertex), 0.0)


def _interval(grid: np.ndarray, profile: np.ndarray, limit: float) -> tuple[float, float]:
    """The range of ``grid`` where ``profile`` ≤ ``limit``, with the ends interpolated linearly
    between the last point inside and the first outside; (nan, nan) when no point is inside."""
    inside = np.flatnonzero(profile <= limit)
    if len(inside) == 0:
        return math.nan, math.nan
    i, j = int(inside[0]), int(inside[-1])

    def cross(a: int, b: int) -> float:  # a inside, b outside
        fa, fb = profile[a], profile[b]
        t = (limit - fa) / (fb - fa) if fb > fa else 0.0
        return float(grid[a] + t * (grid[b] - grid[a]))

    lo = cross(i, i - 1) if i > 0 else float(grid[0])
    hi = cross(j, j + 1) if j < len(grid) - 1 else float(grid[-1])
    return lo, hi
