"""Real pictures shipped inside installed packages, and a vectorised crop sampler over them.

Sources are read from the wheels of scikit-image (``skimage.data`` files that need no
download), scikit-learn (``load_sample_image``, ``load_digits``) and matplotlib (its
sample photo and elevation model). To keep train, val and test honest, each picture is cut into a grid of
blocks and every block belongs to one split (a fixed assignment): crops of a split come
only from its own blocks, so no test pixel is ever seen in training.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from layerprobe.errors import DataError
from layerprobe.tasks.builtin.raster import F

BLOCK_GRID = 4  # pictures are cut into 4 x 4 blocks ...
BLOCK_SPLITS = {"train": 10, "val": 3, "test": 3}  # ... assigned 10 / 3 / 3 to the splits


def _skimage(name):
    def load():
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(name):
    def load():
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _matplotlib(name):
    def load():
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data(name)) as img:
            return np.asarray(img.convert("RGB"))

    return load


SOURCES = {
    "astronaut": _skimage("astronaut"),
    "brick": _skimage("brick"),
    "camera": _skimage("camera"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "hubble": _skimage("hubble_deep_field"),
    "histology": _skimage("immunohistochemistry"),
    "motorcycle": lambda: _skimage("stereo_motorcycle")()[0],
    "page": _skimage("page"),
    "retina": _skimage("retina"),
    "rocket": _skimage("rocket"),
    "handwriting": _skimage("text"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "terrain": lambda: hillshade(elevation_model()),
}

DEM_CELL_M = 90.0  # the Jacksboro DEM has 3 arc-second cells, about 90 m


def elevation_model() -> np.ndarray:
    """matplotlib's sample digital elevation model (Jacksboro fault, 344 x 403, metres)."""
    from matplotlib import cbook

    return cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(F)


def hillshade(dem: np.ndarray, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Shaded relief of an elevation model, uint8 (H, W): light from ``azimuth`` degrees."""
    gy, gx = np.gradient(dem, DEM_CELL_M)
    return (255 * shade(gx, gy, azimuth=np.radians(azimuth), altitude=np.radians(altitude))).astype(
        np.uint8
    )


def shade(gx, gy, *, azimuth, altitude, exaggeration: float = 4.0) -> np.ndarray:
    """Lambert shading of a surface with slopes (gx, gy) under a sun at (azimuth, altitude) radians.

    The normal of z(x, y) is (-gx, -gy, 1) normalised; heights are exaggerated so gentle
    relief still shows.
    """
    gx, gy = gx * exaggeration, gy * exaggeration
    light = (
        np.cos(altitude) * np.sin(azimuth),
        -np.cos(altitude) * np.cos(azimuth),
        np.sin(altitude),
    )
    dot = -gx * light[0] - gy * light[1] + light[2]
    return np.clip(dot / np.sqrt(1 + gx * gx + gy * gy), 0, 1).astype(F)


@cache
def picture(name: str) -> np.ndarray:
    """The source picture as float32 RGB in [0, 1], (H, W, 3)."""
    try:
        img = np.asarray(SOURCES[name]())
    except (ImportError, OSError, ValueError) as err:
        raise DataError(
            f"the built-in suite needs the picture {name!r} that ships with scikit-image, "
            f"scikit-learn or matplotlib, but it could not be read ({err}); reinstall those packages"
        ) from err
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3].astype(F)
    return img / 255 if img.max() > 1.5 else img


@cache
def pyramid(name: str) -> tuple[np.ndarray, ...]:
    """The picture as :func:`halvings`: level k is 2**-k scale."""
    return halvings(picture(name))


def halvings(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """(H, W, C) halved again and again (2 x 2 means) down to about 16 px: level k is 2**-k scale."""
    levels = [a]
    while min(levels[-1].shape[:2]) >= 32:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w]
        levels.append((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4)
    return tuple(levels)


def bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample (H, W, C) at fractional pixel positions (any shape) -> (..., C); edges are clamped."""
    h, w = img.shape[:2]
    rows = np.clip(rows, 0, h - 1)
    cols = np.clip(cols, 0, w - 1)
    r0 = np.minimum(rows.astype(np.int64), h - 2)
    c0 = np.minimum(cols.astype(np.int64), w - 2)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    top = img[r0, c0] * (1 - fc) + img[r0, c0 + 1] * fc
    bottom = img[r0 + 1, c0] * (1 - fc) + img[r0 + 1, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(F)


def crops(levels, geometry, size: int) -> np.ndarray:
    """Square crops resampled to size x size: (N, S, S, C) float32.

    Parameters
    ----------
    levels : a :func:`pyramid` (or any tuple of arrays halving in size).
    geometry : (centres, sides, angles, flips), as :func:`block_geometry` returns it:
        centres (N, 2) crop centres (row, col) in full-resolution pixels; sides (N,) crop
        sides in full-resolution pixels; angles (N,) rotation in radians; flips (N,) bool,
        mirror left-right.
    size : the output side S in pixels.

    Each crop reads from the pyramid level whose pixels are about as big as the output
    pixels, so shrinking a large crop averages instead of aliasing.
    """
    centres, sides, angles, flips = geometry
    n = len(sides)
    out = np.empty((n, size, size, levels[0].shape[-1]), F)
    u = (np.arange(size, dtype=F) + 0.5) / size - 0.5  # output pixel centres in [-0.5, 0.5]
    uu, vv = np.meshgrid(u, u)  # uu runs along columns, vv along rows
    level = np.clip(np.floor(np.log2(np.maximum(sides / size, 1))), 0, len(levels) - 1).astype(int)
    for k in np.unique(level):
        m = np.where(level == k)[0]
        c, s = np.cos(angles[m])[:, None, None], np.sin(angles[m])[:, None, None]
        x = np.where(flips[m][:, None, None], -uu, uu) * sides[m][:, None, None]
        y = vv * sides[m][:, None, None]
        scale = 2.0**-k
        rows = ((centres[m, 0][:, None, None] + s * x + c * y) * scale) - 0.5 * (1 - scale)
        cols = ((centres[m, 1][:, None, None] + c * x - s * y) * scale) - 0.5 * (1 - scale)
        out[m] = bilinear(levels[k], rows, cols)
    return out


@cache
def split_blocks(name: str, split: str) -> np.ndarray:
    """(B, 4) blocks (top, left, height, width) of the picture that belong to ``split``."""
    h, w = picture(name).shape[:2]
    order = np.random.default_rng(sum(map(ord, name))).permutation(BLOCK_GRID * BLOCK_GRID)
    ends = np.cumsum([BLOCK_SPLITS[s] for s in ("train", "val", "test")])
    start = {"train": 0, "val": ends[0], "test": ends[1]}[split]
    mine = order[start : start + BLOCK_SPLITS[split]]
    bh, bw = h / BLOCK_GRID, w / BLOCK_GRID
    return np.array([((b // BLOCK_GRID) * bh, (b % BLOCK_GRID) * bw, bh, bw) for b in mine])


def block_geometry(
    name: str,
    split: str,
    n: int,
    *,
    rng: np.random.Generator,
    side_range=(0.5, 1.0),
    rotate: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random crop placements inside the picture's ``split`` blocks.

    Returns (centres (N, 2), sides (N,), angles (N,), flips (N,)) for :func:`crops`. Crop
    sides are ``side_range`` times the block's shorter side; a rotated crop is kept small
    enough that its corners stay inside the block.
    """
    mine = split_blocks(name, split)
    blocks = mine[rng.integers(0, len(mine), n)]
    short = blocks[:, 2:].min(1)
    shrink = np.sqrt(2) if rotate else 1.0
    sides = rng.uniform(*side_range, n) * short / shrink
    reach = sides / 2 * shrink  # half the extent of the crop's footprint
    centres = (
        blocks[:, :2] + reach[:, None] + rng.random((n, 2)) * (blocks[:, 2:] - 2 * reach[:, None])
    )
    angles = rng.uniform(0, 2 * np.pi, n) if rotate else np.zeros(n)
    return centres, sides, angles, rng.random(n) < 0.5


def block_crops(
    name: str,
    split: str,
    n: int,
    *,
    rng: np.random.Generator,
    size: int,
    side_range=(0.5, 1.0),
    rotate: bool = False,
) -> np.ndarray:
    """``n`` random crops from the picture's ``split`` blocks: (N, S, S, 3) float32 in [0, 1]."""
    geometry = block_geometry(name, split, n, rng=rng, side_range=side_range, rotate=rotate)
    return crops(pyramid(name), geometry, size)
