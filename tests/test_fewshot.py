"""Few-shot sampling exactly as the recipe, and the validation hold-out disjoint from every shot set."""

from __future__ import annotations

import numpy as np
import pytest

from layerprobe.errors import DataError
from layerprobe.tasks import fewshot_indices, holdout_split

SHOTS = (1, 5, 10, 25)


def labels_for(counts: list[int], seed: int = 123) -> np.ndarray:
    """Labels with ``counts[c]`` examples of class c, shuffled."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return np.random.default_rng(seed).permutation(labels)


def recipe(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The issue's wording, literally."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in sorted(set(labels.tolist())):
        picked.append(rng.permutation(np.where(labels == c)[0])[:k])
    return np.concatenate(picked)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_indices_are_exactly_the_recipe(seed):
    labels = labels_for([30, 41, 25, 60])
    got = fewshot_indices(labels, SHOTS, seed)
    for k in SHOTS:
        assert np.array_equal(got[k], recipe(labels, k, seed))
        assert np.bincount(labels[got[k]]).tolist() == [k] * 4
        assert got[k].dtype == np.int64


def test_shots_are_nested_and_seeds_differ():
    labels = labels_for([30, 30, 30])
    a = fewshot_indices(labels, SHOTS, seed=0)
    for small, big in zip(SHOTS, SHOTS[1:], strict=False):
        for c in range(3):
            s = a[small][labels[a[small]] == c]
            b = a[big][labels[a[big]] == c]
            assert np.array_equal(b[:small], s)  # the k-shot set starts with the smaller one
    assert np.array_equal(fewshot_indices(labels, SHOTS, seed=0)[5], a[5])
    assert not np.array_equal(fewshot_indices(labels, SHOTS, seed=1)[5], a[5])


def test_zero_shots_means_the_whole_split():
    labels = labels_for([3, 4])
    assert fewshot_indices(labels, [0], 0)[0].tolist() == list(range(7))


def test_too_few_examples_names_the_class_and_its_count():
    labels = labels_for([30, 7, 30])
    with pytest.raises(
        DataError,
        match=r"class 'cat' has 7 train examples, fewer than 10 shots; lower --shots to at most 7",
    ):
        fewshot_indices(labels, (1, 5, 10), 0, class_names=["dog", "cat", "cow"])


def test_a_class_absent_from_train_is_an_error_when_num_classes_is_known():
    labels = labels_for([5, 0, 5])
    assert len(fewshot_indices(labels, [2], 0)[2]) == 4  # without num_classes: present classes only
    with pytest.raises(DataError, match="class '1' has 0 train examples"):
        fewshot_indices(labels, [2], 0, num_classes=3)


def test_labels_out_of_range_and_negative_shots():
    with pytest.raises(DataError, match="train label 5 is outside 0..2"):
        fewshot_indices(np.array([0, 1, 5]), [1], 0, num_classes=3)
    with pytest.raises(DataError, match="shots must be >= 0"):
        fewshot_indices(np.array([0, 1]), [-1], 0)


def test_holdout_is_fixed_stratified_and_disjoint_from_every_shot_set():
    labels = labels_for([60, 45, 80])
    train_idx, val_idx = holdout_split(labels, fraction=0.2, seed=0)
    assert not set(train_idx) & set(val_idx)
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[val_idx]).tolist() == [12, 9, 16]
    again = holdout_split(labels, fraction=0.2, seed=0)
    assert np.array_equal(again[1], val_idx)
    for seed in range(3):  # shots are drawn from the train part only, for any shot seed
        shots = fewshot_indices(labels[train_idx], SHOTS, seed)
        for k in SHOTS:
            assert not set(train_idx[shots[k]]) & set(val_idx)


def test_holdout_keeps_one_train_example_per_class_and_honours_max_per_class():
    labels = labels_for([2, 100])
    train_idx, val_idx = holdout_split(labels, fraction=0.9, seed=0, max_per_class=20)
    assert np.bincount(labels[train_idx]).tolist() == [1, 80]
    assert np.bincount(labels[val_idx]).tolist() == [1, 20]


def test_real_task_shots_name_the_class_and_are_disjoint_from_its_val_split(tmp_path):
    from test_tasks_real_common import class_tree

    from layerprobe.tasks import get_task

    # EuroSAT with 10 + 4 images -> 60/20/20 of one fixed permutation
    class_tree(tmp_path / "eurosat" / "2750", {"AnnualCrop": 10, "Forest": 4}, ".jpg")
    task = get_task("eurosat")
    train, val = task.load("train", tmp_path), task.load("val", tmp_path)
    n_forest = int((train.labels == 1).sum())
    with pytest.raises(
        DataError, match=f"class 'Forest' has {n_forest} train examples, fewer than 5 shots"
    ):
        fewshot_indices(train.labels, [1, 5], 0, class_names=task.classes)
    with pytest.raises(DataError, match="class 'HerbaceousVegetation' has 0 train examples"):
        fewshot_indices(
            train.labels, [1], 0, class_names=task.classes, num_classes=task.num_classes
        )
    shots = fewshot_indices(train.labels, [1], 0, class_names=task.classes)
    picked = {train.describe_item(i) for i in shots[1]}
    assert not picked & {val.describe_item(i) for i in range(len(val))}
