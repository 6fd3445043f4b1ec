"""Shared test fixtures: tiny backbones (built once per session) and image batches.

Everything here runs on the CPU in well under a second per model and downloads nothing.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from tests.helpers_models import TINY_VIT, TINY_VIT_KWARGS


@pytest.fixture(scope="session")
def tiny_vit():
    """A Backbone of a 3-block timm ViT (class token, 'token' pooling) at 32 px."""
    from layerprobe.backbones import load

    return load(TINY_VIT, model_args=TINY_VIT_KWARGS)


@pytest.fixture(scope="session")
def tiny_mixer():
    """A Backbone of a 3-block timm MLP-Mixer at 32 px (no class token)."""
    from layerprobe.backbones import load

    return load("python:tests.helpers_models:tiny_mixer", image_size=32)


@pytest.fixture(scope="session")
def tiny_resnet():
    """A Backbone of a timm ResNet with one BasicBlock per stage, at 32 px."""
    from layerprobe.backbones import load

    return load("python:tests.helpers_models:tiny_resnet", image_size=32)


@pytest.fixture
def images():
    """A seeded batch of 3 normalised 32 px images, (3, 3, 32, 32) float32."""
    gen = torch.Generator().manual_seed(1234)
    return torch.randn(3, 3, 32, 32, generator=gen)


# -- image folders for extraction tests (added by the extract room) ------------------------------


def _write_class_folders(root, per_class: int = 10, seed: int = 0):
    """``root/class_{a,b,c}/img_XX.png``: seeded random RGB PNGs of mixed small sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("class_a", "class_b", "class_c"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = (36, 40) if i % 2 else (40, 34)
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img_{i:02d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    """An ImageFolder tree of 30 tiny PNGs (3 classes x 10), split ``all``; items in sorted order."""
    return _write_class_folders(tmp_path / "images")


@pytest.fixture
def split_folder(tmp_path):
    """An ImageFolder tree with ``train/`` (3 x 6), ``val/`` (3 x 2) and ``test/`` (3 x 2) sub-folders."""
    root = tmp_path / "splits"
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        _write_class_folders(root / split, per_class=n, seed=len(split))
    return root


# -- order of the files under `make test` ---------------------------------------------------------


def pytest_collection_modifyitems(config, items):
    """Order the files: those with slow tests first (most slow tests first; of as many, the one
    with fewer fast tests first, as its time is mostly the slow ones'), then the files with the
    most tests first.

    ``make test`` runs a file in one worker (``--dist loadfile``) and hands out files in this
    order (``--no-loadscope-reorder``): the long end-to-end files start at once and short files
    fill the workers at the end. xdist's own order (most tests first) starts the end-to-end
    files, one or two long tests each, last, where they run alone. A file's tests stay
    together, in their order.
    """
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    size = Counter(item.path for item in items)

    def rank(item) -> tuple[int, int]:
        n_slow, n = slow[item.path], size[item.path]
        return (-n_slow, n if n_slow else -n)

    items.sort(key=rank)  # stable: the order inside a file is kept
