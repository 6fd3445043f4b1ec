"""Toy 3D objects built from boxes, seen from any azimuth and elevation (smallNORB style).

Five categories (car, plane, house, chair, animal), each a handful of boxes arranged so
that no turn about the vertical axis maps the object onto itself: the azimuth can be
read from the picture. Faces are flat-shaded (Lambert, one light) and drawn back to front
(painter's algorithm, back faces culled) with PIL at twice the size, then box-filtered
down, which anti-aliases the edges.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ("car", "plane", "house", "chair", "animal")
# (centre xyz, half sizes xyz) of each box; y is up, the object's front points to +x.
_BOXES = {
    "car": [
        ((0, 0.3, 0), (0.9, 0.2, 0.42)),
        ((-0.25, 0.65, 0), (0.45, 0.16, 0.38)),
        ((0.55, 0.1, 0.45), (0.15, 0.1, 0.05)),
        ((0.55, 0.1, -0.45), (0.15, 0.1, 0.05)),
        ((-0.55, 0.1, 0.45), (0.15, 0.1, 0.05)),
        ((-0.55, 0.1, -0.45), (0.15, 0.1, 0.05)),
    ],
    "plane": [
        ((0, 0.4, 0), (1.0, 0.12, 0.12)),
        ((0.15, 0.4, 0), (0.22, 0.03, 0.95)),
        ((-0.85, 0.65, 0), (0.13, 0.22, 0.03)),
        ((-0.85, 0.45, 0), (0.1, 0.03, 0.35)),
    ],
    "house": [
        ((0, 0.35, 0), (0.7, 0.35, 0.5)),
        ((0, 0.8, 0), (0.75, 0.1, 0.55)),
        ((0.35, 1.05, 0.25), (0.08, 0.17, 0.08)),
        ((0.85, 0.15, 0), (0.15, 0.15, 0.3)),
    ],
    "chair": [
        ((0, 0.5, 0), (0.45, 0.05, 0.45)),
        ((-0.41, 0.95, 0), (0.04, 0.4, 0.45)),
        ((0.38, 0.23, 0.38), (0.04, 0.23, 0.04)),
        ((0.38, 0.23, -0.38), (0.04, 0.23, 0.04)),
        ((-0.38, 0.23, 0.38), (0.04, 0.23, 0.04)),
        ((-0.38, 0.23, -0.38), (0.04, 0.23, 0.04)),
    ],
    "animal": [
        ((0, 0.6, 0), (0.6, 0.22, 0.25)),
        ((0.75, 0.85, 0), (0.2, 0.17, 0.17)),
        ((0.45, 0.2, 0.17), (0.07, 0.2, 0.07)),
        ((0.45, 0.2, -0.17), (0.07, 0.2, 0.07)),
        ((-0.45, 0.2, 0.17), (0.07, 0.2, 0.07)),
        ((-0.45, 0.2, -0.17), (0.07, 0.2, 0.07)),
        ((-0.8, 0.72, 0), (0.2, 0.04, 0.04)),
    ],
}
# The 6 faces of a unit box as corner indices, counter-clockwise seen from outside.
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
_FACES = np.array(
    [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
)


@cache
def mesh(category: str) -> np.ndarray:
    """(F, 4, 3) quads of the category, centred and scaled into the unit sphere."""
    quads = np.concatenate(
        [(np.array(c) + _CORNERS * np.array(h))[_FACES] for c, h in _BOXES[category]]
    )
    lo, hi = quads.reshape(-1, 3).min(0), quads.reshape(-1, 3).max(0)
    quads = quads - (lo + hi) / 2
    return quads / np.linalg.norm(quads, axis=-1).max()


def _rotation(azimuth: float, elevation: float) -> np.ndarray:
    """Turn the object by ``azimuth`` about y, then tilt the view down by ``elevation``."""
    ca, sa, ce, se = np.cos(azimuth), np.sin(azimuth), np.cos(elevation), np.sin(elevation)
    turn = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]])
    tilt = np.array([[1, 0, 0], [0, ce, -se], [0, se, ce]])
    return tilt @ turn


def render(categories, azimuths, elevations, *, rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey objects on a plain background: (N,) category ids, angles in radians -> uint8 (N, S, S, 3)."""
    n = len(categories)
    out = np.empty((n, size, size, 3), np.uint8)
    big = 2 * size
    backgrounds = rng.uniform(0.1, 0.5, n)
    albedos = rng.uniform(0.55, 1.0, n)
    scales = rng.uniform(0.75, 0.95, n) * big / 2
    shifts = rng.uniform(-0.08, 0.08, (n, 2)) * big
    lights = rng.normal([-0.4, 0.6, 0.7], 0.25, (n, 3))
    lights /= np.linalg.norm(lights, axis=1, keepdims=True)
    for i in range(n):
        quads = mesh(CATEGORIES[categories[i]]) @ _rotation(azimuths[i], elevations[i]).T
        normals = np.cross(quads[:, 1] - quads[:, 0], quads[:, 2] - quads[:, 1])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        visible = normals[:, 2] > 1e-6  # the camera looks down -z from +z
        shade = albedos[i] * (0.3 + 0.7 * np.clip(normals @ lights[i], 0, 1))
        img = Image.new("L", (big, big), int(backgrounds[i] * 255))
        draw = ImageDraw.Draw(img)
        centre = big / 2 + shifts[i]
        for f in np.argsort(quads[:, :, 2].mean(1)):  # far faces first
            if visible[f]:
                xy = (
                    centre + quads[f, :, :2] * np.array([1, -1]) * scales[i]
                )  # screen y points down
                draw.polygon([tuple(p) for p in xy], fill=int(shade[f] * 255))
        small = np.asarray(img.resize((size, size), Image.BOX))
        out[i] = small[..., None]
    return out


AZIMUTH_BINS = 18  # 20 degrees each, as smallNORB's 18 azimuths
ELEVATION_BINS = 9  # 0..90 degrees in 10 degree bins (smallNORB: 9 elevations)


def gen_azimuth(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    n = len(labels)
    az = (labels + rng.random(n)) * (2 * np.pi / AZIMUTH_BINS)
    el = rng.uniform(0, np.radians(60), n)
    return render(rng.integers(0, len(CATEGORIES), n), az, el, rng=rng, size=size)


def gen_elevation(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    n = len(labels)
    el = (labels + rng.random(n)) * (np.radians(90) / ELEVATION_BINS)
    return render(
        rng.integers(0, len(CATEGORIES), n), rng.uniform(0, 2 * np.pi, n), el, rng=rng, size=size
    )


def gen_category(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    n = len(labels)
    return render(
        labels, rng.uniform(0, 2 * np.pi, n), rng.uniform(0, np.radians(60), n), rng=rng, size=size
    )
