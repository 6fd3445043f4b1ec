"""The upper hull of (US accuracy, DS accuracy) points.

Why the hull: a randomised mixture of two checkpoints (use one with probability p, the other
otherwise) reaches every point on the segment between them, so the best DS accuracy reachable at
a given US accuracy is the upper boundary of the convex hull of all points. The paper fits its
saturation curve to those points, not to all of them (that would fit the average checkpoint).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

QHULL_ABOVE = 48  # candidate points above which qhull is faster than the Python chain


def upper_hull(x: np.ndarray, y: np.ndarray, presorted: bool = False) -> np.ndarray:
    """Indices of the points on the upper convex hull, ordered by increasing ``x``.

    Parameters
    ----------
    x, y : (N,) coordinates (US accuracy, DS accuracy).
    presorted : the points are already sorted by x, then by y descending (saves the sort when
        many subsets of one sorted set are hulled, as in the bootstrap).

    Returns
    -------
    (H,) int indices into ``x``: from the leftmost point (the highest one, if several share its
    ``x``) to the rightmost (likewise). Points in the middle of a straight edge are left out;
    duplicate points count once.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of one length, got {x.shape} and {y.shape}")
    if len(x) == 0:
        return np.zeros(0, int)
    # Sort by x, then by y descending, so the first point at each x is the highest one.
    order = np.arange(len(x)) if presorted else np.lexsort((-y, x))
    keep = np.concatenate([[True], np.diff(x[order]) != 0])  # one point per x: the highest
    order = order[keep]
    order = order[_records(y[order])]
    xs, ys = x[order], y[order]
    chain = _chain if len(order) <= QHULL_ABOVE else _qhull_upper
    return order[chain(xs, ys)]


def rising_hull(x: np.ndarray, y: np.ndarray, presorted: bool = False) -> np.ndarray:
    """The rising part of the upper hull: its vertices up to the highest one (the best DS point).

    The saturation curve only rises with US accuracy, so the falling tail of the hull after the
    best DS point (checkpoints of higher US but lower DS accuracy) is not part of it.

    Parameters
    ----------
    x, y : (N,) coordinates (US accuracy, DS accuracy); ``presorted`` as for :func:`upper_hull`.

    Returns
    -------
    (H,) int indices into ``x``, by increasing ``x``, ending at the first point of highest ``y``.
    """
    hull = upper_hull(x, y, presorted)
    if len(hull) == 0:
        return hull
    return hull[: int(np.argmax(np.asarray(y, float)[hull])) + 1]


def rising_frontier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The rising Pareto frontier: points higher than every point of lower (or equal) ``x``.

    Unlike the hull it keeps points on a convex stretch (below the chord of their neighbours), so
    comparing the two shows whether the hull dropped a frontier that bends the wrong way.

    Parameters
    ----------
    x, y : (N,) coordinates (US accuracy, DS accuracy).

    Returns
    -------
    (F,) int indices into ``x`` by increasing ``x``; one point per ``x`` (the highest).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) == 0:
        return np.zeros(0, int)
    order = np.lexsort((-y, x))
    order = order[np.concatenate([[True], np.diff(x[order]) != 0])]
    ys = y[order]
    left = np.concatenate([[-np.inf], np.maximum.accumulate(ys)[:-1]])
    return order[ys > left]


def _chain(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain, upper half, on points sorted by strictly increasing x."""
    x, y = xs.tolist(), ys.tolist()
    hull: list[int] = []
    for j in range(len(x)):
        while len(hull) >= 2 and _cross(x, y, hull[-2], hull[-1], j) >= 0:
            hull.pop()  # hull[-1] is below or on the segment hull[-2] -> j
        hull.append(j)
    return np.asarray(hull, int)


def _qhull_upper(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The same as :func:`_chain` with qhull (C): its 2-d vertices run counter-clockwise, so
    from the rightmost point on they pass over the top to the leftmost one."""
    try:
        vertices = ConvexHull(np.column_stack([xs, ys])).vertices
    except QhullError:  # all points on one line
        return _chain(xs, ys)
    ring = np.roll(vertices, -int(np.argmax(xs[vertices])))
    upper = ring[: int(np.argmin(xs[ring])) + 1]
    return upper[::-1]


def _records(y: np.ndarray) -> np.ndarray:
    """Mask of the points (sorted by x) that can be upper-hull vertices.

    Left of its highest point the upper hull rises, so a vertex there is higher than every point
    to its left; right of it the hull falls, so a vertex is higher than every point to its right.
    Keeping only these running-maximum records (a vectorised pass) leaves the chain few points.
    """
    left = np.concatenate([[-np.inf], np.maximum.accumulate(y)[:-1]])
    right = np.concatenate([np.maximum.accumulate(y[::-1])[::-1][1:], [-np.inf]])
    return (y > left) | (y > right)


def _cross(x: list[float], y: list[float], a: int, b: int, c: int) -> float:
    """z of (b - a) × (c - a): > 0 when c is left of a -> b (a counter-clockwise turn)."""
    return (x[b] - x[a]) * (y[c] - y[a]) - (y[b] - y[a]) * (x[c] - x[a])
