"""Specialized-group tasks: texture, histology, retina and terrain patches from real scientific data.

Histology, retina and terrain labels are measured on each patch (how much brown DAB
stain; how much of the patch is blood vessel; how steep the ground is) and cut into
equally likely bins, fixed once from a
reference sample, like a pathologist's grade. Patches are drawn until every class has
its share, so splits stay exactly balanced.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from layerprobe.tasks.builtin import photos as P
from layerprobe.tasks.builtin import raster as R

TEXTURES = ("brick", "grass", "gravel", "page", "handwriting", "hubble")
HISTOLOGY_CLASSES = ("low DAB stain", "medium DAB stain", "high DAB stain")
RETINA_CLASSES = ("few vessels", "some vessels", "many vessels", "dense vessels")
TERRAIN_CLASSES = ("flat", "gentle", "hilly", "steep")
SCORE_SIZE = 16  # patches are scored at this resolution, whatever the output size


def gen_textures(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    """A rotated, mirrored grey crop of the labelled texture, with its brightness and contrast
    set at random so that only the pattern tells the classes apart."""
    n = len(labels)
    out = np.empty((n, size, size), R.F)
    for c in np.unique(labels):
        m = labels == c
        grey = P.block_crops(
            TEXTURES[c], split, int(m.sum()), rng=rng, size=size, side_range=(0.6, 1.0), rotate=True
        ).mean(-1)
        out[m] = grey
    mean = out.mean((1, 2), keepdims=True)
    std = out.std((1, 2), keepdims=True) + 1e-3
    out = (out - mean) / std * R.col(rng.uniform(0.1, 0.2, n)) + R.col(rng.uniform(0.35, 0.65, n))
    return R.to_uint8(np.repeat(out[..., None], 3, axis=-1))


@cache
def _dab_levels() -> tuple[np.ndarray, ...]:
    from skimage.color import rgb2hed

    dab = rgb2hed(P.picture("histology"))[..., 2:3].astype(R.F)  # haematoxylin, eosin, DAB
    return P.halvings(dab)


@cache
def _vessel_levels() -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Vessel map and fundus mask pyramids, at the picture's level-1 resolution (half size)."""
    from scipy import ndimage

    half = P.pyramid("retina")[1]
    green, fundus = half[..., 1], half[..., 0] > 0.12
    fundus = ndimage.binary_erosion(fundus, iterations=4)
    # Vessels are thin and darker than their surroundings in the green channel.
    vessels = (ndimage.gaussian_filter(green, 6) - green > 0.02) & fundus
    return P.halvings(vessels[..., None].astype(R.F)), P.halvings(fundus[..., None].astype(R.F))


@cache
def _terrain_levels() -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Pyramids of the elevation model's slope vectors (gx, gy) and slope magnitude."""
    gy, gx = np.gradient(P.elevation_model(), P.DEM_CELL_M)
    return P.halvings(np.stack([gx, gy], -1)), P.halvings(np.hypot(gx, gy)[..., None])


def _terrain_score(geometry):
    return P.crops(_terrain_levels()[1], geometry, SCORE_SIZE).mean((1, 2, 3)), np.ones(
        len(geometry[1]), bool
    )


def _terrain_render(geometry, rng, size):
    # Shade each patch under a sun of its own, so brightness alone does not give the slope
    # away. Slopes are sampled in the map's frame and the sun is too, so a rotated crop
    # is simply the same relief seen turned.
    slopes = P.crops(_terrain_levels()[0], geometry, size)
    n = len(slopes)
    azimuth = R.col(rng.uniform(0, 2 * np.pi, n))
    altitude = R.col(rng.uniform(np.radians(25), np.radians(65), n))
    grey = P.shade(slopes[..., 0], slopes[..., 1], azimuth=azimuth, altitude=altitude)
    return np.repeat(grey[..., None], 3, axis=-1)


def _histology_score(geometry):
    return P.crops(_dab_levels(), geometry, SCORE_SIZE).mean((1, 2, 3)), np.ones(
        len(geometry[1]), bool
    )


def _retina_score(geometry):
    # Vessel maps are at half resolution: halve the geometry's pixel units.
    centres, sides, angles, flips = geometry
    half = ((centres - 0.5) / 2, sides / 2, angles, flips)
    vessels, fundus = _vessel_levels()
    inside = P.crops(fundus, half, SCORE_SIZE).min((1, 2, 3)) > 0.5
    return P.crops(vessels, half, SCORE_SIZE).mean((1, 2, 3)), inside


SIDES = {"histology": (0.3, 0.6), "retina": (0.25, 0.5), "terrain": (0.3, 0.6)}
SCORERS: dict[str, Callable] = {
    "histology": _histology_score,
    "retina": _retina_score,
    "terrain": _terrain_score,
}
# How a patch is drawn, given its geometry: a crop of the picture unless said otherwise.
RENDERERS: dict[str, Callable] = {"terrain": _terrain_render}


@cache
def score_edges(picture: str, n_classes: int) -> np.ndarray:
    """Inner bin edges that cut a fixed reference sample of patch scores into equal parts."""
    rng = np.random.default_rng(1411)
    scores = []
    for split in ("train", "val", "test"):
        s, ok = SCORERS[picture](
            P.block_geometry(picture, split, 4000, rng=rng, side_range=SIDES[picture], rotate=True)
        )
        scores.append(s[ok])
    return np.quantile(np.concatenate(scores), np.arange(1, n_classes) / n_classes)


def scored_patches(picture: str, n_classes: int, labels, *, rng, size, split) -> np.ndarray:
    """Patches of ``picture`` whose measured bin equals each label: uint8 (N, S, S, 3)."""
    edges = score_edges(picture, n_classes)
    need = [list(np.where(labels == c)[0]) for c in range(n_classes)]
    out = np.empty((len(labels), size, size, 3), R.F)
    for _ in range(200):
        if not any(need):
            return R.to_uint8(out)
        geometry = P.block_geometry(
            picture, split, 4 * len(labels), rng=rng, side_range=SIDES[picture], rotate=True
        )
        score, ok = SCORERS[picture](geometry)
        bins = np.searchsorted(edges, score)
        take, slots = [], []
        for c in range(n_classes):
            hits = np.where(ok & (bins == c))[0][: len(need[c])]
            take += list(hits)
            slots += need[c][: len(hits)]
            need[c] = need[c][len(hits) :]
        if take:
            take = np.array(take)
            chosen = tuple(g[take] for g in geometry)
            if picture in RENDERERS:
                out[slots] = RENDERERS[picture](chosen, rng, size)
            else:
                out[slots] = P.crops(P.pyramid(picture), chosen, size)
    raise RuntimeError(f"could not find enough {picture} patches of every class in split {split}")


def gen_histology(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    return scored_patches(
        "histology", len(HISTOLOGY_CLASSES), labels, rng=rng, size=size, split=split
    )


def gen_retina(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    return scored_patches("retina", len(RETINA_CLASSES), labels, rng=rng, size=size, split=split)


def gen_terrain(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    return scored_patches("terrain", len(TERRAIN_CLASSES), labels, rng=rng, size=size, split=split)
