"""The real-task machinery: fixed splits, vtab1k subsets, data-root errors. Also holds the
helpers the per-group tests use to build tiny data roots in each dataset's published layout.

Every tiny image carries its label in the red channel of pixel (0, 0), so a test can check that
each image is paired with the right label (PNG content is written even under .jpg names, which
PIL reads by content, so the check is exact).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerprobe.errors import DataError, UnknownNameError
from layerprobe.tasks import get_task, list_tasks
from layerprobe.tasks.base import ArraySplit
from layerprobe.tasks.real._common import (
    VTAB_TRAIN,
    VTAB_VAL,
    SubsetSplit,
    count_split,
    percent_split,
)

SIZE = 8


def pixels(label: int, tag: int = 0, size: int = SIZE) -> np.ndarray:
    """A (size, size, 3) uint8 image whose red channel is ``label`` and green is ``tag``."""
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0] = label
    img[..., 1] = tag % 256
    return img


def save(path: Path, label: int, tag: int = 0, size: int = SIZE) -> Path:
    """Write a labelled tiny image (TIFF for .tif, else PNG content whatever the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "TIFF" if path.suffix.lower() in (".tif", ".tiff") else "PNG"
    Image.fromarray(pixels(label, tag, size)).save(path, format=fmt)
    return path


def class_tree(
    top: Path, counts: dict[str, int], suffix: str = ".jpg", labels: dict[str, int] | None = None
) -> None:
    """``top/<class>/<class>_<i><suffix>`` images; pixel label = ``labels[class]`` (default: order)."""
    for order, (name, n) in enumerate(counts.items()):
        label = labels[name] if labels else order
        for i in range(n):
            save(top / name / f"{name}_{i:03d}{suffix}", label, i)


def assert_aligned(split, check_all: bool = True) -> None:
    """Every image's red pixel equals its label (images and labels stay paired through splits)."""
    rows = range(len(split)) if check_all else range(min(len(split), 5))
    for i in rows:
        img, label = split[i]
        assert img.mode == "RGB"
        assert np.asarray(img)[0, 0, 0] == label, (
            f"item {i} ({split.describe_item(i)}) has label {label}"
        )


def load_all(name: str, root: Path) -> dict:
    """Every split of a task; also checks that the sizes `layerprobe tasks` reports (counted
    before anything is built) are the sizes of the loaded splits."""
    task = get_task(name)
    counted = task.split_sizes(root)
    splits = {s: task.load(s, root) for s in task.splits}
    assert counted == sizes(splits)
    return splits


def sizes(splits: dict) -> dict:
    """{split: number of examples} of loaded splits."""
    return {s: len(d) for s, d in splits.items()}


# --------------------------------------------------------------------------- the machinery
def test_every_vtab_task_is_registered_with_its_group_and_classes():
    expected = {
        "cifar100": ("natural", 100),
        "caltech101": ("natural", 102),
        "dtd": ("natural", 47),
        "flowers102": ("natural", 102),
        "pets": ("natural", 37),
        "svhn": ("natural", 10),
        "sun397": ("natural", 397),
        "pcam": ("specialized", 2),
        "eurosat": ("specialized", 10),
        "resisc45": ("specialized", 45),
        "retinopathy": ("specialized", 5),
        "clevr_count": ("structured", 8),
        "clevr_distance": ("structured", 6),
        "dmlab": ("structured", 6),
        "kitti_distance": ("structured", 4),
        "dsprites_location": ("structured", 16),
        "dsprites_orientation": ("structured", 16),
        "smallnorb_azimuth": ("structured", 18),
        "smallnorb_elevation": ("structured", 9),
    }
    others = {
        "imagenet": ("natural", 1000),
        "cars": ("natural", 196),
        "birds": ("natural", 200),
        "cifar10": ("natural", 10),
        "col_hist": ("specialized", 8),
        "uc_merced": ("specialized", 21),
    }
    names = {t.name for t in list_tasks(builtin=False)}
    for name, (group, n) in {**expected, **others}.items():
        for full in [name] + ([f"vtab1k/{name}"] if name in expected else []):
            task = get_task(full)
            assert (task.group, task.num_classes, task.splits) == (
                group,
                n,
                ("train", "val", "test"),
            )
            assert len(list(task.classes)) == n
    assert sum(n.startswith("vtab1k/") for n in names) == 19
    assert "vtab1k/imagenet" not in names


def test_percent_split_is_fixed_disjoint_and_sized_like_task_adaptation():
    train, val, test = percent_split(27000, 60, 20)
    assert (len(train), len(val), len(test)) == (16200, 5400, 5400)
    assert len(np.unique(np.concatenate([train, val, test]))) == 27000
    again = percent_split(27000, 60, 20)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    # the cut is of a permutation, not of file order (dSprites files are ordered by factor)
    assert train.max() > 20000 and test.min() < 1000
    a, b = percent_split(50000, 90)
    assert (len(a), len(b)) == (45000, 5000)
    assert [len(p) for p in count_split(5000, 1600, 400)] == [1600, 400, 3000]


def test_subset_split_keeps_images_paired_with_labels():
    images = np.stack([pixels(i % 7, i) for i in range(20)])
    base = ArraySplit(images, [i % 7 for i in range(20)])
    sub = SubsetSplit(base, np.array([3, 11, 19]))
    assert sub.labels.tolist() == [3, 4, 5]
    assert_aligned(sub)
    assert [int(np.asarray(sub[i][0])[0, 0, 1]) for i in range(3)] == [3, 11, 19]


def test_missing_data_root_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("LAYERPROBE_DATA", raising=False)
    with pytest.raises(DataError, match="--data-root DIR or set LAYERPROBE_DATA.*cifar-100-python"):
        get_task("cifar100").load("train")


def test_missing_files_name_what_was_expected_where_and_the_url(tmp_path):
    with pytest.raises(DataError) as err:
        get_task("vtab1k/dtd").load("train", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "dtd" / "dtd" / "labels" / "train1.txt") in msg
    assert "https://www.robots.ox.ac.uk/~vgg/data/dtd/" in msg
    found, what = get_task("dtd").find(tmp_path)
    assert not found and str(tmp_path / "dtd") in what and "http" in what


def test_env_var_is_the_default_data_root(tmp_path, monkeypatch):
    class_tree(
        tmp_path / "uc_merced" / "UCMerced_LandUse" / "Images",
        {"agricultural": 3, "airplane": 3},
        ".tif",
    )
    monkeypatch.setenv("LAYERPROBE_DATA", str(tmp_path))
    task = get_task("uc_merced")
    assert task.find() == (True, "")
    assert sum(task.split_sizes().values()) == 6


def test_unknown_task_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean: .*cifar100"):
        get_task("cifar_100")
    with pytest.raises(UnknownNameError, match="vtab1k/smallnorb_azimuth"):
        get_task("vtab1k/smallnorb_azimut")


def test_vtab1k_takes_800_train_and_200_val_of_the_full_splits_and_the_whole_test(tmp_path):
    # EuroSAT: 60/20/20 of 1,400 images -> full 840/280/280, vtab1k 800/200/280.
    class_tree(tmp_path / "eurosat" / "2750", {"AnnualCrop": 700, "Forest": 700}, ".jpg")
    full = load_all("eurosat", tmp_path)
    vtab = load_all("vtab1k/eurosat", tmp_path)
    assert {s: len(d) for s, d in full.items()} == {"train": 840, "val": 280, "test": 280}
    assert {s: len(d) for s, d in vtab.items()} == {
        "train": VTAB_TRAIN,
        "val": VTAB_VAL,
        "test": 280,
    }
    full_train = set(full["train"].describe_item(i) for i in range(len(full["train"])))
    full_val = set(full["val"].describe_item(i) for i in range(len(full["val"])))
    vtab_train = set(vtab["train"].describe_item(i) for i in range(len(vtab["train"])))
    vtab_val = set(vtab["val"].describe_item(i) for i in range(len(vtab["val"])))
    assert vtab_train <= full_train and vtab_val <= full_val and not vtab_train & vtab_val
    test = set(full["test"].describe_item(i) for i in range(280))
    assert not (full_train | full_val) & test
    # both classes in the 800: a random subset, not the first files in class order
    assert set(vtab["train"].labels.tolist()) == {0, 1}
    assert_aligned(vtab["train"], check_all=False)


def test_corrupt_image_is_named(tmp_path):
    top = tmp_path / "uc_merced" / "UCMerced_LandUse" / "Images"
    class_tree(top, {"agricultural": 10, "airplane": 10}, ".tif")
    bad = top / "airplane" / "airplane_005.tif"
    bad.write_bytes(b"not an image")
    task = get_task("uc_merced")
    splits = load_all("uc_merced", tmp_path)
    split = next(
        s for s in splits.values() if str(bad) in [s.describe_item(i) for i in range(len(s))]
    )
    i = [split.describe_item(j) for j in range(len(split))].index(str(bad))
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        split[i]
    # sizing never decodes images: the corrupt file does not stop it (fixed counts 800/200 of 20)
    assert task.split_sizes(tmp_path) == {"train": 20, "val": 0, "test": 0}


def test_vtab1k_file_list_release_is_read_when_present(tmp_path):
    folder = tmp_path / "vtab-1k" / "dtd"
    for split, n in (("train800", 8), ("val200", 2), ("test", 5)):
        lines = []
        for i in range(n):
            save(folder / "images" / split / f"{i:06d}.jpg", (i * 7) % 47, i)
            lines.append(f"images/{split}/{i:06d}.jpg {(i * 7) % 47}")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    splits = load_all("vtab1k/dtd", tmp_path)
    assert {s: len(d) for s, d in splits.items()} == {"train": 8, "val": 2, "test": 5}
    for split in splits.values():
        assert_aligned(split)
    assert get_task("vtab1k/dtd").find(tmp_path) == (True, "")
    found, what = get_task("dtd").find(tmp_path)  # the full-split task needs the original data
    assert not found
    _, what = get_task("vtab1k/pets").find(tmp_path)
    assert str(tmp_path / "vtab-1k" / "oxford_iiit_pet" / "train800.txt") in what
    (folder / "test.txt").write_text("images/test/000000.jpg\n")
    os.utime(folder / "test.txt", ns=(1, 1))  # a new mtime even on coarse-grained file systems
    with pytest.raises(DataError, match=r"test.txt:1: expected '<image path> <label>'"):
        get_task("vtab1k/dtd").load("test", tmp_path)
