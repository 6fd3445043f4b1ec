"""The built-in suite is neither trivial nor impossible: a linear probe on raw pixels.

A closed-form ridge classifier on flattened 32 px pixels (±1 targets, λ chosen on the val
split) beats chance by far on the easy tasks and stays near chance on the hard ones, which
need features a backbone has to learn (invariance to position, binding shape to place).
"""

from __future__ import annotations

import numpy as np
import pytest

import layerprobe.tasks.builtin as builtin
from layerprobe.tasks.builtin import load_arrays

LAMBDAS = (1e1, 1e2, 1e3, 1e4)


def _pixels(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_arrays(name, split, image_size=32, seed=0)
    return images.reshape(len(images), -1).astype(np.float64) / 255, labels


def raw_pixel_probe(name: str) -> float:
    """Test accuracy of a ridge classifier on raw pixels, λ picked on val."""
    (x, y), (xv, yv), (xt, yt) = (_pixels(name, s) for s in ("train", "val", "test"))
    mu, sd = x.mean(0), x.std(0) + 1e-5  # standardise with the train statistics
    x, xv, xt = (x - mu) / sd, (xv - mu) / sd, (xt - mu) / sd
    targets = 2 * np.eye(y.max() + 1)[y] - 1
    # Dual form (n train rows < d pixels): W = Xᵀ (XXᵀ + λI)⁻¹ Y, one eigh for every λ.
    eig, vec = np.linalg.eigh(x @ x.T)
    rhs = vec.T @ targets
    best_val, best_test = -1.0, 0.0
    for lam in LAMBDAS:
        w = x.T @ (vec @ (rhs / (eig + lam)[:, None]))
        val = float(((xv @ w).argmax(1) == yv).mean())
        if val > best_val:
            best_val, best_test = val, float(((xt @ w).argmax(1) == yt).mean())
    return best_test


@pytest.fixture(autouse=True, scope="module")
def _free_memory():
    yield
    builtin.clear_memory()


@pytest.mark.parametrize(
    ("name", "chance_multiple"),
    [("objects-colour", 3), ("loc-x", 5), ("scenes", 3), ("faces", 1.6), ("histology", 1.5)],
)
def test_easy_tasks_are_well_above_chance(name, chance_multiple):
    n_classes = len(builtin.SPECS[name].classes)
    accuracy = raw_pixel_probe(name)
    assert accuracy > chance_multiple / n_classes, f"{name}: {accuracy:.3f}"


@pytest.mark.parametrize(
    ("name", "chance_multiple"),
    [("relation", 1.3), ("occlusion", 1.3), ("textures", 1.6), ("orientation", 2.0)],
)
def test_hard_tasks_stay_near_chance_for_raw_pixels(name, chance_multiple):
    n_classes = len(builtin.SPECS[name].classes)
    accuracy = raw_pixel_probe(name)
    assert accuracy < chance_multiple / n_classes, f"{name}: {accuracy:.3f}"
