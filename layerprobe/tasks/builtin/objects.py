"""Procedural objects: a shape x colour x fill pattern, at a random pose, on a cluttered background.

This generator family feeds the upstream task and the downstream tasks closest to it.
An object class is a (shape, hue, texture) triple: 12 x 10 x 6 = 720 triples exist.
The upstream task uses 120 of them: every (shape, hue) pair once, each with one of the
six textures (each texture 20 times). The "novel" task uses 30 triples never seen
upstream: 15 (shape, hue) pairs, each with two textures other than its upstream one, so
telling them apart needs the fill pattern as well as the outline and colour.
Instances vary in position, size, rotation, colour shade and background, and carry up to
two small desaturated distractor shapes.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from layerprobe.tasks.builtin import raster as R

DESIGN_SEED = 2110_02095  # fixes which triples are classes; independent of the user's seed
TEXTURE_WORDS = ("solid", "striped", "checkered", "dotted", "shaded", "ringed")
N_SHAPES, N_HUES, N_TEXTURES = len(R.SHAPE_NAMES), len(R.HUE_NAMES), len(R.TEXTURE_NAMES)


@cache
def upstream_triples() -> np.ndarray:
    """(120, 3) int: (shape, hue, texture) of each upstream class."""
    rng = np.random.default_rng([DESIGN_SEED, 1])
    pairs = [(s, h) for s in range(N_SHAPES) for h in range(N_HUES)]
    textures = rng.permutation(np.arange(len(pairs)) % N_TEXTURES)
    return np.array([(s, h, t) for (s, h), t in zip(pairs, textures, strict=True)])


@cache
def novel_triples() -> np.ndarray:
    """(30, 3) int: (shape, hue, texture) of each class of the novel-objects task."""
    rng = np.random.default_rng([DESIGN_SEED, 2])
    up = upstream_triples()
    rows = []
    for i in rng.choice(len(up), 15, replace=False):
        s, h, t = up[i]
        others = rng.choice([x for x in range(N_TEXTURES) if x != t], 2, replace=False)
        rows += [(s, h, int(x)) for x in sorted(others)]
    return np.array(rows)


def triple_name(shape: int, hue: int, texture: int) -> str:
    return f"{R.HUE_NAMES[hue]} {TEXTURE_WORDS[texture]} {R.SHAPE_NAMES[shape]}"


def render_objects(rng: np.random.Generator, ids, size: int) -> np.ndarray:
    """One object per image: ``ids`` (shapes, hues, textures), each (N,) -> uint8 (N, S, S, 3)."""
    shapes, hues, textures = ids
    n = len(shapes)
    canvas = R.gradient_background(rng, n, size)
    # Distractors first, so the object is always on top: small, dull, any shape.
    for _ in range(2):
        present = rng.random(n) < 0.5
        alpha = R.shape_alpha(
            size,
            rng.integers(0, N_SHAPES, n),
            (
                rng.uniform(-0.8, 0.8, n),
                rng.uniform(-0.8, 0.8, n),
                rng.uniform(0.1, 0.2, n),
                rng.uniform(0, 2 * np.pi, n),
            ),
        )
        dull = R.random_colour(rng, n, sat=(0.0, 0.3), val=(0.2, 0.9))
        R.composite(canvas, alpha * R.col(present), dull)
    pose = (
        rng.uniform(-0.3, 0.3, n),
        rng.uniform(-0.3, 0.3, n),
        rng.uniform(0.42, 0.72, n),
        rng.uniform(0, 2 * np.pi, n),
    )
    alpha = R.shape_alpha(size, shapes, pose)
    mix = R.texture_mix(size, textures, pose)[..., None]
    primary = R.hue_colour(rng, hues)
    secondary = primary * rng.uniform(0.25, 0.5, (n, 1)).astype(R.F)
    fill = mix * primary[:, None, None, :] + (1 - mix) * secondary[:, None, None, :]
    R.composite(canvas, alpha, fill)
    # A global brightness/contrast change, as from a camera's exposure.
    gain, bias = R.col(rng.uniform(0.8, 1.15, n)), R.col(rng.uniform(-0.06, 0.06, n))
    return R.to_uint8(canvas * gain[..., None] + bias[..., None])


def _attributes(labels: np.ndarray, rng: np.random.Generator, fixed: dict[int, np.ndarray]):
    """(shape, hue, texture) arrays: the attribute at position i of ``fixed`` is looked up
    from the labels, the others are drawn uniformly."""
    n = len(labels)
    counts = (N_SHAPES, N_HUES, N_TEXTURES)
    return [fixed[i][labels] if i in fixed else rng.integers(0, counts[i], n) for i in range(3)]


def gen_upstream(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    t = upstream_triples()[labels]
    return render_objects(rng, (t[:, 0], t[:, 1], t[:, 2]), size)


def gen_novel(labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str) -> np.ndarray:
    t = novel_triples()[labels]
    return render_objects(rng, (t[:, 0], t[:, 1], t[:, 2]), size)


def gen_by_shape(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    return render_objects(rng, _attributes(labels, rng, {0: np.arange(N_SHAPES)}), size)


def gen_by_hue(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    return render_objects(rng, _attributes(labels, rng, {1: np.arange(N_HUES)}), size)


def gen_by_texture(
    labels: np.ndarray, rng: np.random.Generator, *, size: int, split: str
) -> np.ndarray:
    return render_objects(rng, _attributes(labels, rng, {2: np.arange(N_TEXTURES)}), size)
