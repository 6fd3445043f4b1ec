"""Procedural scenes for the structured group: counting, distance, position, orientation, size, relations.

Each generator draws the quantity to be predicted from the label's bin (uniformly
inside it), and everything else at random, so a probe must read that one quantity.
"""

from __future__ import annotations

import numpy as np

from layerprobe.tasks.builtin import raster as R

SHAPE = {name: i for i, name in enumerate(R.SHAPE_NAMES)}
SPRITES = np.array([SHAPE["square"], SHAPE["ellipse"], SHAPE["arrow"]])  # as in dSprites: 3 shapes
ASYMMETRIC = np.array(
    [SHAPE["arrow"], SHAPE["crescent"], SHAPE["semicircle"]]
)  # one turn to repeat
BLOCKY = np.array([SHAPE[s] for s in ("circle", "square", "triangle", "pentagon", "star", "cross")])

COUNT_MAX = 6
LOC_BINS = 16
LOC_RANGE = 0.7  # sprite centres lie in [-0.7, 0.7]
ORIENT_BINS = 16
SIZE_BINS = 6
SIZE_RANGE = (0.15, 0.75)
DIST_BINS = 5
DEPTH_RANGE = (1.0, 5.0)


def bin_uniform(
    rng: np.random.Generator, labels, span: tuple[float, float], *, n_bins: int, log=False
) -> np.ndarray:
    """A value uniform inside bin ``labels`` of ``span`` (lo, hi) cut in ``n_bins`` equal parts (in log if ``log``)."""
    lo, hi = span
    a, b = (np.log(lo), np.log(hi)) if log else (lo, hi)
    width = (b - a) / n_bins
    x = a + (np.asarray(labels) + rng.random(len(labels))) * width
    return np.exp(x) if log else x


def bin_edges(span: tuple[float, float], n_bins: int, *, log=False) -> np.ndarray:
    """The ``n_bins + 1`` edges of ``span`` (lo, hi) cut in equal parts (in log if ``log``)."""
    lo, hi = span
    e = np.linspace(np.log(lo), np.log(hi), n_bins + 1) if log else np.linspace(lo, hi, n_bins + 1)
    return np.exp(e) if log else e


def _sprite(rng, size, shapes, cx, cy, scale, angle):
    """dSprites style: one white sprite on black."""
    alpha = R.shape_alpha(size, shapes, (cx, cy, scale, angle))
    return R.to_uint8(np.repeat(alpha[..., None], 3, axis=-1))


def gen_count(labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str) -> np.ndarray:
    """label + 1 objects on a jittered 3 x 3 grid (no overlaps), random shapes, colours and sizes."""
    n = len(labels)
    canvas = R.gradient_background(rng, n, size)
    cells = np.argsort(rng.random((n, 9)), axis=1)  # a random order of the 9 cells per image
    for j in range(COUNT_MAX):
        present = labels >= j
        cell = cells[:, j]
        scale = rng.uniform(0.12, 0.22, n)
        room = 1 / 3 - scale  # keep each object inside its cell
        cx = (cell % 3 - 1) * (2 / 3) + rng.uniform(-1, 1, n) * room
        cy = (cell // 3 - 1) * (2 / 3) + rng.uniform(-1, 1, n) * room
        alpha = R.shape_alpha(
            size, rng.choice(BLOCKY, n), (cx, cy, scale, rng.uniform(0, 2 * np.pi, n))
        )
        R.composite(canvas, alpha * R.col(present), R.random_colour(rng, n, val=(0.6, 1.0)))
    return R.to_uint8(canvas)


def gen_distance(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    """Objects standing on a ground plane seen in perspective; label = depth bin of the closest.

    Depth z in [1, 5] (bins equal in log z). A camera above the plane sees an object's base
    at screen y = horizon + 0.8 / z with size 0.3 / z, so near objects are big and low.
    """
    n = len(labels)
    x, y = R.grid(size)
    horizon = R.col(rng.uniform(-0.35, -0.05, n))
    sky = R.random_colour(rng, n, sat=(0.1, 0.4), val=(0.6, 1.0))[:, None, None, :]
    ground = R.random_colour(rng, n, sat=(0.1, 0.5), val=(0.2, 0.6))[:, None, None, :]
    # The ground darkens towards the horizon, a cue for depth as in a real photo.
    shade = np.clip(0.6 + 0.8 * (y - horizon), 0.6, 1.4)[..., None]
    canvas = np.where((y > horizon)[..., None], ground * shade, sky) + np.zeros(
        (1, 1, size, 1), R.F
    )
    canvas = canvas + R.F(0.02) * rng.standard_normal(canvas.shape, dtype=R.F)
    z_min = bin_uniform(rng, labels, DEPTH_RANGE, n_bins=DIST_BINS, log=True)
    k = rng.integers(1, 5, n)  # 1..4 objects, the first at z_min, the others farther
    z = np.exp(rng.uniform(np.log(z_min)[:, None], np.log(DEPTH_RANGE[1]), (n, 4)))
    z[:, 0] = z_min
    z[np.arange(4)[None, :] >= k[:, None]] = np.inf  # absent objects
    order = np.argsort(-z, axis=1)  # paint far to near
    for j in range(4):
        zj = z[np.arange(n), order[:, j]]
        present = np.isfinite(zj)
        zj = np.where(present, zj, 1.0)
        scale = 0.3 / zj
        cx = rng.uniform(-1.1, 1.1, n) / zj
        cy = horizon[:, 0, 0] + 0.8 / zj - scale * 0.8
        alpha = R.shape_alpha(
            size, rng.choice(BLOCKY, n), (cx, cy, scale, rng.uniform(-0.3, 0.3, n))
        )
        R.composite(canvas, alpha * R.col(present), R.random_colour(rng, n, val=(0.5, 1.0)))
    return R.to_uint8(canvas)


def _loc(labels, rng, size, axis: int):
    n = len(labels)
    pos = [rng.uniform(-LOC_RANGE, LOC_RANGE, n), rng.uniform(-LOC_RANGE, LOC_RANGE, n)]
    pos[axis] = bin_uniform(rng, labels, (-LOC_RANGE, LOC_RANGE), n_bins=LOC_BINS)
    scale = rng.uniform(0.15, 0.3, n)
    return _sprite(rng, size, rng.choice(SPRITES, n), *pos, scale, rng.uniform(0, 2 * np.pi, n))


def gen_loc_x(labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str) -> np.ndarray:
    return _loc(labels, rng, size, 0)


def gen_loc_y(labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str) -> np.ndarray:
    return _loc(labels, rng, size, 1)


def gen_orientation(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    """An asymmetric sprite turned by an angle in bin ``label`` of 16 over a full turn."""
    n = len(labels)
    angle = bin_uniform(rng, labels, (0, 2 * np.pi), n_bins=ORIENT_BINS)
    cx, cy = rng.uniform(-0.45, 0.45, n), rng.uniform(-0.45, 0.45, n)
    return _sprite(rng, size, rng.choice(ASYMMETRIC, n), cx, cy, rng.uniform(0.3, 0.5, n), angle)


def gen_size(labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str) -> np.ndarray:
    """A sprite whose scale lies in bin ``label`` of 6 (equal in log scale, 0.15..0.75 of the half-width)."""
    n = len(labels)
    scale = bin_uniform(rng, labels, SIZE_RANGE, n_bins=SIZE_BINS, log=True)
    room = 0.95 - scale
    cx, cy = rng.uniform(-1, 1, n) * room, rng.uniform(-1, 1, n) * room
    return _sprite(rng, size, rng.choice(SPRITES, n), cx, cy, scale, rng.uniform(0, 2 * np.pi, n))


def _two_objects(rng, n, size):
    canvas = R.gradient_background(rng, n, size)
    colours = R.random_colour(rng, n), R.random_colour(rng, n)
    return canvas, colours


def gen_relation(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    """A circle and a square (random colours, plus a star as distractor); 0: circle left of square."""
    n = len(labels)
    canvas, (c_circle, c_square) = _two_objects(rng, n, size)
    left, gap = rng.uniform(-0.75, 0.45, n), rng.uniform(0.3, 0.75, n)
    right = np.minimum(left + gap, 0.75)
    x_circle = np.where(labels == 0, left, right)
    x_square = np.where(labels == 0, right, left)
    star = R.shape_alpha(
        size,
        np.full(n, SHAPE["star"]),
        (
            rng.uniform(-0.7, 0.7, n),
            rng.uniform(-0.7, 0.7, n),
            rng.uniform(0.2, 0.3, n),
            rng.uniform(0, 7, n),
        ),
    )
    R.composite(canvas, star, R.random_colour(rng, n))
    for shape, xs, colour in (("circle", x_circle, c_circle), ("square", x_square, c_square)):
        alpha = R.shape_alpha(
            size,
            np.full(n, SHAPE[shape]),
            (xs, rng.uniform(-0.7, 0.7, n), rng.uniform(0.2, 0.3, n), rng.uniform(0, 2 * np.pi, n)),
        )
        R.composite(canvas, alpha, colour)
    return R.to_uint8(canvas)


def gen_occlusion(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    """A circle and a square that overlap; 0: the circle is in front, 1: the square is."""
    n = len(labels)
    canvas, (c_circle, c_square) = _two_objects(rng, n, size)
    cx, cy = rng.uniform(-0.3, 0.3, n), rng.uniform(-0.3, 0.3, n)
    theta, dist = rng.uniform(0, 2 * np.pi, n), rng.uniform(0.3, 0.5, n)
    a_circle = R.shape_alpha(
        size, np.full(n, SHAPE["circle"]), (cx, cy, rng.uniform(0.35, 0.5, n), np.zeros(n))
    )
    a_square = R.shape_alpha(
        size,
        np.full(n, SHAPE["square"]),
        (
            cx + dist * np.cos(theta),
            cy + dist * np.sin(theta),
            rng.uniform(0.35, 0.5, n),
            rng.uniform(0, 2 * np.pi, n),
        ),
    )
    circle_front = R.col(labels == 0) > 0
    back_a = np.where(circle_front, a_square, a_circle)
    front_a = np.where(circle_front, a_circle, a_square)
    back_c = np.where(circle_front[..., 0], c_square, c_circle)
    front_c = np.where(circle_front[..., 0], c_circle, c_square)
    R.composite(canvas, back_a, back_c)
    R.composite(canvas, front_a, front_c)
    return R.to_uint8(canvas)
