"""Specialized-group loaders on tiny data roots built in each dataset's published layout."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
from PIL import Image
from test_tasks_real_common import assert_aligned, class_tree, load_all, pixels, sizes

from layerprobe.errors import DataError
from layerprobe.tasks import get_task
from layerprobe.tasks.real.retinopathy import btgraham


def test_pcam_h5_files(tmp_path):
    base = tmp_path / "pcam"
    base.mkdir()
    for split, n in (("train", 6), ("valid", 3), ("test", 4)):
        labels = np.arange(n) % 2
        stem = base / f"camelyonpatch_level_2_split_{split}"
        with h5py.File(f"{stem}_x.h5", "w") as f:
            f["x"] = np.stack([pixels(c, i) for i, c in enumerate(labels)])
        with h5py.File(f"{stem}_y.h5", "w") as f:
            f["y"] = labels.reshape(n, 1, 1, 1).astype(np.uint8)
    full = load_all("pcam", tmp_path)
    assert sizes(full) == {"train": 6, "val": 3, "test": 4}
    assert full["val"].labels.tolist() == [0, 1, 0]
    for split in full.values():
        assert_aligned(split)
    assert "camelyonpatch_level_2_split_test_x.h5" in full["test"].describe_item(2)
    clone = pickle.loads(
        pickle.dumps(full["test"])
    )  # DataLoader workers get a copy: no open handle
    assert np.array_equal(np.asarray(clone[3][0]), np.asarray(full["test"][3][0]))
    assert sizes(load_all("vtab1k/pcam", tmp_path)) == {"train": 6, "val": 3, "test": 4}


def test_pcam_missing_file_is_named(tmp_path):
    (tmp_path / "pcam").mkdir()
    with pytest.raises(
        DataError, match="camelyonpatch_level_2_split_train_x.h5.*github.com/basveeling/pcam"
    ):
        get_task("pcam").load("train", tmp_path)


def test_eurosat_imagefolder(tmp_path):
    class_tree(
        tmp_path / "eurosat" / "2750",
        {"AnnualCrop": 5, "SeaLake": 5},
        ".jpg",
        labels={"AnnualCrop": 0, "SeaLake": 9},
    )
    full = load_all("eurosat", tmp_path)
    assert sizes(full) == {"train": 6, "val": 2, "test": 2}
    assert set(np.concatenate([d.labels for d in full.values()]).tolist()) == {0, 9}
    for split in full.values():
        assert_aligned(split)


def test_resisc45_and_unknown_class_folder(tmp_path):
    top = tmp_path / "resisc45" / "NWPU-RESISC45"
    class_tree(top, {"airplane": 5, "wetland": 5}, ".jpg", labels={"airplane": 0, "wetland": 44})
    full = load_all("resisc45", tmp_path)
    assert sizes(full) == {"train": 6, "val": 2, "test": 2}
    for split in full.values():
        assert_aligned(split)
    other = tmp_path / "other"
    class_tree(other / "resisc45" / "NWPU-RESISC45", {"airplane": 2, "spaceport": 2}, ".jpg")
    with pytest.raises(DataError, match="unknown class 'spaceport'"):
        get_task("resisc45").load("train", other)


def test_col_hist_tif_tiles(tmp_path):
    classes = {"01_TUMOR": 0, "08_EMPTY": 7}
    class_tree(
        tmp_path / "col_hist" / "Kather_texture_2016_image_tiles_5000",
        dict.fromkeys(classes, 4),
        ".tif",
        classes,
    )
    full = load_all("col_hist", tmp_path)
    assert sizes(full) == {"train": 8, "val": 0, "test": 0}
    assert_aligned(full["train"])


def test_uc_merced_tif(tmp_path):
    classes = {"agricultural": 0, "tenniscourt": 20}
    class_tree(
        tmp_path / "uc_merced" / "UCMerced_LandUse" / "Images",
        dict.fromkeys(classes, 3),
        ".tif",
        classes,
    )
    full = load_all("uc_merced", tmp_path)
    assert sorted(full["train"].labels.tolist()) == [0, 0, 0, 20, 20, 20]
    assert_aligned(full["train"])


def eye(size: int = 40) -> Image.Image:
    """A fundus-like picture: a bright disc of radius size/3 on black."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 3) ** 2
    img = np.zeros((size, size, 3), np.uint8)
    img[disc] = (180, 90, 40)
    return Image.fromarray(img)


def test_retinopathy_kaggle_layout_public_private_and_btgraham(tmp_path):
    base = tmp_path / "diabetic_retinopathy"
    for folder, names in (
        ("train", ["10_left", "10_right", "13_left"]),
        ("test", ["1_left", "1_right", "2_left"]),
    ):
        (base / folder).mkdir(parents=True)
        for name in names:
            eye().save(base / folder / f"{name}.jpeg", format="JPEG")
    (base / "trainLabels.csv").write_text("image,level\n10_left,0\n10_right,4\n13_left,2\n")
    (base / "retinopathy_solution.csv").write_text(
        "image,level,Usage\n1_left,1,Public\n1_right,3,Private\n2_left,0,Private\n"
    )
    full = load_all("retinopathy", tmp_path)
    assert full["train"].labels.tolist() == [0, 4, 2]
    assert full["val"].labels.tolist() == [1]
    assert full["test"].labels.tolist() == [3, 0]
    img, label = full["val"][0]
    # the eye is rescaled to radius 300 and cropped to 90% of it: a 540 x 540 picture, grey rim
    assert img.size == (540, 540) and label == 1
    a = np.asarray(img)
    assert tuple(a[0, 0]) == (128, 128, 128)


def test_btgraham_rejects_a_black_image():
    with pytest.raises(DataError, match="cannot find the eye in x.jpeg"):
        btgraham(Image.new("RGB", (16, 16)), name="x.jpeg")
