"""Natural-group tasks from real pictures: handwritten digits, photo scenes, faces.

Every source item (a digit scan, a face, a block of a photo) belongs to exactly one split,
fixed once and for all, so a probe is always tested on pixels it never saw.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from layerprobe.tasks.builtin import photos as P
from layerprobe.tasks.builtin import raster as R

SCENES = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "china",
    "flower",
    "grace_hopper",
)
SOURCE_FRACTIONS = (0.6, 0.15)  # of each class's source items: train, val; test gets the rest


def split_items(labels: np.ndarray, split: str, seed: int) -> list[np.ndarray]:
    """Per class, the source indices that belong to ``split`` (a fixed stratified cut)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(labels.max() + 1):
        idx = rng.permutation(np.where(labels == c)[0])
        a = int(round(len(idx) * SOURCE_FRACTIONS[0]))
        b = a + int(round(len(idx) * SOURCE_FRACTIONS[1]))
        out.append({"train": idx[:a], "val": idx[a:b], "test": idx[b:]}[split])
    return out


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16).astype(R.F), d.target.astype(np.int64)


def gen_digits(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    """An 8 x 8 scikit-learn digit scan, smoothly enlarged, turned, coloured, on a textured background."""
    glyphs, targets = _digits()
    pools = split_items(targets, split, seed=8)
    n = len(labels)
    pick = np.array([rng.choice(pools[c]) for c in labels])
    u, v = R.local_frame(
        size,
        (
            rng.uniform(-0.15, 0.15, n),
            rng.uniform(-0.15, 0.15, n),
            rng.uniform(0.6, 0.9, n),
            rng.uniform(-0.3, 0.3, n),
        ),
    )
    # Unit frame [-1, 1] -> glyph pixel coordinates [-0.5, 7.5]; outside the glyph is blank.
    cols, rows = (u + 1) * 4 - 0.5, (v + 1) * 4 - 0.5
    inside = (cols > -1) & (cols < 8) & (rows > -1) & (rows < 8)
    padded = np.pad(glyphs[pick], ((0, 0), (1, 1), (1, 1)))  # a blank border to sample from
    r0 = np.clip(np.floor(rows).astype(int) + 1, 0, 8)
    c0 = np.clip(np.floor(cols).astype(int) + 1, 0, 8)
    fr, fc = np.clip(rows + 1 - r0, 0, 1), np.clip(cols + 1 - c0, 0, 1)
    i = np.arange(n)[:, None, None]
    ink = (padded[i, r0, c0] * (1 - fc) + padded[i, r0, c0 + 1] * fc) * (1 - fr) + (
        padded[i, r0 + 1, c0] * (1 - fc) + padded[i, r0 + 1, c0 + 1] * fc
    ) * fr
    alpha = np.clip(ink * inside * 1.6, 0, 1).astype(R.F)
    canvas = R.gradient_background(rng, n, size, sat=0.6, noise=0.04)
    # Ink at least 0.3 brighter or darker than the background, so every digit stays legible.
    bg = canvas.mean((1, 2, 3))
    ink_value = np.clip(bg + np.where(bg < 0.5, 1, -1) * rng.uniform(0.3, 0.6, n), 0.05, 1)
    ink = R.hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(0.3, 1.0, n), ink_value)
    R.composite(canvas, alpha, ink)
    return R.to_uint8(canvas)


def gen_scenes(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    """A random crop (0.4 to 1 block wide, mirrored half the time) of the labelled photo."""
    out = np.empty((len(labels), size, size, 3), R.F)
    for c in np.unique(labels):
        m = labels == c
        out[m] = P.block_crops(
            SCENES[c], split, int(m.sum()), rng=rng, size=size, side_range=(0.4, 1.0)
        )
    return R.to_uint8(out)


FACE_PER_CLASS = (50, 20, 30)  # the 100 faces and 100 non-faces, each used once


@cache
def _faces() -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    images = skimage.data.lfw_subset().astype(R.F)  # (200, 25, 25): 100 faces, then 100 non-faces
    return images, np.repeat(np.arange(2), 100)


@cache
def _face_pools(split: str) -> tuple[np.ndarray, ...]:
    """Per class, the LFW items of ``split`` (a fixed cut: 50 / 20 / 30 of each class's 100)."""
    _, targets = _faces()
    rng = np.random.default_rng(25)
    cut = np.cumsum((0,) + FACE_PER_CLASS)
    s = ("train", "val", "test").index(split)
    return tuple(rng.permutation(np.where(targets == c)[0])[cut[s] : cut[s + 1]] for c in range(2))


def gen_faces(labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str) -> np.ndarray:
    """A 25 x 25 LFW face or background patch, resized, mirrored half the time (no item repeats)."""
    images, _ = _faces()
    out = np.empty((len(labels), size, size), R.F)
    for c in np.unique(labels):
        m = np.where(labels == c)[0]
        pool = rng.permutation(_face_pools(split)[c])
        if len(m) > len(pool):
            raise RuntimeError("more face images asked for than the split holds")
        # Resize every face at once by stacking them as the channels of one picture.
        stack = (images[pool[: len(m)]].transpose(1, 2, 0),)
        resized = P.crops(
            stack, (np.full((1, 2), 12.0), np.full(1, 25.0), np.zeros(1), np.zeros(1, bool)), size
        )[0]
        flip = rng.random(len(m)) < 0.5
        out[m] = np.where(flip[None, None, :], resized[:, ::-1, :], resized).transpose(2, 0, 1)
    return R.to_uint8(np.repeat(out[..., None], 3, axis=-1))
