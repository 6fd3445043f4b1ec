"""Saturation fits: DS error as a function of US error (the paper's Eq. 1).

On errors (e = 1 − accuracy) the paper models ``e_DS = k · e_US^α + e_IR`` with k > 0, α > 0 and
0 ≤ e_IR ≤ 1: as US error goes to 0, DS error goes to e_IR, so ``1 − e_IR`` is the DS accuracy
the task saturates at. The special case without e_IR, ``e_DS = k · e_US^α`` (a plain power law),
never saturates; both are ``Form``s here so they can be compared on the same points.

Per (upstream task, DS task, shots, probe[, group]) we fit the curve to the rising part of the
upper hull of the checkpoints' points (or to all of them), by bounded least squares on DS error
(scipy ``least_squares``, trust region reflective), started from the best point of a grid over α
(for fixed α the model is linear in k and e_IR, so each grid point is a closed-form solve).
We report:

* whether the data determine e_IR (``status``, see :data:`STATUSES`), and every reason they do
  not (``reasons``);
* profile-likelihood intervals of k, α, e_IR and the saturation value
  (:mod:`layerprobe.analysis.profile`), with the probe noise over seeds as a floor on the residual
  variance, and for a hull fit united with those without the hull's leftmost point (which the
  hull keeps whatever its accuracy) — always reported, up to [0, 1] for e_IR where the data say
  nothing;
* the fitting error: RMSE (accuracy units) of the curve on the points it was fitted to;
* the prediction error: hold out the checkpoints of highest US accuracy (at least
  :data:`MIN_HELDOUT`), fit ``hull`` and ``all`` on the rest, and score both on the same
  held-out points — those on the upper hull of all points, the frontier the curve stands for;
* optionally (``bootstrap > 0``) percentile-bootstrap intervals in ``*_boot_lo``/``*_boot_hi``
  columns. They are NOT calibrated: on known curves they covered the true e_IR 0–87 % of the
  time instead of 95 %; the profile intervals are the ones to read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from layerprobe.analysis.config import MAX_WIDTH, MIN_HELDOUT, POINTS, AnalysisConfig
from layerprobe.analysis.hull import rising_frontier, rising_hull, upper_hull
from layerprobe.analysis.points import GROUP, KNOBS, POINT_COLUMNS, checkpoint_points
from layerprobe.analysis.profile import ALPHA_MAX, ALPHA_MIN, profile_intervals, threshold
from layerprobe.errors import ConfigError, DataError
from layerprobe.runtime.atomic import atomic_path
from layerprobe.runtime.warn import warn as warn_user

TINY = 1e-9  # k > 0: its lower bound
# α in [0.01, 20]: e_US^0.01 is nearly constant and e_US^20 nearly 0 over any US range, so α
# beyond either bound only means "no signal" (status alpha_at_bound).
ALPHA_GRID = np.geomspace(ALPHA_MIN, ALPHA_MAX, 113)  # steps of 7 %
# The store columns a fit reads (``read_selected(DIR, columns=READ_COLUMNS)``).
READ_COLUMNS = (*POINT_COLUMNS, "backend")
CI = (2.5, 97.5)
MIN_POINTS = 3  # fewer distinct fit points: no fit at all (the group is skipped with a warning)
# The probe-noise floor of the residual variance is this many times the mean squared standard
# error over seeds: the hull picks the highest of nearby noisy checkpoints, so its points are
# off the curve by more than one point's noise. 2 is what held the 95 % intervals' coverage on
# known curves (benchmarks/fit_coverage.py: e_IR coverage over ``ok`` fits 88 % with 1, 94 %
# with 2, about the same with 3).
NOISE_FACTOR = 2.0
K_ZERO = 1e-6  # k at or below this is k = 0 (its bound)
# Why a fit does not determine e_IR, in the order ``status`` names the first that applies.
STATUSES = {
    "convex_frontier": "the hull keeps at most p + 1 points although the rising frontier has "
    "p + 2 or more: the frontier is convex (α < 1 in accuracy), so the hull drops it",
    "few_points": "at most p + 1 fitted points (p parameters): no spare degree of freedom to "
    "judge the fit by",
    "k_zero": f"k at its lower bound (≤ {K_ZERO:g}): the best curve is flat",
    "no_rise": "a flat line (DS constant) fits within the 95 % threshold of the best SSE: the "
    "data show no rise of DS with US beyond noise",
    "alpha_at_bound": f"α or an end of its 95 % interval within 1 % of a bound ({ALPHA_MIN:g} "
    f"or {ALPHA_MAX:g}): the data do not bound α",
    "below_data": "the ceiling's 95 % upper end (1 − e_ir_lo) is below the best observed DS "
    "accuracy",
    "wide_interval": f"the 95 % interval of e_IR is wider than {MAX_WIDTH:g} (max_width)",
    "not converged": "the least-squares fit did not converge",
}


@dataclass(frozen=True)
class Form:
    """A functional form e_DS = f(e_US; θ) with bounds on θ."""

    name: str
    params: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __call__(self, e_us: np.ndarray, theta: np.ndarray) -> np.ndarray:
        k, alpha = theta[0], theta[1]
        e_ir = theta[2] if len(theta) > 2 else 0.0
        return k * np.power(e_us, alpha) + e_ir

    def jacobian(self, e_us: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """(N, P) derivatives of f with respect to θ."""
        k, alpha = theta[0], theta[1]
        z = np.power(e_us, alpha)
        cols = [z, k * z * np.log(np.maximum(e_us, 1e-300))]
        if len(self.params) > 2:
            cols.append(np.ones_like(e_us))
        return np.stack(cols, axis=1)

    def profile(self, e_us, e_ds, alphas, *, w=None):
        """Exact bounded least squares of k (and e_IR) at fixed α, for a batch of point sets.

        Parameters
        ----------
        e_us, e_ds : (B, N) errors of B point sets (padded); w : (B, N) 1 for a real point, 0
            for padding (default: all 1).
        alphas : (B, A) or (A,) values of α to solve at.

        Returns
        -------
        ((B, A, P) θ, (B, A) sum of squared residuals).

        For fixed α the model is linear, k·z + e_IR with z = e_US^α, and the bounds make it a
        small convex QP: its solution is the unconstrained one when that is feasible, else the
        best solution on a boundary (e_IR = 0, e_IR = 1 or k = 0), each closed-form.
        """
        w = np.ones_like(e_us) if w is None else w
        alphas = np.broadcast_to(alphas, (len(e_us), np.shape(alphas)[-1]))
        z = np.power(e_us[:, None, :], alphas[:, :, None])  # (B, A, N)
        e, ww = e_ds[:, None, :], w[:, None, :]

        def total(x):
            return (ww * x).sum(-1)

        n = np.maximum(w.sum(-1), 1.0)[:, None]  # (B, 1)
        zz, ze = np.maximum(total(z * z), 1e-300), total(z * e)
        k_only = np.maximum(ze / zz, TINY)  # e_IR = 0
        if len(self.params) == 2:
            sse = total((k_only[..., None] * z - e) ** 2)
            return np.stack([k_only, alphas], -1), sse
        mz, me = total(z) / n, (w * e_ds).sum(-1)[:, None] / n  # (B, A), (B, 1)
        var = np.maximum(zz / n - mz * mz, 1e-300)
        k_free = (ze / n - mz * me) / var
        ones = np.ones_like(k_free)
        candidates = [  # (k, e_IR) pairs, each (B, A)
            (k_free, me - k_free * mz),
            (k_only, 0 * ones),
            (np.maximum((ze - total(z)) / zz, TINY), ones),  # e_IR = 1
            (TINY * ones, np.clip(me, 0, 1) * ones),  # k = 0
        ]
        best_sse = np.full(k_free.shape, np.inf)
        theta = np.zeros((*k_free.shape, 3))
        for i, (k, e_ir) in enumerate(candidates):
            sse = total((k[..., None] * z + e_ir[..., None] - e) ** 2)
            if i == 0:  # the unconstrained solution counts only where it is feasible
                sse = np.where((k >= TINY) & (e_ir >= 0) & (e_ir <= 1), sse, np.inf)
            better = sse < best_sse
            best_sse = np.where(better, sse, best_sse)
            theta[better] = np.stack([k, alphas, e_ir], -1)[better]
        return theta, best_sse

    def start(self, e_us, e_ds, w=None):
        """The best θ over α for each of a batch of point sets ((B, N), or (N,) for one): a
        coarse log grid, then a fine grid between the best point's neighbours (α to about
        0.1 %), each solved exactly by :meth:`profile`. Returns (B, P) θ (or (P,))."""
        single = np.ndim(e_us) == 1
        e_us, e_ds = np.atleast_2d(e_us), np.atleast_2d(e_ds)
        w = np.ones_like(e_us) if w is None else np.atleast_2d(w)
        # Batches of at most ~4 M (set, α, point) elements keep the temporaries small.
        step = max(1, 4_000_000 // (len(ALPHA_GRID) * e_us.shape[1]))
        if len(e_us) > step:
            parts = [
                self.start(e_us[i : i + step], e_ds[i : i + step], w[i : i + step])
                for i in range(0, len(e_us), step)
            ]
            return np.concatenate(parts)
        _, sse = self.profile(e_us, e_ds, ALPHA_GRID, w=w)
        i = np.argmin(sse, axis=1)
        lo = ALPHA_GRID[np.maximum(i - 1, 0)]
        hi = ALPHA_GRID[np.minimum(i + 1, len(ALPHA_GRID) - 1)]
        fine = np.exp(np.linspace(np.log(lo), np.log(hi), 65, axis=1))  # (B, 65)
        theta, sse = self.profile(e_us, e_ds, fine, w=w)
        best = theta[np.arange(len(theta)), np.argmin(sse, axis=1)]
        best = np.clip(best, self.lower, self.upper)
        return best[0] if single else best

    def saturation(self, theta: np.ndarray) -> float:
        """DS accuracy at 100 % US accuracy: 1 − e_IR (1 for a form without e_IR)."""
        return 1.0 - (theta[2] if len(theta) > 2 else 0.0)


FORMS = {
    "eq1": Form("eq1", ("k", "alpha", "e_ir"), (TINY, ALPHA_MIN, 0.0), (np.inf, ALPHA_MAX, 1.0)),
    "power": Form("power", ("k", "alpha"), (TINY, ALPHA_MIN), (np.inf, ALPHA_MAX)),
}


@dataclass(frozen=True)
class CurveFit:
    theta: np.ndarray
    converged: bool
    rmse: float  # on the fitted points, accuracy units


def get_form(name: str | Form) -> Form:
    if isinstance(name, Form):
        return name
    if name not in FORMS:
        raise ConfigError(f"unknown fit form {name!r}; use one of {', '.join(FORMS)}")
    return FORMS[name]


def fit_curve(
    us: np.ndarray,
    ds: np.ndarray,
    form: str | Form = "eq1",
    *,
    max_evals: int | None = None,
    polish: bool = True,
) -> CurveFit:
    """Bounded least-squares fit of ``form`` to accuracies ``us``, ``ds`` ((N,), 0–1), on errors.

    ``polish=False`` returns the grid-profile solution (:meth:`Form.start`) without scipy's
    trust-region polish (α to about 0.1 %).
    """
    form = get_form(form)
    e_us, e_ds = 1.0 - np.asarray(us, float), 1.0 - np.asarray(ds, float)
    theta0 = form.start(e_us, e_ds)
    if not polish:
        residual = form(e_us, theta0) - e_ds
        return CurveFit(theta0, True, float(np.sqrt(np.mean(residual**2))))
    result = least_squares(
        lambda t: form(e_us, t) - e_ds,
        theta0,
        jac=lambda t: form.jacobian(e_us, t),
        bounds=(form.lower, form.upper),
        method="trf",
        max_nfev=max_evals,
    )
    theta = result.x
    ok = bool(result.status > 0 and np.all(np.isfinite(theta)) and np.isfinite(result.cost))
    rmse = float(np.sqrt(np.mean(result.fun**2))) if ok else math.nan
    start_rmse = float(np.sqrt(np.mean((form(e_us, theta0) - e_ds) ** 2)))
    if ok and start_rmse < rmse:  # the polish never makes the grid's best solution worse
        theta, rmse = theta0, start_rmse
    return CurveFit(theta, ok, rmse)


def predict(form: str | Form, theta: np.ndarray, us: np.ndarray) -> np.ndarray:
    """DS accuracy the curve ``θ`` gives at US accuracy ``us``."""
    return 1.0 - get_form(form)(1.0 - np.asarray(us, float), np.asarray(theta, float))


def fit_indices(
    us: np.ndarray, ds: np.ndarray, points: str, *, presorted: bool = False
) -> np.ndarray:
    """Which points a fit uses: the rising part of the upper hull (up to the best DS point; see
    :func:`layerprobe.analysis.hull.rising_hull`), or all of them."""
    return rising_hull(us, ds, presorted) if points == "hull" else np.arange(len(us))


def holdout_split(
    us: np.ndarray, ds: np.ndarray, holdout: float, *, n_params: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which checkpoints the prediction error holds out, and which of them it is scored on.

    Parameters
    ----------
    us, ds : (N,) US and DS accuracy (ties in US are broken by position: pass a fixed order).
    holdout : a fraction in (0, 1) of the checkpoints (at least :data:`MIN_HELDOUT`), a count
        (an integer ≥ :data:`MIN_HELDOUT`), or 0 (none).
    n_params : parameters of the form; at least n_params + 2 checkpoints stay for training.

    Returns
    -------
    (train, held, targets): sorted int indices. ``held`` are the checkpoints of highest US
    accuracy; ``targets`` those of them on the upper hull of all points (the frontier the curve
    stands for), the points both the ``hull`` and the ``all`` fit are scored on. While fewer
    than :data:`MIN_HELDOUT` held-out points are targets, the next-highest checkpoint is held
    out too, as long as n_params + 2 stay for training.
    """
    n = len(us)
    if holdout <= 0 or n == 0:
        return np.arange(n), np.zeros(0, int), np.zeros(0, int)
    want = int(round(holdout)) if holdout >= 1 else max(MIN_HELDOUT, math.ceil(holdout * n))
    order = np.argsort(us, kind="stable")[::-1]  # highest US first
    on_hull = np.zeros(n, bool)
    on_hull[upper_hull(us, ds)] = True
    cap = max(n - (n_params + 2), 0)
    n_hold = min(want, cap)
    while n_hold < cap and on_hull[order[:n_hold]].sum() < MIN_HELDOUT:
        n_hold += 1
    held = np.sort(order[:n_hold])
    train = np.sort(order[n_hold:])
    return train, held, held[on_hull[held]]


def prediction_error(
    us: np.ndarray,
    ds: np.ndarray,
    holdout: float,
    *,
    points: str,
    form: Form,
    max_evals: int | None = None,
) -> tuple[float, int]:
    """RMSE (accuracy units) of a ``points`` fit on the lower-US checkpoints at the held-out
    frontier points (:func:`holdout_split`), and how many points it rests on; NaN when the
    training part has fewer than 3 fit points or there is no target."""
    form = get_form(form)
    train, _, targets = holdout_split(us, ds, holdout, n_params=len(form.params))
    if len(targets) == 0:
        return math.nan, 0
    x, y = us[train], ds[train]
    use = fit_indices(x, y, points)
    if len(np.unique(x[use])) < MIN_POINTS:
        return math.nan, len(targets)
    fit = fit_curve(x[use], y[use], form, max_evals=max_evals)
    err = predict(form, fit.theta, us[targets]) - ds[targets]
    return float(np.sqrt(np.mean(err**2))), len(targets)


def fit_group(
    us: np.ndarray,
    ds: np.ndarray,
    config: AnalysisConfig | None = None,
    *,
    ds_se: np.ndarray | None = None,
    max_evals: int | None = None,
    **options,
) -> dict | None:
    """Fit one group of checkpoint points; None when it has fewer than 3 distinct fit points.

    Parameters
    ----------
    us, ds : (N,) US and DS accuracy of each checkpoint (0–1).
    config : the analysis options (:class:`~layerprobe.analysis.config.AnalysisConfig`; its
        ``form``, ``points``, ``holdout_top``, ``bootstrap``, ``seed`` and ``max_width`` apply).
    ds_se : (N,) standard error over seeds of each DS accuracy (default: unknown, no noise
        floor); the mean of its square over the fitted points floors the residual variance.
    max_evals : as for :func:`fit_saturation`.
    **options : fields of ``config`` to replace (e.g. ``form="power"``, ``holdout_top=0``).

    Returns
    -------
    dict of the fit-table columns (see :func:`fit_saturation`).
    """
    config = AnalysisConfig.build(config, **options)
    form, points, holdout_top = get_form(config.form), config.points, config.holdout_top
    bootstrap, seed, max_width = config.bootstrap, config.seed, config.max_width
    us, ds = np.asarray(us, float), np.asarray(ds, float)
    use = fit_indices(us, ds, points)
    if len(np.unique(us[use])) < MIN_POINTS:
        return None
    x, y = us[use], ds[use]
    n_par = len(form.params)
    fit = fit_curve(x, y, form, max_evals=max_evals)
    # The intervals of a fit that did not converge come from the grid solution.
    theta = fit.theta if fit.converged else fit_curve(x, y, form, polish=False).theta
    e_us, e_ds = 1.0 - x, 1.0 - y
    sse = float(np.sum((form(e_us, theta) - e_ds) ** 2))
    se = np.asarray(ds_se, float)[use] if ds_se is not None else np.zeros(0)
    se = se[np.isfinite(se)]
    noise_var = NOISE_FACTOR * float(np.mean(se**2)) if len(se) else 0.0
    delta = threshold(sse, len(use), n_par, noise_var=noise_var)
    iv = profile_intervals(e_us, e_ds, theta, sse_min=sse, delta=delta, with_e_ir=n_par > 2)
    if points == "hull" and len(use) > n_par + 1:
        iv = _free_left_end(iv, x, y, form=form, noise_var=noise_var)
    best = int(np.argmax(ds))
    estimate = theta if fit.converged else np.full(n_par, np.nan)
    row = {
        "form": form.name,
        "points": points,
        "n_checkpoints": len(us),
        "n_fit": len(use),
        "n_points": len(use),
        "converged": fit.converged,
    }
    reasons = _reasons(us, ds, x, theta, sse, delta, iv, points, n_par, max_width)
    if not fit.converged:
        reasons.append("not converged")
    row["status"] = reasons[0] if reasons else "ok"
    row["reasons"] = ",".join(reasons)
    row.update(_params(form, estimate))
    row["saturation"] = form.saturation(estimate)
    row.update(iv)
    row["saturation_lo"], row["saturation_hi"] = 1.0 - iv["e_ir_hi"], 1.0 - iv["e_ir_lo"]
    row["interval"] = "profile"
    row["fit_error"] = fit.rmse
    row["noise_se"] = math.sqrt(noise_var)
    row.update(_prediction(us, ds, holdout_top, points, form, max_evals))
    row["best_us"] = float(us[best])
    row["best_ds"] = float(ds[best])
    row["gap_to_saturation"] = row["saturation"] - row["best_ds"]
    if bootstrap:
        row.update(_bootstrap(us, ds, form, points, holdout_top, bootstrap, seed))
    return row


def _free_left_end(iv: dict, x: np.ndarray, y: np.ndarray, *, form: Form, noise_var: float):
    """The intervals ``iv`` of a hull fit united with those of the fit without the hull's
    leftmost point (x, y: the fitted hull points by increasing US accuracy).

    Why: the upper hull always keeps its leftmost (lowest-US) point, whatever its DS accuracy;
    every other vertex is there because it stands above its neighbours' chord. A checkpoint below
    the frontier at the low-US end bends the hull there, which the error model (points on the
    curve plus probe noise) does not describe, so the k and α intervals were too narrow. The
    honest error model gives that one point a one-sided term (on the frontier or below it); the
    union of the profile regions with and without the point is a conservative stand-in for it.
    Chosen by measurement (benchmarks/fit_coverage.py, seeds 0 and 1, its main and held-out panels; see
    docs/fit-coverage.md): k coverage over ``ok`` fits went from 75–76 % to 93–95 % and α from 85–87 %
    to 94–96 %, at the cost of 8–10 points of ``ok`` where e_IR is determined (63 % left on the
    main panel, 75–80 % on the held-out one). Uniting only where the point lies below the curve
    of the others kept 2–4 points more ``ok`` but covered k 90–93 % (one run 89.6 %); also
    freeing the rightmost point (the best DS point) covered 99 % but left 51 % ``ok``.
    """
    rest_us, rest_ds = 1.0 - x[1:], 1.0 - y[1:]
    theta = fit_curve(x[1:], y[1:], form, polish=False).theta  # the grid solution
    sse = float(np.sum((form(rest_us, theta) - rest_ds) ** 2))
    n_par = len(form.params)
    delta = threshold(sse, len(rest_us), n_par, noise_var=noise_var)
    free = profile_intervals(rest_us, rest_ds, theta, sse_min=sse, delta=delta, with_e_ir=n_par > 2)
    return {key: (min if key.endswith("_lo") else max)(iv[key], free[key]) for key in iv}


def _reasons(us, ds, x, theta, sse, delta, iv, points, n_par, max_width) -> list[str]:
    """Every reason (:data:`STATUSES`) why the fit does not determine e_IR, in that order."""
    out = []
    n = len(x)
    if points == "hull" and n <= n_par + 1 and len(rising_frontier(us, ds)) >= n_par + 2:
        out.append("convex_frontier")
    if n <= n_par + 1:
        out.append("few_points")
    k, alpha = float(theta[0]), float(theta[1])
    if k <= K_ZERO:
        out.append("k_zero")
    e_ds = 1.0 - ds[fit_indices(us, ds, points)]
    if float(np.sum((e_ds - e_ds.mean()) ** 2)) <= sse + delta:
        out.append("no_rise")
    a_lo, a_hi = min(alpha, iv["alpha_lo"]), max(alpha, iv["alpha_hi"])
    if a_hi >= ALPHA_MAX / 1.01 or a_lo <= ALPHA_MIN * 1.01:
        out.append("alpha_at_bound")
    if 1.0 - iv["e_ir_lo"] < float(np.max(ds)):
        out.append("below_data")
    if iv["e_ir_hi"] - iv["e_ir_lo"] > max_width:
        out.append("wide_interval")
    return out


def _prediction(us, ds, holdout, points, form, max_evals) -> dict:
    """Prediction errors of the ``hull`` and the ``all`` fit on the same held-out points."""
    train, held, targets = holdout_split(us, ds, holdout, n_params=len(form.params))
    out = {"holdout": holdout, "n_heldout": len(held), "n_targets": len(targets)}
    for mode in POINTS:
        out[f"pred_error_{mode}"] = (
            prediction_error(us, ds, holdout, points=mode, form=form, max_evals=max_evals)[0]
            if len(targets)
            else math.nan
        )
        out[f"n_train_{mode}"] = len(fit_indices(us[train], ds[train], mode))
    out["pred_error"] = out[f"pred_error_{points}"]
    return out


def _params(form: Form, theta: np.ndarray) -> dict:
    """θ as k, alpha, e_ir columns (e_ir = 0 for forms without it)."""
    out = dict(zip(form.params, (float(t) for t in theta), strict=True))
    out.setdefault("e_ir", 0.0 if np.all(np.isfinite(theta)) else math.nan)
    return out


BOOT = ("k", "alpha", "e_ir", "saturation", "fit_error", "pred_error")


def _bootstrap(us, ds, form, points, holdout, n, seed) -> dict:
    """Percentile intervals from ``n`` resamples of the checkpoints (with replacement), in
    ``*_boot_lo``/``*_boot_hi`` columns: NOT calibrated (see the module doc), kept as an option.

    Each resample's fit points (its hull) are padded into one batch and solved together by the
    grid profile (:meth:`Form.start`), without the scipy polish of the point estimate.
    """
    rng = np.random.default_rng(seed)
    # Sorted by US, then DS descending: a sorted resample of indices is sorted too, so each
    # resample's hull skips its sort.
    order = np.lexsort((-ds, us))
    us, ds = us[order], ds[order]
    train, _, targets = holdout_split(us, ds, holdout, n_params=len(form.params))
    full, part = [], []  # per resample: (US, DS) of its fit points
    for _ in range(n):
        idx = np.sort(rng.integers(0, len(us), len(us)))
        full.append(_fit_set(us[idx], ds[idx], points))
        if len(train) and len(targets):
            draw = train[np.sort(rng.integers(0, len(train), len(train)))]
            part.append(_fit_set(us[draw], ds[draw], points))
    draws = {}
    theta, rmse = _batch_fit(full, form)
    for j, name in enumerate(form.params):
        draws[name] = theta[:, j]
    draws["e_ir"] = theta[:, 2] if len(form.params) > 2 else np.zeros(len(theta))
    draws["saturation"] = 1.0 - draws["e_ir"]
    draws["fit_error"] = rmse
    theta_p, _ = _batch_fit(part, form)
    pred = [predict(form, t, us[targets]) - ds[targets] for t in theta_p]
    draws["pred_error"] = np.array([np.sqrt(np.mean(e**2)) for e in pred])
    out = {"n_bootstrap": len(theta)}
    for name in BOOT:
        values = np.asarray(draws[name], float)
        lo, hi = np.percentile(values, CI) if len(values) >= 2 else (math.nan, math.nan)
        out[f"{name}_boot_lo"], out[f"{name}_boot_hi"] = float(lo), float(hi)
    return out


def _fit_set(x: np.ndarray, y: np.ndarray, points: str):
    """The points a fit of (x, y) (sorted by x, then y descending) uses, or None when fewer
    than 3 distinct ones."""
    use = fit_indices(x, y, points, presorted=True)
    return (x[use], y[use]) if len(np.unique(x[use])) >= MIN_POINTS else None


def _batch_fit(sets: list, form: Form) -> tuple[np.ndarray, np.ndarray]:
    """Fit every non-None (US, DS) set at once; ((S, P) θ, (S,) RMSE) of those S sets."""
    sets = [s for s in sets if s is not None]
    if not sets:
        return np.zeros((0, len(form.params))), np.zeros(0)
    width = max(len(x) for x, _ in sets)
    e_us, e_ds, w = np.ones((3, len(sets), width))
    w[:] = 0
    for i, (x, y) in enumerate(sets):
        e_us[i, : len(x)], e_ds[i, : len(x)], w[i, : len(x)] = 1 - x, 1 - y, 1
    theta = form.start(e_us, e_ds, w)
    residual = np.stack([form(e_us[i], t) for i, t in enumerate(theta)]) - e_ds
    rmse = np.sqrt((w * residual**2).sum(1) / w.sum(1))
    return theta, rmse


def fit_points(
    checkpoints: pd.DataFrame,
    config: AnalysisConfig,
    *,
    warn: Callable[[str], None] | None = None,
    max_evals: int | None = None,
) -> pd.DataFrame:
    """Fit every (upstream task, task, shots, probe[, group]) group of checkpoint points.

    Parameters
    ----------
    checkpoints : :func:`layerprobe.analysis.points.checkpoint_points`' table (one row per
        checkpoint and group), with a ``group`` column when each group (for example each
        architecture family) gets its own hull (see :func:`with_groups`).
    config : the analysis options (:func:`fit_saturation` builds them from its keywords); its
        ``layer`` names the layer choice the table was made with (the ``layer`` column of the
        result).
    warn : where warnings go (default: stderr); groups with fewer than 3 distinct fit points
        are skipped with a warning.
    max_evals : as for :func:`fit_saturation`.

    Returns
    -------
    The fit table of :func:`fit_saturation`.
    """
    if "group" not in checkpoints.columns:
        checkpoints = checkpoints.assign(group="")
    keys = [*GROUP, "group"]
    rows = []
    for key, part in checkpoints.groupby(keys, sort=True, observed=True):
        part = part.sort_values(["us", "model_key"], kind="stable")
        se = part["ds_se"].to_numpy(float) if "ds_se" in part.columns else None
        us, ds = part["us"].to_numpy(float), part["ds"].to_numpy(float)
        row = fit_group(us, ds, config, ds_se=se, max_evals=max_evals)
        label = _label(key)
        if row is None:
            n = len(fit_indices(us, ds, config.points))
            _warn(
                warn, f"{label}: only {n} {config.points} point(s), need {MIN_POINTS}; not fitted"
            )
            continue
        if not row["converged"]:
            _warn(warn, f"{label}: the fit did not converge")
        rows.append({**dict(zip(keys, key, strict=True)), "layer": config.layer, **row})
    columns = FIT_COLUMNS + (BOOT_COLUMNS if config.bootstrap else [])
    return pd.DataFrame(rows, columns=columns)


def group_by_columns() -> list[str]:
    """The store columns ``--group-by`` can name (checkpoint properties of the analysis schema)."""
    from layerprobe.results.read import ANALYSIS_SCHEMA

    return [c for c in ("model", *KNOBS, "upstream_task") if c in ANALYSIS_SCHEMA.names]


def check_group_by(column: str | None, available) -> None:
    """Raise :class:`ConfigError` when ``column`` is not one of ``available``."""
    if column is not None and column not in set(available):
        raise ConfigError(
            f"--group-by {column!r}: no such column in the results; use one of "
            f"{', '.join(sorted(map(str, available)))}"
        )


def with_groups(points: pd.DataFrame, table: pd.DataFrame, column: str) -> pd.DataFrame:
    """``points`` with a ``group`` column: each checkpoint's value of ``column`` in ``table``.

    Raises :class:`ConfigError` when the column is missing or varies within a checkpoint (it
    must describe the checkpoint, like ``model`` or an architecture family).
    """
    check_group_by(column, table.columns)
    pairs = table[["model_key", column]].astype({"model_key": str}).drop_duplicates()
    pairs[column] = pairs[column].astype(object).where(pairs[column].notna(), "")
    pairs = pairs.drop_duplicates()
    if pairs["model_key"].duplicated().any():
        raise ConfigError(
            f"--group-by {column!r} varies within a checkpoint, so it cannot pick the "
            "checkpoint's hull; group by a column that describes the checkpoint "
            "(e.g. model or a family column)"
        )
    groups = pairs.set_index("model_key")[column].astype(str)
    return points.assign(group=points["model_key"].astype(str).map(groups).fillna(""))


def fit_saturation(
    table: pd.DataFrame,
    config: AnalysisConfig | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    max_evals: int | None = None,
    checkpoints: pd.DataFrame | None = None,
    **options,
) -> pd.DataFrame:
    """The saturation fit of every (upstream task, DS task, shots, probe[, group]) in ``table``.

    Parameters
    ----------
    table : store rows (``read_selected`` or ``load``); only the selected-λ rows are used.
    checkpoints : the checkpoints' US accuracy and knobs, one row per model_key, when ``table``
        was read without them (``read_selected_apart``); default: taken from ``table``.
    config : the analysis options (:class:`~layerprobe.analysis.config.AnalysisConfig`, whose
        fields follow; default: its defaults). Any of its fields may also be given as a keyword
        (``fit_saturation(table, points="all")``), replacing the config's.
    warn : where warnings go (default: stderr).
    max_evals : cap on function evaluations per fit (scipy's ``max_nfev``; default: scipy's).

    Fields of the config
    --------------------
    shots : only these shot counts (default: all).
    layer : DS accuracy at ``pre_logits``, the ``best`` layer per checkpoint, or a named layer.
    points : fit to the rising part of the upper ``hull`` of the points, or to ``all`` of them.
    holdout_top : checkpoints (highest US accuracy) held out for the prediction error: a
        fraction in (0, 1) (at least 3 checkpoints), a count ≥ 3, or 0 (none); see
        :func:`holdout_split`.
    bootstrap : percentile-bootstrap resamples (0: none, the default); adds uncalibrated
        ``*_boot_lo``/``*_boot_hi`` columns beside the profile intervals.
    form : ``eq1`` (k · e_US^α + e_IR) or ``power`` (k · e_US^α), or a :class:`Form`.
    seed : seed of the bootstrap resampling.
    group_by : a column describing each checkpoint (e.g. ``model``): each of its values gets its
        own hull and fit (the ``group`` column).
    max_width : the widest e_IR interval that still determines e_IR (status ``wide_interval``).

    Returns
    -------
    DataFrame, one row per fitted group (all accuracies and errors in 0–1): upstream_task,
    task, shots, probe, group, layer, form, points, n_checkpoints, n_fit (= n_points, the fitted
    points), converged, status (``ok`` or the first of :data:`STATUSES` that applies), reasons
    (all that apply), k, alpha, e_ir, saturation (1 − e_ir), their profile intervals
    ``*_lo``/``*_hi``, interval (``profile``), fit_error (RMSE on the fitted points), noise_se
    (the probe-noise floor), holdout, n_heldout, n_targets (the held-out frontier points the
    prediction errors rest on), pred_error (of this fit's ``points``), pred_error_hull,
    pred_error_all (both on the same targets), n_train_hull, n_train_all (points each of those
    fits used), best_us, best_ds, gap_to_saturation (saturation − best_ds).
    """
    config = AnalysisConfig.build(config, **options)
    if config.shots:
        table = table[table["shots"].isin(config.shots)]
    if config.group_by is not None:
        check_group_by(config.group_by, table.columns)
    points = checkpoint_points(table, config.layer, warn=warn, checkpoints=checkpoints)
    if config.group_by is not None:
        points = with_groups(points, table, config.group_by)
    return fit_points(points, config, warn=warn, max_evals=max_evals)


def fit_store(
    results: str | Path,
    config: AnalysisConfig | None = None,
    *,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    **options,
) -> pd.DataFrame:
    """Read a results store (or an external table) and fit it: ``layerprobe fit``'s analysis.

    Reads only the columns a fit uses (:data:`READ_COLUMNS`, plus the ``group_by`` column) and,
    with a named layer, only that layer's rows.

    Parameters
    ----------
    results : a results store folder, or a .csv/.parquet table (``docs/external.md``).
    config, **options : the analysis options, as for :func:`fit_saturation`.
    skip_bad : leave out bad part files (each named in a warning) instead of stopping.
    warn : where warnings go (default: stderr).

    Returns
    -------
    The fit table of :func:`fit_saturation` (at least one row).

    Raises
    ------
    ConfigError : a ``group_by`` column the results lack.
    UnknownNameError : a named layer the results lack (the message lists those there are).
    DataError : shots the results lack, or nothing to fit (every group has fewer than 3 points).
    """
    from layerprobe.analysis.points import unknown_layer
    from layerprobe.results.external import extra_columns, is_table
    from layerprobe.results.read import (
        ANALYSIS_SCHEMA,
        CHECKPOINT_NUMBERS,
        read_selected,
        read_selected_apart,
    )
    from layerprobe.results.show import check_shots

    config = AnalysisConfig.build(config, **options)
    layers = None if config.layer == "best" else [config.layer]
    columns = list(READ_COLUMNS)
    if config.group_by is not None:
        if config.group_by not in ANALYSIS_SCHEMA.names:
            extra = extra_columns(results) if is_table(results) else []
            check_group_by(config.group_by, [*group_by_columns(), *extra])
        columns = list(dict.fromkeys([*columns, config.group_by]))
    # The checkpoints' numbers once per checkpoint, not on each of its rows (less memory).
    apart = [c for c in CHECKPOINT_NUMBERS if c in columns and c != config.group_by]
    table, checkpoints = read_selected_apart(
        results,
        [c for c in columns if c not in apart],
        layers,
        apart=apart,
        skip_bad=skip_bad,
        warn=warn,
        row_cache=not config.no_row_cache,
    )
    if layers and table.empty:  # name the layers there are (the warnings were given above)
        every = read_selected(
            results,
            columns=["layer"],
            skip_bad=skip_bad,
            warn=lambda message: None,
            row_cache=not config.no_row_cache,
        )
        raise unknown_layer(config.layer, set(every["layer"]))
    check_shots(table, config.shots)
    fits = fit_saturation(table, config, warn=warn, checkpoints=checkpoints)
    if fits.empty:
        raise DataError(
            "nothing to fit: every task and shot count has fewer than 3 points on the hull; "
            "probe more checkpoints (of different US accuracy)"
        )
    return fits


FIT_COLUMNS = [
    *GROUP,
    "group",
    "layer",
    "form",
    "points",
    "n_checkpoints",
    "n_fit",
    "n_points",
    "converged",
    "status",
    "reasons",
    "k",
    "alpha",
    "e_ir",
    "saturation",
    *(f"{n}_{s}" for n in ("k", "alpha", "e_ir", "saturation") for s in ("lo", "hi")),
    "interval",
    "fit_error",
    "noise_se",
    "holdout",
    "n_heldout",
    "n_targets",
    "pred_error",
    "pred_error_hull",
    "pred_error_all",
    "n_train_hull",
    "n_train_all",
    "best_us",
    "best_ds",
    "gap_to_saturation",
]
BOOT_COLUMNS = ["n_bootstrap", *(f"{n}_boot_{s}" for n in BOOT for s in ("lo", "hi"))]


def write_fits(fits: pd.DataFrame, path: str | Path) -> Path:
    """Write the fit table to ``path`` (Parquet) atomically: a temporary name, then a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.to_parquet(tmp, index=False)
    return path


def _label(key: tuple) -> str:
    upstream, task, shots, probe, *group = key
    where = f"upstream {upstream}, " if upstream else ""
    count = "full train split" if int(shots) == 0 else f"{int(shots)}-shot"
    within = f", group {group[0]}" if group and group[0] != "" else ""
    return f"{where}task {task}, {count}, probe {probe}{within}"


def _warn(warn: Callable[[str], None] | None, message: str) -> None:
    if warn is not None:
        warn(message)
    else:
        warn_user(message, stacklevel=2)
