"""The upper hull of (US, DS) points."""

from __future__ import annotations

import numpy as np
import pytest

from layerprobe.analysis.hull import upper_hull


def test_hand_made_points():
    # (0,0) (1,2) (2,3) (3,3.5) (4,1) on the hull; (1,0.5), (2,1), (3,2) below it.
    x = np.array([2, 0, 1, 3, 4, 1, 2, 3], float)
    y = np.array([3, 0, 2, 3.5, 1, 0.5, 1, 2], float)
    assert upper_hull(x, y).tolist() == [1, 2, 0, 3, 4]


def test_point_below_a_chord_is_left_out_even_if_it_is_a_record():
    # (1, 1.4) is higher than everything to its left but under the chord (0,0)-(2,3).
    x = np.array([0, 1, 2], float)
    y = np.array([0, 1.4, 3], float)
    assert upper_hull(x, y).tolist() == [0, 2]


def test_collinear_middle_points_and_duplicates_count_once():
    x = np.array([0, 1, 2, 2, 0], float)
    y = np.array([0, 1, 2, 2, 0], float)
    hull = upper_hull(x, y)
    assert sorted(x[hull].tolist()) == [0, 2]


def test_highest_point_at_a_shared_x():
    x = np.array([0, 0, 1, 2], float)
    y = np.array([0.1, 0.5, 0.9, 0.2], float)
    assert upper_hull(x, y).tolist() == [1, 2, 3]


@pytest.mark.parametrize("seed", range(5))
def test_random_points_lie_under_a_concave_hull(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 1, 300), rng.uniform(0, 1, 300)
    hull = upper_hull(x, y)
    hx, hy = x[hull], y[hull]
    assert np.all(np.diff(hx) > 0)
    assert hx[0] == x.min() and hx[-1] == x.max()
    slopes = np.diff(hy) / np.diff(hx)
    assert np.all(np.diff(slopes) < 0)  # strictly concave: no redundant vertex
    assert np.all(y <= np.interp(x, hx, hy) + 1e-12)  # nothing above it


def test_empty_and_single():
    assert upper_hull(np.array([]), np.array([])).tolist() == []
    assert upper_hull(np.array([0.3]), np.array([0.4])).tolist() == [0]


@pytest.mark.parametrize("seed", range(3))
def test_qhull_and_the_python_chain_agree_on_many_candidates(seed):
    from layerprobe.analysis import hull as module

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.9, 3000)
    y = 1 - 0.8 * (1 - x) ** 2 - np.abs(rng.normal(0, 0.02, 3000))  # a trend: many records
    y[:5] = np.round(y[:5], 2)  # and a few ties
    order = np.lexsort((-y, x))
    order = order[module._records(y[order])]
    assert len(order) > module.QHULL_ABOVE
    fast = module._qhull_upper(x[order], y[order])
    slow = module._chain(x[order], y[order])
    assert fast.tolist() == slow.tolist()
    assert upper_hull(x, y).tolist() == order[slow].tolist()


def test_rising_hull_drops_the_falling_tail_after_the_best_point():
    from layerprobe.analysis.hull import rising_hull

    # hull (0,0) (1,2) (2,3) (3,3.5) (4,1): the best DS point is (3,3.5); (4,1) is the tail
    x = np.array([2, 0, 1, 3, 4, 1, 2, 3], float)
    y = np.array([3, 0, 2, 3.5, 1, 0.5, 1, 2], float)
    assert rising_hull(x, y).tolist() == [1, 2, 0, 3]
    # a curve that only rises keeps its whole hull
    x = np.linspace(0, 1, 6)
    y = np.sqrt(x)
    assert rising_hull(x, y).tolist() == upper_hull(x, y).tolist() == list(range(6))
    assert rising_hull(np.array([]), np.array([])).tolist() == []


def test_rising_frontier_keeps_a_convex_stretch_the_hull_drops():
    from layerprobe.analysis.hull import rising_frontier

    x = np.linspace(0, 1, 6)
    y = x**2  # convex: the hull keeps only the ends
    assert upper_hull(x, y).tolist() == [0, 5]
    assert rising_frontier(x, y).tolist() == list(range(6))
    # a point below an earlier, higher one is not on the frontier; one per x (the highest)
    x = np.array([0.0, 1.0, 2.0, 2.0, 3.0])
    y = np.array([0.5, 0.4, 0.6, 0.7, 0.9])
    assert rising_frontier(x, y).tolist() == [0, 3, 4]
