"""Natural-group loaders on tiny data roots built in each dataset's published layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from test_tasks_real_common import assert_aligned, class_tree, load_all, pixels, save, sizes

from layerprobe.errors import DataError
from layerprobe.tasks import get_task


def cifar_rows(n: int, num_classes: int, offset: int = 0) -> tuple[np.ndarray, list[int]]:
    """CIFAR pickles store (N, 3072) rows, channel-major."""
    labels = [(i + offset) % num_classes for i in range(n)]
    data = np.stack([pixels(c, i, 32).transpose(2, 0, 1).reshape(-1) for i, c in enumerate(labels)])
    return data, labels


def dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_cifar100(tmp_path):
    base = tmp_path / "cifar-100-python"
    data, labels = cifar_rows(20, 100)
    dump(base / "train", {"data": data, "fine_labels": labels, "coarse_labels": [0] * 20})
    data, labels = cifar_rows(10, 100, offset=50)
    dump(base / "test", {"data": data, "fine_labels": labels, "coarse_labels": [0] * 10})
    dump(base / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    full = load_all("cifar100", tmp_path)
    assert sizes(full) == {"train": 18, "val": 2, "test": 10}
    assert sorted(full["train"].labels.tolist() + full["val"].labels.tolist()) == list(range(20))
    assert full["test"].labels.tolist() == list(range(50, 60))
    for split in full.values():
        assert_aligned(split)
    assert sizes(load_all("vtab1k/cifar100", tmp_path)) == {"train": 18, "val": 2, "test": 10}
    assert get_task("cifar100").classes[1] == "aquarium_fish"


def test_cifar10(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    for b in range(1, 6):
        data, labels = cifar_rows(4, 10, offset=b)
        dump(base / f"data_batch_{b}", {"data": data, "labels": labels})
    data, labels = cifar_rows(6, 10)
    dump(base / "test_batch", {"data": data, "labels": labels})
    dump(base / "batches.meta", {"label_names": list("abcdefghij")})
    full = load_all("cifar10", tmp_path)
    assert sizes(full) == {"train": 18, "val": 2, "test": 6}
    for split in full.values():
        assert_aligned(split)


def test_cifar_corrupt_pickle_is_named(tmp_path):
    base = tmp_path / "cifar-100-python"
    for name in ("train", "test", "meta"):
        base.mkdir(exist_ok=True)
        (base / name).write_bytes(b"garbage")
    (base / "train").write_bytes(
        pickle.dumps({"data": np.zeros((0, 3072), np.uint8), "fine_labels": []})
    )
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": []}))
    with pytest.raises(DataError, match=f"cannot read {base / 'test'}: "):
        get_task("cifar100").load("train", tmp_path)


def test_caltech101_keeps_background_and_draws_30_per_class(tmp_path):
    top = tmp_path / "caltech101" / "101_ObjectCategories"
    class_tree(top, {"BACKGROUND_Google": 33, "accordion": 35}, ".jpg")
    full = load_all("caltech101", tmp_path)
    trainval = np.concatenate([full["train"].labels, full["val"].labels])
    assert np.bincount(trainval).tolist() == [30, 30]  # 30 per class, background included
    assert np.bincount(full["test"].labels).tolist() == [3, 5]
    assert sizes(full) == {"train": 54, "val": 6, "test": 8}
    for split in full.values():
        assert_aligned(split)
    # TFDS's draw, literally (with sorted listings): seed 1234, then choice of 30 per class folder
    state = np.random.get_state()
    np.random.seed(1234)
    expected = set()
    for d in sorted(p.name for p in top.iterdir()):
        fnames = sorted(p.name for p in (top / d).iterdir())
        expected |= {f"{d}/{f}" for f in np.random.choice(fnames, 30, replace=False)}
    np.random.set_state(state)
    got = {
        "/".join(Path(split.describe_item(i)).parts[-2:])
        for split in (full["train"], full["val"])
        for i in range(len(split))
    }
    assert got == expected


def test_caltech101_class_with_too_few_images(tmp_path):
    class_tree(
        tmp_path / "caltech101" / "101_ObjectCategories", {"accordion": 31, "ant": 12}, ".jpg"
    )
    with pytest.raises(DataError, match="ant has 12 images, fewer than the 30"):
        get_task("caltech101").load("train", tmp_path)


def test_dtd_official_lists(tmp_path):
    base = tmp_path / "dtd" / "dtd"
    names = {
        "train": ["banded", "zigzagged"],
        "val": ["banded"],
        "test": ["zigzagged", "zigzagged"],
    }
    codes = {"banded": 0, "zigzagged": 46}
    for split, classes in names.items():
        lines = []
        for i, cls in enumerate(classes):
            save(base / "images" / cls / f"{cls}_{split}{i}.jpg", codes[cls], i)
            lines.append(f"{cls}/{cls}_{split}{i}.jpg")
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    full = load_all("dtd", tmp_path)
    # labels index the 47 DTD classes even when a list holds only some of them
    assert full["train"].labels.tolist() == [0, 46]
    assert full["val"].labels.tolist() == [0]
    assert full["test"].labels.tolist() == [46, 46]
    for split in full.values():
        assert_aligned(split)


def test_flowers102(tmp_path):
    base = tmp_path / "flowers-102"
    labels = [1, 2, 3, 1, 2, 102, 5]  # 1-based in imagelabels.mat
    for i, lab in enumerate(labels, 1):
        save(base / "jpg" / f"image_{i:05d}.jpg", lab - 1, i)
    sio.savemat(base / "imagelabels.mat", {"labels": np.array([labels])})
    sio.savemat(
        base / "setid.mat",
        {"trnid": np.array([[1, 2]]), "valid": np.array([[3, 4]]), "tstid": np.array([[5, 6, 7]])},
    )
    full = load_all("flowers102", tmp_path)
    assert full["train"].labels.tolist() == [0, 1]
    assert full["val"].labels.tolist() == [2, 0]
    assert full["test"].labels.tolist() == [1, 101, 4]
    for split in full.values():
        assert_aligned(split)
    assert get_task("flowers102").classes[0] == "pink primrose"


def test_flowers102_corrupt_mat_file_is_named(tmp_path):
    base = tmp_path / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    (base / "imagelabels.mat").write_bytes(b"garbage garbage garbage garbage")
    (base / "setid.mat").write_bytes(b"garbage garbage garbage garbage")
    with pytest.raises(DataError, match=f"cannot read {base / 'setid.mat'}: .*102flowers.tgz"):
        get_task("flowers102").load("train", tmp_path)


def test_pets(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    for split, n in (("trainval", 10), ("test", 4)):
        lines = []
        for i in range(n):
            cls, breed = (1, "Abyssinian") if i % 2 else (37, "yorkshire_terrier")
            save(base / "images" / f"{breed}_{split}{i}.jpg", cls - 1, i)
            lines.append(f"{breed}_{split}{i} {cls} {1 + i % 2} 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    full = load_all("pets", tmp_path)
    assert sizes(full) == {"train": 8, "val": 2, "test": 4}
    assert set(full["test"].labels.tolist()) == {0, 36}
    for split in full.values():
        assert_aligned(split)


def test_svhn_maps_label_10_to_digit_0(tmp_path):
    base = tmp_path / "svhn"
    base.mkdir()
    for split, n in (("train", 20), ("test", 5)):
        digits = [i % 10 for i in range(n)]
        x = np.stack([pixels(d, i, 32) for i, d in enumerate(digits)], axis=-1)  # (32, 32, 3, N)
        y = np.array([[d if d else 10] for d in digits])
        sio.savemat(base / f"{split}_32x32.mat", {"X": x, "y": y})
    full = load_all("svhn", tmp_path)
    assert sizes(full) == {"train": 18, "val": 2, "test": 5}
    assert full["test"].labels.tolist() == [0, 1, 2, 3, 4]
    for split in full.values():
        assert_aligned(split)


def test_sun397(tmp_path):
    base = tmp_path / "SUN397"
    base.mkdir()
    (base / "ClassName.txt").write_text("/a/abbey\n/b/bakery/shop\n")
    for i in range(6):
        save(base / "a" / "abbey" / f"sun_a{i}.jpg", 0, i)
        save(base / "b" / "bakery" / "shop" / f"sun_b{i}.jpg", 1, i)
    full = load_all("sun397", tmp_path)
    assert sizes(full) == {"train": 8, "val": 1, "test": 3}
    for split in full.values():
        assert_aligned(split)
    # TFDS's own split lists, copied next to the data, are followed exactly (a new root: the
    # splits of the first one are kept for the process)
    (tmp_path / "copy").mkdir()
    base = (tmp_path / "SUN397").rename(tmp_path / "copy" / "SUN397")
    (base / "sun397_tfds_tr.txt").write_text("/a/abbey/sun_a0.jpg\n/b/bakery/shop/sun_b1.jpg\n")
    (base / "sun397_tfds_va.txt").write_text("/a/abbey/sun_a5.jpg\n")
    (base / "sun397_tfds_te.txt").write_text("/b/bakery/shop/sun_b5.jpg\n")
    full = load_all("sun397", tmp_path / "copy")
    names = {
        s: sorted(Path(d.describe_item(i)).name for i in range(len(d))) for s, d in full.items()
    }
    assert names == {
        "train": ["sun_a0.jpg", "sun_b1.jpg"],
        "val": ["sun_a5.jpg"],
        "test": ["sun_b5.jpg"],
    }
    assert full["train"].labels.tolist() == [0, 1]


def test_imagenet_folders_and_meta(tmp_path):
    base = tmp_path / "imagenet"
    wnids = ["n01440764", "n01443537"]
    for split, n in (("train", 25), ("val", 2)):
        for c, wnid in enumerate(wnids):
            for i in range(n):
                save(base / split / wnid / f"{wnid}_{i}.JPEG", c, i)
    torch.save(({w: (f"fish {w}",) for w in wnids}, wnids), base / "meta.bin")
    full = load_all("imagenet", tmp_path)
    assert sizes(full) == {"train": 48, "val": 2, "test": 4}
    for split in full.values():
        assert_aligned(split, check_all=False)
    assert full["test"].labels.tolist() == [0, 0, 1, 1]


def test_imagenet_without_extracted_folders_names_them(tmp_path):
    (tmp_path / "imagenet").mkdir()
    torch.save(({}, []), tmp_path / "imagenet" / "meta.bin")
    with pytest.raises(DataError, match=r"imagenet/train.*image-net\.org"):
        get_task("imagenet").load("test", tmp_path)


def test_stanford_cars(tmp_path):
    base = tmp_path / "stanford_cars"
    rec = [("fname", "O"), ("class", "O")]
    for split, n, mat in (
        ("train", 10, "devkit/cars_train_annos.mat"),
        ("test", 3, "cars_test_annos_withlabels.mat"),
    ):
        annos = []
        for i in range(n):
            cls = 1 + i % 3
            save(base / f"cars_{split}" / f"{i:05d}.jpg", cls - 1, i)
            annos.append((f"{i:05d}.jpg", cls))
        (base / mat).parent.mkdir(parents=True, exist_ok=True)
        sio.savemat(base / mat, {"annotations": np.array(annos, dtype=rec)})
    sio.savemat(
        base / "devkit" / "cars_meta.mat", {"class_names": np.array(["a", "b", "c"], dtype=object)}
    )
    full = load_all("cars", tmp_path)
    assert sizes(full) == {"train": 8, "val": 2, "test": 3}
    assert full["test"].labels.tolist() == [0, 1, 2]
    for split in full.values():
        assert_aligned(split)


def test_birds_cub(tmp_path):
    base = tmp_path / "CUB_200_2011"
    images, labels, flags = [], [], []
    for i in range(1, 15):
        cls = 1 + i % 2 * 199  # classes 1 and 200
        rel = f"{cls:03d}.Bird/img_{i}.jpg"
        save(base / "images" / rel, cls - 1, i)
        images.append(f"{i} {rel}")
        labels.append(f"{i} {cls}")
        flags.append(f"{i} {int(i <= 10)}")
    for name, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", flags),
    ):
        (base / name).write_text("\n".join(lines) + "\n")
    full = load_all("birds", tmp_path)
    assert sizes(full) == {"train": 9, "val": 1, "test": 4}
    assert set(full["test"].labels.tolist()) == {0, 199}
    for split in full.values():
        assert_aligned(split)
