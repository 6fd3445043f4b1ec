"""The built-in offline suite: ``builtin/*`` tasks generated without any download.

One upstream task to pre-train small models on (``builtin/upstream``: 120 classes of
procedural objects, 32,400 images) and 23 downstream tasks spread on purpose from close
to far from it, mirroring VTAB's natural / specialized / structured groups:

* natural: new object classes and coarse groupings of the upstream kind (close), then
  handwritten digits, photo scenes, faces and 3D toy categories from real or rendered
  pictures (farther);
* specialized: texture, histology, retina and terrain patches cut from pictures and an
  elevation model that ship with scikit-image and matplotlib;
* structured: counting, depth, x / y position, orientation, size, 3D azimuth and
  elevation, left-of and in-front-of relations in procedural scenes.

Every task has ``train``, ``val`` and ``test`` splits, exactly balanced (its description
says how many images per class each split holds), drawn deterministically from a seed at
any image size (default 32 px). The whole suite takes about 10 s of CPU at 32 px
(``python -m layerprobe.tasks.builtin`` prints the time per task); the cost grows with the
number of pixels. Splits are generated on first use and kept in memory (up to 1 GiB); set
``configure(cache_dir=...)`` or ``$LAYERPROBE_BUILTIN_CACHE`` (a folder, or ``1`` for
``~/.cache/layerprobe/builtin``) to also keep them on disk as ``.npy`` files, read back
memory-mapped -- worth it at large image sizes.

``get_task("builtin/...")`` takes no arguments, so the registered tasks follow
:func:`configure` (or ``$LAYERPROBE_BUILTIN_SIZE`` / ``$LAYERPROBE_BUILTIN_SEED``);
:func:`builtin_task` builds a task pinned to a given size and seed.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from layerprobe.errors import DataError, UnknownNameError, did_you_mean
from layerprobe.tasks.base import ArraySplit, Task
from layerprobe.tasks.builtin import natural, objects, render3d, specialized, structured
from layerprobe.tasks.builtin import raster as R
from layerprobe.tasks.builtin.config import (
    BuiltinSettings,
    check_image_size,
    check_seed,
    configure,
    reset,
    settings,
)
from layerprobe.tasks.builtin.generate import (
    GENERATOR_VERSION,
    clear_memory,
    generate_split,
    load_split,
)
from layerprobe.tasks.builtin.spec import SPLITS, BuiltinSpec
from layerprobe.tasks.registry import register_task

__all__ = [
    "GENERATOR_VERSION",
    "SPECS",
    "BuiltinSettings",
    "BuiltinSpec",
    "builtin_task",
    "clear_memory",
    "configure",
    "generate_split",
    "load_arrays",
    "reset",
    "settings",
]

PREFIX = "builtin/"


def _bins(what: str, edges: np.ndarray, fmt: str = "{:.2f}") -> tuple[str, ...]:
    return tuple(
        f"{what} {fmt.format(a)}..{fmt.format(b)}"
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    )


def _specs() -> list[BuiltinSpec]:
    S, D = structured, render3d
    up = tuple(objects.triple_name(*t) for t in objects.upstream_triples())
    novel = tuple(objects.triple_name(*t) for t in objects.novel_triples())
    deg = np.degrees
    return [
        BuiltinSpec(
            "upstream",
            "upstream",
            up,
            objects.gen_upstream,
            per_class=(200, 20, 50),
            summary="Pre-training task: 120 procedural object classes (shape x colour x fill pattern) at random poses on cluttered backgrounds",
        ),
        # natural: close to upstream first, then farther
        BuiltinSpec(
            "objects-novel",
            "natural",
            novel,
            objects.gen_novel,
            summary="30 object classes never seen upstream (known shapes and colours, new fill patterns); closest to upstream",
        ),
        BuiltinSpec(
            "objects-shape",
            "natural",
            R.SHAPE_NAMES,
            objects.gen_by_shape,
            summary="Outline of a procedural object (any colour and fill): a coarse grouping of upstream classes",
        ),
        BuiltinSpec(
            "objects-colour",
            "natural",
            R.HUE_NAMES,
            objects.gen_by_hue,
            summary="Hue of a procedural object (any shape and fill): a coarse grouping of upstream classes",
        ),
        BuiltinSpec(
            "objects-texture",
            "natural",
            objects.TEXTURE_WORDS,
            objects.gen_by_texture,
            summary="Fill pattern of a procedural object (any shape and colour): a coarse grouping of upstream classes",
        ),
        BuiltinSpec(
            "digits",
            "natural",
            tuple(str(d) for d in range(10)),
            natural.gen_digits,
            summary="Handwritten digit (scikit-learn 8x8 scans, disjoint per split) enlarged, turned and coloured on a noisy background",
        ),
        BuiltinSpec(
            "scenes",
            "natural",
            natural.SCENES,
            natural.gen_scenes,
            summary="Which of 9 bundled photos a crop comes from (each photo's blocks split between train, val and test)",
        ),
        BuiltinSpec(
            "faces",
            "natural",
            ("face", "not face"),
            natural.gen_faces,
            per_class=natural.FACE_PER_CLASS,
            whole_split=True,
            summary="Face or background patch (scikit-image's LFW subset, every item used once)",
        ),
        BuiltinSpec(
            "toys-category",
            "natural",
            D.CATEGORIES,
            D.gen_category,
            summary="Category of a rendered grey 3D toy (car, plane, house, chair, animal) at any azimuth and elevation",
        ),
        # specialized
        BuiltinSpec(
            "textures",
            "specialized",
            specialized.TEXTURES,
            specialized.gen_textures,
            summary="Grey texture (brick, grass, gravel, print, handwriting, star field): rotated crops, brightness and contrast normalised",
        ),
        BuiltinSpec(
            "histology",
            "specialized",
            specialized.HISTOLOGY_CLASSES,
            specialized.gen_histology,
            summary="Amount of brown DAB stain in an immunohistochemistry patch (tertiles)",
        ),
        BuiltinSpec(
            "retina",
            "specialized",
            specialized.RETINA_CLASSES,
            specialized.gen_retina,
            summary="Blood-vessel density of a fundus photo patch (quartiles)",
        ),
        BuiltinSpec(
            "terrain",
            "specialized",
            specialized.TERRAIN_CLASSES,
            specialized.gen_terrain,
            summary="Mean slope (quartiles) of a shaded-relief patch of a real elevation model, sun at random",
        ),
        # structured
        BuiltinSpec(
            "count",
            "structured",
            tuple(str(k) for k in range(1, S.COUNT_MAX + 1)),
            S.gen_count,
            summary="Number of objects (1-6) in a scene of small shapes (CLEVR-count style)",
        ),
        BuiltinSpec(
            "distance",
            "structured",
            _bins("depth", S.bin_edges(S.DEPTH_RANGE, S.DIST_BINS, log=True)),
            S.gen_distance,
            summary="Depth bin of the closest of 1-4 objects on a ground plane in perspective (CLEVR/KITTI-distance style)",
        ),
        BuiltinSpec(
            "loc-x",
            "structured",
            _bins("x", S.bin_edges((-S.LOC_RANGE, S.LOC_RANGE), S.LOC_BINS)),
            S.gen_loc_x,
            summary="Horizontal position bin of a white sprite on black (dSprites x-position style)",
        ),
        BuiltinSpec(
            "loc-y",
            "structured",
            _bins("y", S.bin_edges((-S.LOC_RANGE, S.LOC_RANGE), S.LOC_BINS)),
            S.gen_loc_y,
            summary="Vertical position bin of a white sprite on black (dSprites y-position style)",
        ),
        BuiltinSpec(
            "orientation",
            "structured",
            _bins("angle", deg(S.bin_edges((0, 2 * np.pi), S.ORIENT_BINS)), "{:.1f}"),
            S.gen_orientation,
            summary="Rotation bin of an asymmetric sprite anywhere in the frame (dSprites orientation style)",
        ),
        BuiltinSpec(
            "size",
            "structured",
            _bins("scale", S.bin_edges(S.SIZE_RANGE, S.SIZE_BINS, log=True)),
            S.gen_size,
            summary="Size bin of a white sprite on black (dSprites scale style)",
        ),
        BuiltinSpec(
            "azimuth",
            "structured",
            _bins("azimuth", deg(S.bin_edges((0, 2 * np.pi), D.AZIMUTH_BINS)), "{:.0f}"),
            D.gen_azimuth,
            summary="Azimuth bin (20 degrees) of a rendered 3D toy of any category (smallNORB azimuth style)",
        ),
        BuiltinSpec(
            "elevation",
            "structured",
            _bins("elevation", deg(S.bin_edges((0, np.pi / 2), D.ELEVATION_BINS)), "{:.0f}"),
            D.gen_elevation,
            summary="Camera elevation bin (10 degrees) over a rendered 3D toy (smallNORB elevation style)",
        ),
        BuiltinSpec(
            "relation",
            "structured",
            ("circle left of square", "circle right of square"),
            S.gen_relation,
            summary="Whether the circle is left or right of the square (random colours, a distractor star)",
        ),
        BuiltinSpec(
            "occlusion",
            "structured",
            ("circle in front", "square in front"),
            S.gen_occlusion,
            summary="Which of two overlapping shapes, a circle and a square, is in front",
        ),
    ]


SPECS: dict[str, BuiltinSpec] = {spec.name: spec for spec in _specs()}


def _spec(name: str) -> BuiltinSpec:
    short = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if short not in SPECS:
        raise UnknownNameError(
            f"unknown built-in task {name!r}.{did_you_mean(PREFIX + short, [PREFIX + s for s in SPECS])} "
            "Run `layerprobe tasks --builtin` to list them."
        )
    return SPECS[short]


def load_arrays(
    name: str, split: str, image_size: int | None = None, *, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images (N, S, S, 3) uint8 and labels (N,) int64 of one split, from the caches or generated.

    ``image_size`` and ``seed`` default to the current :func:`settings`. The arrays are
    read-only views shared with the in-memory cache.
    """
    spec = _spec(name)
    if split not in SPLITS:
        raise DataError(
            f"task {PREFIX + spec.name!r} has no split {split!r}; it has {', '.join(SPLITS)}"
        )
    now = settings()
    size = now.image_size if image_size is None else check_image_size(image_size)
    seed = now.seed if seed is None else check_seed(seed)
    return load_split(spec, split, size, seed=seed, cache_dir=now.cache_dir)


def _loader(
    spec: BuiltinSpec, image_size: int | None, seed: int | None, split: str, _root: Path | None
) -> ArraySplit:
    images, labels = load_arrays(spec.name, split, image_size, seed=seed)
    return ArraySplit(images, labels)


def _count(spec: BuiltinSpec, split: str, _root: Path | None) -> int:
    return spec.split_size(split)


def _fingerprint(
    image_size: int | None, seed: int | None, _split: str | None = None, _content: bool = False
) -> str:
    """What the images depend on besides the task name, e.g. ``builtin-v1-32px-seed0``.

    Registered tasks follow :func:`configure`, so their fingerprint is read when called;
    a feature cache can store it and notice when the images it was made from changed.
    """
    now = settings()
    size = now.image_size if image_size is None else image_size
    seed = now.seed if seed is None else seed
    return f"builtin-v{GENERATOR_VERSION}-{size}px-seed{seed}"


def _task(spec: BuiltinSpec, image_size: int | None, seed: int | None) -> Task:
    tr, va, te = spec.per_class
    return Task(
        name=PREFIX + spec.name,
        group=spec.group,
        classes=spec.classes,
        splits=SPLITS,
        loader=partial(_loader, spec, image_size, seed),
        description=spec.description,
        locate=None,  # nothing to find: everything is generated
        count=partial(_count, spec),  # split sizes are known without generating anything
        extra={
            "builtin": True,
            "per_class": {"train": tr, "val": va, "test": te},
            "image_size": image_size,
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
        },
        fingerprinter=partial(_fingerprint, image_size, seed),
    )


def builtin_task(name: str, image_size: int = 32, seed: int = 0) -> Task:
    """A built-in task pinned to ``image_size`` (px, 8..1024) and ``seed`` (>= 0).

    ``name`` may be given with or without the ``builtin/`` prefix. The registered task of
    the same name (``get_task``) follows :func:`configure` instead.
    """
    return _task(_spec(name), check_image_size(image_size), check_seed(seed))


for _s in SPECS.values():
    register_task(_task(_s, None, None))
