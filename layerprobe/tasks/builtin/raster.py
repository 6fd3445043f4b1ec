"""Vectorised 2D drawing in numpy: shapes as signed distances, colours, fills, backgrounds.

Everything works on a batch of N images of S x S pixels at once. Coordinates are
normalised: the canvas spans [-1, 1] on both axes (x to the right, y downwards), so a
scene looks the same at any image size. Shapes are signed distance functions (SDF, < 0
inside) in the shape's own unit frame; the edge is anti-aliased by turning the distance
into a one-pixel-wide alpha ramp.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

F = np.float32


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: x (1, 1, S) and y (1, S, 1), broadcastable to (N, S, S)."""
    u = ((np.arange(size, dtype=F) + 0.5) / size * 2 - 1).astype(F)
    return u[None, None, :], u[None, :, None]


def col(v: np.ndarray) -> np.ndarray:
    """(N,) -> (N, 1, 1) so per-image parameters broadcast against (N, S, S) maps."""
    return np.asarray(v, dtype=F)[:, None, None]


def local_frame(size: int, pose) -> tuple[np.ndarray, np.ndarray]:
    """Canvas pixels expressed in each shape's unit frame: (N, S, S) each.

    ``pose`` is (cx, cy, scale, angle), each (N,): a point at unit distance from the origin
    of the shape frame lies ``scale`` canvas units from (cx, cy); ``angle`` (radians) rotates
    the shape counter-clockwise on screen.
    """
    cx, cy, scale, angle = pose
    x, y = grid(size)
    dx, dy = x - col(cx), y - col(cy)
    c, s = col(np.cos(angle)), col(np.sin(angle))
    # Inverse rotation (screen y points down, so counter-clockwise on screen is -angle here).
    u = (c * dx - s * dy) / col(scale)
    v = (s * dx + c * dy) / col(scale)
    return u, v


# --- signed distance functions in the unit frame (shape fits in the unit disk) ---------


def _box(u, v, bx, by):
    qx, qy = np.abs(u) - bx, np.abs(v) - by
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _radial(u, v, r_of_theta):
    # Star-shaped outline rho = r(theta): distance along the ray, scaled by r so that
    # lobes and flats get comparable edge widths.
    rho = np.sqrt(u * u + v * v)
    r = r_of_theta(np.arctan2(v, u))
    return (rho - r) * np.minimum(r, 1.0)


def _polygon_r(n: int):
    # Radius of a regular n-gon with circumradius 1, one vertex pointing up.
    def r(theta):
        t = np.mod(theta + np.pi / 2, 2 * np.pi / n) - np.pi / n
        return np.cos(np.pi / n) / np.cos(t)

    return r


def sdf_circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sqrt(u * u + v * v) - 0.9


def sdf_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _box(u, v, 0.72, 0.72)


def sdf_triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _radial(u, v, _polygon_r(3))


def sdf_pentagon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _radial(u, v, _polygon_r(5))


def sdf_star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _radial(u, v, lambda t: 0.62 + 0.38 * np.cos(5 * (t + np.pi / 2)))


def sdf_gear(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _radial(u, v, lambda t: 0.8 + 0.2 * np.sign(np.cos(8 * t)))


def sdf_cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.minimum(_box(u, v, 0.9, 0.3), _box(u, v, 0.3, 0.9))


def sdf_ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(np.sqrt(u * u + v * v) - 0.62) - 0.3


def sdf_crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    outer = np.sqrt(u * u + v * v) - 0.92
    bite = np.sqrt((u - 0.5) ** 2 + v * v) - 0.72
    return np.maximum(outer, -bite)


def sdf_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Not an exact distance, but a good one near the edge: scale by the minor axis.
    return (np.sqrt((u / 0.95) ** 2 + (v / 0.45) ** 2) - 1) * 0.45


def sdf_semicircle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    v = v - 0.35  # centre the half disk's bounding box on the origin
    return np.maximum(np.sqrt(u * u + v * v) - 0.95, v)


def sdf_arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Shaft to the left, head pointing right (+x): no rotational symmetry.
    shaft = _box(u + 0.35, v, 0.55, 0.18)
    # Head: the triangle (0.95, 0), (0.1, +-0.7); the slanted edges' distance is the line
    # equation divided by its gradient norm.
    slant = (np.abs(v) + (0.7 / 0.85) * u - 0.7 * 0.95 / 0.85) / np.hypot(1, 0.7 / 0.85)
    head = np.maximum(0.1 - u, slant)
    return np.minimum(shaft, head)


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": sdf_circle,
    "square": sdf_square,
    "triangle": sdf_triangle,
    "pentagon": sdf_pentagon,
    "star": sdf_star,
    "gear": sdf_gear,
    "cross": sdf_cross,
    "ring": sdf_ring,
    "crescent": sdf_crescent,
    "ellipse": sdf_ellipse,
    "semicircle": sdf_semicircle,
    "arrow": sdf_arrow,
}
SHAPE_NAMES = tuple(SHAPES)


def shape_alpha(size: int, shape_ids, pose) -> np.ndarray:
    """Coverage in [0, 1] of one shape per image: (N, S, S) float32.

    ``shape_ids`` (N,) index :data:`SHAPE_NAMES`; ``pose`` (cx, cy, scale, angle), each (N,),
    as in :func:`local_frame`. Images are grouped by shape so each SDF runs once, vectorised.
    """
    shape_ids = np.asarray(shape_ids)
    out = np.empty((len(shape_ids), size, size), F)
    params = [np.asarray(p, dtype=F) for p in pose]
    for sid in np.unique(shape_ids):
        m = shape_ids == sid
        u, v = local_frame(size, tuple(p[m] for p in params))
        d = SHAPES[SHAPE_NAMES[sid]](u, v) * col(params[2][m])  # unit frame -> canvas units
        # One pixel is 2/S canvas units: a linear ramp one pixel wide across the edge.
        out[m] = np.clip(0.5 - d * (size / 2), 0, 1)
    return out


# --- colours, fills, backgrounds -------------------------------------------------------

HUE_NAMES = ("red", "orange", "yellow", "lime", "green", "teal", "azure", "blue", "violet", "pink")


def hsv_to_rgb(h, s, v) -> np.ndarray:
    """(N,) hue, saturation, value in [0, 1] -> (N, 3) RGB in [0, 1]."""
    h, s, v = (np.asarray(a, dtype=F) for a in (h, s, v))
    k = np.mod(np.array([5, 3, 1], F)[None, :] + h[:, None] * 6, 6)
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def hue_colour(
    rng: np.random.Generator, hue_ids, *, n_hues: int = 10, jitter: float = 0.025
) -> np.ndarray:
    """Saturated colours around ``n_hues`` evenly spaced hues: (N, 3) in [0, 1]."""
    hue_ids = np.asarray(hue_ids)
    n = len(hue_ids)
    h = np.mod(hue_ids / n_hues + rng.uniform(-jitter, jitter, n), 1)
    return hsv_to_rgb(h, rng.uniform(0.65, 1.0, n), rng.uniform(0.7, 1.0, n))


def random_colour(
    rng: np.random.Generator, n: int, *, sat=(0.5, 1.0), val=(0.5, 1.0)
) -> np.ndarray:
    """Any hue: (N, 3) in [0, 1]."""
    return hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(*sat, n), rng.uniform(*val, n))


def gradient_background(
    rng: np.random.Generator, n: int, size: int, *, sat=0.25, noise=0.03
) -> np.ndarray:
    """Muted colour with a linear gradient in a random direction and pixel noise: (N, S, S, 3)."""
    x, y = grid(size)
    base = hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(0, sat, n), rng.uniform(0.25, 0.8, n))
    theta = rng.uniform(0, 2 * np.pi, n)
    ramp = col(np.cos(theta)) * x + col(np.sin(theta)) * y  # (N, S, S) in about [-1.4, 1.4]
    amp = col(rng.uniform(0, 0.15, n))
    img = base[:, None, None, :] + (amp * ramp)[..., None]
    return img + F(noise) * rng.standard_normal(img.shape, dtype=F)


def composite(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Paint ``colour`` over ``canvas`` (N, S, S, 3) with coverage ``alpha`` (N, S, S).

    ``colour`` is (N, 3) for a flat colour or (N, S, S, 3) for a textured fill. In place.
    """
    if colour.ndim == 2:
        colour = colour[:, None, None, :]
    a = alpha[..., None]
    canvas *= 1 - a
    canvas += a * colour
    return canvas


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounding and clipping."""
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


TEXTURE_NAMES = ("solid", "stripes", "checker", "dots", "gradient", "rings")


def texture_mix(size: int, texture_ids, pose) -> np.ndarray:
    """How much of the primary colour each pixel shows, (N, S, S) in [0, 1].

    ``texture_ids`` (N,) index :data:`TEXTURE_NAMES`; ``pose`` (cx, cy, scale, angle) as in
    :func:`local_frame`.

    The pattern lives in the shape's own frame, so it moves, scales and turns with it;
    edges are softened (``0.5 + gain * wave``) so they do not alias at small sizes.
    """
    texture_ids = np.asarray(texture_ids)
    out = np.ones((len(texture_ids), size, size), F)
    params = [np.asarray(p, dtype=F) for p in pose]
    k = F(2.6 * np.pi)  # about 2.6 periods across the unit frame
    for tid in np.unique(texture_ids):
        m = texture_ids == tid
        name = TEXTURE_NAMES[tid]
        if name == "solid":
            continue
        u, v = local_frame(size, tuple(p[m] for p in params))
        if name == "stripes":
            wave = np.sin(k * u)
        elif name == "checker":
            wave = np.sin(k * u) * np.sin(k * v) * 2
        elif name == "dots":
            wave = 0.55 - np.sqrt(np.sin(k * u / 1.3) ** 2 + np.sin(k * v / 1.3) ** 2)
            wave = -wave * 3
        elif name == "gradient":
            out[m] = np.clip(0.5 - 0.6 * u, 0, 1)
            continue
        else:  # rings
            wave = np.sin(k * np.sqrt(u * u + v * v))
        out[m] = np.clip(0.5 + 1.5 * wave, 0, 1)
    return out
