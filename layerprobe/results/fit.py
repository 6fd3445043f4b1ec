"""Saturation fits: DS error as a function of US error (the paper's Eq. 1).

On errors (e = 1 − accuracy) the paper models ``e_DS = k · e_US^α + e_IR`` with k > 0, α > 0 and
0 ≤ e_IR ≤ 1: as US error goes to 0, DS error goes to e_IR, so ``1 − e_IR`` is the DS accuracy
the task saturates at. The special case without e_IR, ``e_DS = k · e_US^α`` (a plain power law),
never saturates; both are ``Form``s here so they can be compared on the same points.

Per (upstream task, DS task, shots, probe) we fit the curve to the upper hull of the checkpoints'
points (or to all of them), by bounded least squares on DS error (scipy ``least_squares``, trust
region reflective), started from the best point of a grid over α (for fixed α the model is
linear in k and e_IR, so each grid point is a closed-form solve). We report:

* the fitting error: RMSE (accuracy units) of the curve on the points it was fitted to;
* the prediction error: hold out the top fraction F of checkpoints by US accuracy, fit on the
  rest, and take the RMSE on the held-out points the curve stands for (with ``hull``: the
  held-out points on the upper hull of all points; with ``all``: every held-out point);
* bootstrap percentile intervals (2.5 %, 97.5 %) of the parameters, the saturation value and
  both errors, from resampling checkpoints with replacement (the hull is recomputed each time;
  each resample is solved by the exact-per-α grid profile alone, without the scipy polish);
* the distance of the best checkpoint (highest DS accuracy) from the saturation value.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from layerprobe.errors import ConfigError, check_memory
from layerprobe.results.hull import upper_hull
from layerprobe.results.points import GROUP, KNOBS, checkpoint_points

TINY = 1e-9  # k and α are > 0: their lower bound
ALPHA_MAX = 20.0  # e_US^20 is already flat; larger α only means "no signal"
ALPHA_GRID = np.geomspace(0.05, ALPHA_MAX, 97)  # steps of 6.4 %
POINTS = ("hull", "all")
# The store columns a fit reads (``read_selected(DIR, columns=READ_COLUMNS)``).
READ_COLUMNS = (
    "model", "model_key", "upstream_task", "upstream_accuracy", *KNOBS, "task", "layer", "depth",
    "shots", "seed", "test_accuracy", "probe", "backend",
)  # fmt: skip
CI = (2.5, 97.5)
MIN_POINTS = 3


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

    def profile(self, e_us, e_ds, alphas, w=None):
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
        _, sse = self.profile(e_us, e_ds, ALPHA_GRID, w)
        i = np.argmin(sse, axis=1)
        lo = ALPHA_GRID[np.maximum(i - 1, 0)]
        hi = ALPHA_GRID[np.minimum(i + 1, len(ALPHA_GRID) - 1)]
        fine = np.exp(np.linspace(np.log(lo), np.log(hi), 65, axis=1))  # (B, 65)
        theta, sse = self.profile(e_us, e_ds, fine, w)
        best = theta[np.arange(len(theta)), np.argmin(sse, axis=1)]
        best = np.clip(best, self.lower, self.upper)
        return best[0] if single else best

    def saturation(self, theta: np.ndarray) -> float:
        """DS accuracy at 100 % US accuracy: 1 − e_IR (1 for a form without e_IR)."""
        return 1.0 - (theta[2] if len(theta) > 2 else 0.0)


FORMS = {
    "eq1": Form("eq1", ("k", "alpha", "e_ir"), (TINY, TINY, 0.0), (np.inf, ALPHA_MAX, 1.0)),
    "power": Form("power", ("k", "alpha"), (TINY, TINY), (np.inf, ALPHA_MAX)),
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
    return CurveFit(theta, ok, rmse)


def predict(form: str | Form, theta: np.ndarray, us: np.ndarray) -> np.ndarray:
    """DS accuracy the curve ``θ`` gives at US accuracy ``us``."""
    return 1.0 - get_form(form)(1.0 - np.asarray(us, float), np.asarray(theta, float))


def fit_indices(us: np.ndarray, ds: np.ndarray, points: str, presorted: bool = False) -> np.ndarray:
    """Which points a fit uses: the upper hull, or all of them."""
    return upper_hull(us, ds, presorted) if points == "hull" else np.arange(len(us))


def holdout_split(us: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: the held-out ones are the ceil(top · N) highest in US accuracy
    (ties broken by position, so callers pass points in a fixed order)."""
    n_hold = math.ceil(top * len(us)) if top > 0 else 0
    order = np.argsort(us, kind="stable")
    return np.sort(order[: len(us) - n_hold]), np.sort(order[len(us) - n_hold :])


def prediction_error(
    us: np.ndarray,
    ds: np.ndarray,
    top: float,
    points: str,
    form: Form,
    max_evals: int | None = None,
    train_draw: np.ndarray | None = None,
) -> tuple[float, int]:
    """RMSE of a fit on the lower-US checkpoints at the held-out highest-US ones (see module doc).

    ``train_draw`` resamples the training checkpoints; the targets stay fixed.
    Returns (error, number of held-out target points); NaN when the training part is too small.
    """
    train, held = holdout_split(us, top)
    if len(held) == 0:
        return math.nan, 0
    targets = held if points == "all" else np.intersect1d(held, upper_hull(us, ds))
    if train_draw is not None:
        train = train[train_draw]
    x, y = us[train], ds[train]
    use = fit_indices(x, y, points)
    if len(np.unique(x[use])) < MIN_POINTS:
        return math.nan, len(targets)
    fit = fit_curve(x[use], y[use], form, max_evals)
    if not fit.converged:
        return math.nan, len(targets)
    err = predict(form, fit.theta, us[targets]) - ds[targets]
    return float(np.sqrt(np.mean(err**2))), len(targets)


def fit_group(
    us: np.ndarray,
    ds: np.ndarray,
    form: str | Form = "eq1",
    points: str = "hull",
    holdout_top: float = 0.1,
    bootstrap: int = 100,
    seed: int = 0,
    max_evals: int | None = None,
) -> dict | None:
    """Fit one (task, shots) group of checkpoint points; None when it has fewer than 3 fit points.

    Parameters
    ----------
    us, ds : (N,) US and DS accuracy of each checkpoint (0–1).

    Returns
    -------
    dict of the fit-table columns (see :func:`fit_saturation`).
    """
    form = get_form(form)
    if points not in POINTS:
        raise ConfigError(f"unknown --points {points!r}; use hull or all")
    us, ds = np.asarray(us, float), np.asarray(ds, float)
    use = fit_indices(us, ds, points)
    if len(np.unique(us[use])) < MIN_POINTS:
        return None
    fit = fit_curve(us[use], ds[use], form, max_evals)
    pred_err, n_held = prediction_error(us, ds, holdout_top, points, form, max_evals)
    best = int(np.argmax(ds))
    row = {
        "form": form.name,
        "points": points,
        "n_checkpoints": len(us),
        "n_fit": len(use),
        "converged": fit.converged,
        "status": "ok" if fit.converged else "not converged",
    }
    theta = fit.theta if fit.converged else np.full(len(form.params), np.nan)
    row.update(_params(form, theta))
    row["saturation"] = form.saturation(theta)
    row["fit_error"] = fit.rmse
    row["holdout_top"] = holdout_top
    row["n_heldout"] = n_held
    row["pred_error"] = pred_err
    row["best_us"] = float(us[best])
    row["best_ds"] = float(ds[best])
    row["gap_to_saturation"] = row["saturation"] - row["best_ds"]
    row.update(_bootstrap(us, ds, form, points, holdout_top, bootstrap, seed, max_evals))
    return row


def _params(form: Form, theta: np.ndarray) -> dict:
    """θ as k, alpha, e_ir columns (e_ir = 0 for forms without it)."""
    out = dict(zip(form.params, (float(t) for t in theta), strict=True))
    out.setdefault("e_ir", 0.0 if np.all(np.isfinite(theta)) else math.nan)
    return out


def _bootstrap(us, ds, form, points, top, n, seed, max_evals) -> dict:
    """Percentile intervals from ``n`` resamples of the checkpoints (with replacement).

    Each resample's fit points (its hull) are padded into one batch and solved together by the
    grid profile (:meth:`Form.start`), without the scipy polish of the point estimate.
    """
    rng = np.random.default_rng(seed)
    # Sorted by US, then DS descending: a sorted resample of indices is sorted too, so each
    # resample's hull skips its sort.
    order = np.lexsort((-ds, us))
    us, ds = us[order], ds[order]
    train, held = holdout_split(us, top)
    targets = held if points == "all" else np.intersect1d(held, upper_hull(us, ds))
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
    for name in ("k", "alpha", "e_ir", "saturation", "fit_error", "pred_error"):
        values = np.asarray(draws[name], float)
        lo, hi = np.percentile(values, CI) if len(values) >= 2 else (math.nan, math.nan)
        out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
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
    points: pd.DataFrame,
    form: str | Form = "eq1",
    fit_on: str = "hull",
    holdout_top: float = 0.1,
    bootstrap: int = 100,
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
    max_evals: int | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Fit every (upstream task, task, shots, probe) group of checkpoint points.

    ``points`` is :func:`layerprobe.results.points.checkpoint_points`' table. Groups with fewer than
    3 distinct fit points are skipped with a warning. ``layer`` names the layer choice in the
    table (default: the points' layer, or ``best`` when it differs between checkpoints). Returns the fit table of :func:`fit_saturation`.
    """
    check_options(fit_on, holdout_top, bootstrap)
    rows = []
    for key, part in points.groupby(GROUP, sort=True, observed=True):
        part = part.sort_values(["us", "model_key"], kind="stable")
        row = fit_group(
            part["us"].to_numpy(float),
            part["ds"].to_numpy(float),
            form,
            fit_on,
            holdout_top,
            bootstrap,
            seed,
            max_evals,
        )
        label = _label(key)
        if row is None:
            n = len(fit_indices(part["us"].to_numpy(), part["ds"].to_numpy(), fit_on))
            _warn(warn, f"{label}: only {n} {fit_on} point(s), need {MIN_POINTS}; not fitted")
            continue
        if not row["converged"]:
            _warn(warn, f"{label}: the fit did not converge")
        name = layer or (part["layer"].iloc[0] if part["layer"].nunique() == 1 else "best")
        rows.append({**dict(zip(GROUP, key, strict=True)), "layer": name, **row})
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def fit_saturation(
    table: pd.DataFrame,
    shots: list[int] | None = None,
    layer: str = "pre_logits",
    points: str = "hull",
    holdout_top: float = 0.1,
    bootstrap: int = 100,
    form: str | Form = "eq1",
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
    max_evals: int | None = None,
) -> pd.DataFrame:
    """The saturation fit of every (upstream task, DS task, shots, probe) in ``table``.

    Parameters
    ----------
    table : store rows (``read_selected`` or ``load``); only the selected-λ rows are used.
    shots : only these shot counts (default: all).
    layer : DS accuracy at ``pre_logits``, the ``best`` layer per checkpoint, or a named layer.
    points : fit to the upper ``hull`` of the points, or to ``all`` of them.
    holdout_top : fraction of checkpoints (highest US accuracy) held out for the prediction error.
    bootstrap : number of bootstrap resamples for the intervals (0: none).
    form : ``eq1`` (k · e_US^α + e_IR) or ``power`` (k · e_US^α), or a :class:`Form`.
    seed : seed of the bootstrap resampling.
    max_evals : cap on function evaluations per fit (scipy's ``max_nfev``; default: scipy's).

    Returns
    -------
    DataFrame, one row per fitted group: upstream_task, task, shots, probe, layer, form, points,
    n_checkpoints, n_fit, converged, status, k, alpha, e_ir, saturation (1 − e_ir), fit_error,
    holdout_top, n_heldout, pred_error, best_us, best_ds, gap_to_saturation (saturation −
    best_ds), n_bootstrap and ``*_lo``/``*_hi`` intervals (all accuracies and errors in 0–1).
    """
    check_options(points, holdout_top, bootstrap)
    if shots:
        table = table[table["shots"].isin(shots)]
    pts = checkpoint_points(table, layer, warn=warn)
    return fit_points(pts, form, points, holdout_top, bootstrap, seed, warn, max_evals, layer)


FIT_COLUMNS = [
    *GROUP,
    "layer",
    "form",
    "points",
    "n_checkpoints",
    "n_fit",
    "converged",
    "status",
    "k",
    "alpha",
    "e_ir",
    "saturation",
    "fit_error",
    "holdout_top",
    "n_heldout",
    "pred_error",
    "best_us",
    "best_ds",
    "gap_to_saturation",
    "n_bootstrap",
    *(
        f"{n}_{s}"
        for n in ("k", "alpha", "e_ir", "saturation", "fit_error", "pred_error")
        for s in ("lo", "hi")
    ),
]


def write_fits(fits: pd.DataFrame, path: str | Path) -> Path:
    """Write the fit table to ``path`` (Parquet) atomically: a temporary name, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fits.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# A lower bound of one resample's memory: two fit sets of at least 3 (US, DS) points (arrays,
# tuple) and its parameters, held until every resample is solved.
BOOTSTRAP_BYTES = 600


def check_options(points: str, holdout_top: float, bootstrap: int) -> None:
    """Refuse unknown ``points``, a ``holdout_top`` outside [0, 1), and a ``bootstrap`` below 0
    or too large for the memory available; commands call it before reading the store."""
    if points not in POINTS:
        raise ConfigError(f"unknown --points {points!r}; use hull or all")
    if not 0 <= holdout_top < 1:
        raise ConfigError(f"--holdout-top {holdout_top} is not a fraction in [0, 1); e.g. 0.1")
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap {bootstrap} is negative; give 0 (none) or more resamples")
    check_memory(
        bootstrap * BOOTSTRAP_BYTES,
        f"--bootstrap {bootstrap}",
        "give fewer resamples (100 to 1000 give stable 95 % intervals)",
    )


def _label(key: tuple) -> str:
    upstream, task, shots, probe = key
    where = f"upstream {upstream}, " if upstream else ""
    count = "full train split" if int(shots) == 0 else f"{int(shots)}-shot"
    return f"{where}task {task}, {count}, probe {probe}"


def _warn(warn: Callable[[str], None] | None, message: str) -> None:
    if warn is not None:
        warn(message)
    else:
        print(f"layerprobe: warning: {message}", file=sys.stderr)
