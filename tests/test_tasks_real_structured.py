"""Structured-group loaders (VTAB label definitions and binning) on tiny data roots built in
each dataset's published layout."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_tasks_real_common import assert_aligned, class_tree, load_all, pixels, save, sizes

from layerprobe.errors import DataError
from layerprobe.tasks import get_task
from layerprobe.tasks.real.clevr import distance_label
from layerprobe.tasks.real.dsprites import _images, bin_attribute
from layerprobe.tasks.real.kitti import closest_vehicle_label

# --------------------------------------------------------------------------- CLEVR
# (number of objects, closest depth) per scene -> count label n - 3, distance bin
SCENES = {
    "train": [
        (3, 7.0),
        (4, 8.2),
        (5, 8.7),
        (6, 9.2),
        (7, 9.7),
        (8, 12.0),
        (9, 8.0),
        (10, 10.0),
        (3, 99.0),
        (4, 0.5),
    ],
    "val": [(10, 8.49), (3, 9.51)],
}
DISTANCE = {
    7.0: 0,
    8.2: 1,
    8.7: 2,
    9.2: 3,
    9.7: 4,
    12.0: 5,
    8.0: 0,
    10.0: 4,
    99.0: 5,
    0.5: 0,
    8.49: 1,
    9.51: 4,
}


def make_clevr(root: Path, task: str) -> None:
    base = root / "clevr" / "CLEVR_v1.0"
    for split, scenes in SCENES.items():
        out = []
        for i, (n, depth) in enumerate(scenes):
            name = f"CLEVR_{split}_{i:06d}.png"
            label = n - 3 if task == "count" else DISTANCE[depth]
            save(base / "images" / split / name, label, i)
            depths = [depth] + [depth + 1 + j for j in range(n - 1)]  # the closest is `depth`
            objects = [{"pixel_coords": [10, 20, d], "shape": "cube"} for d in depths[::-1]]
            out.append({"image_filename": name, "objects": objects})
        (base / "scenes").mkdir(parents=True, exist_ok=True)
        (base / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"scenes": out}))


@pytest.mark.parametrize("task", ["count", "distance"])
def test_clevr_labels_and_splits(tmp_path, task):
    make_clevr(tmp_path, task)
    full = load_all(f"clevr_{task}", tmp_path)
    assert sizes(full) == {"train": 9, "val": 1, "test": 2}
    if task == "count":
        assert full["test"].labels.tolist() == [7, 0]
        assert sorted(
            np.concatenate([full["train"].labels, full["val"].labels]).tolist()
        ) == sorted(n - 3 for n, _ in SCENES["train"])
    else:
        assert full["test"].labels.tolist() == [1, 4]
    for split in full.values():
        assert_aligned(split)


def test_clevr_distance_thresholds_follow_task_adaptation():
    # label = max i with thresholds[i] < depth, thresholds [0, 8, 8.5, 9, 9.5, 10, 100]
    for depth, label in DISTANCE.items():
        assert (
            distance_label(
                {"objects": [{"pixel_coords": [0, 0, depth]}, {"pixel_coords": [0, 0, 50]}]}
            )
            == label
        )


def test_clevr_scene_with_too_many_objects_is_a_label_out_of_range(tmp_path):
    make_clevr(tmp_path, "count")
    path = tmp_path / "clevr" / "CLEVR_v1.0" / "scenes" / "CLEVR_val_scenes.json"
    scenes = json.loads(path.read_text())
    scenes["scenes"][0]["objects"] *= 2  # 20 objects -> label 17, outside 0..7
    path.write_text(json.dumps(scenes))
    with pytest.raises(DataError, match=r"label 17 of .*CLEVR_val_000000.png is outside 0..7"):
        get_task("clevr_count").load("test", tmp_path)


# --------------------------------------------------------------------------- KITTI
KITTI = {  # objects (type, z) per image -> closest-vehicle label
    0: ([("Car", 5.0), ("Pedestrian", 2.0)], 0),
    1: ([("Van", 12.0), ("Car", 30.0)], 1),
    2: ([("Truck", 45.0)], 2),
    3: ([("Pedestrian", 4.0), ("DontCare", -1000.0)], 3),
    4: ([], 3),
    5: ([("Car", 8.0)], 0),
    6: ([("Car", 20.0)], 1),
    7: ([("Cyclist", 3.0), ("Car", 25.0)], 2),
    8: ([("Tram", 3.0)], 3),
    9: ([("Car", 19.9)], 1),
}


def kitti_line(kind: str, z: float) -> str:
    return f"{kind} 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 {z} -1.59"


def test_kitti_closest_vehicle_distance(tmp_path):
    base = tmp_path / "Kitti" / "raw" / "training"
    (base / "label_2").mkdir(parents=True)
    for i, (objects, label) in KITTI.items():
        save(base / "image_2" / f"{i:06d}.png", label, i)
        (base / "label_2" / f"{i:06d}.txt").write_text(
            "".join(kitti_line(k, z) + "\n" for k, z in objects)
        )
        assert closest_vehicle_label(base / "label_2" / f"{i:06d}.txt") == label
    full = load_all("kitti_distance", tmp_path)
    assert sizes(full) == {"train": 8, "val": 1, "test": 1}
    assert sorted(np.concatenate([d.labels for d in full.values()]).tolist()) == sorted(
        lab for _, lab in KITTI.values()
    )
    for split in full.values():
        assert_aligned(split)


def test_kitti_malformed_label_file_is_named(tmp_path):
    base = tmp_path / "Kitti" / "raw" / "training"
    save(base / "image_2" / "000000.png", 0)
    (base / "label_2").mkdir(parents=True)
    (base / "label_2" / "000000.txt").write_text("Car 0.0 0\n")
    with pytest.raises(DataError, match="000000.txt: a line has 3 fields"):
        get_task("kitti_distance").load("train", tmp_path)


# --------------------------------------------------------------------------- DMLab
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def example(image: bytes, label: int, name: str, label_first: bool, packed: bool) -> bytes:
    """A serialized tf.train.Example with image / filename / label features."""
    ints = field(1, varint(label)) if packed else varint(1 << 3) + varint(label)
    feats = {
        "image": field(1, field(1, image)),  # Feature.bytes_list.value
        "filename": field(1, field(1, name.encode())),
        "label": field(3, ints),  # Feature.int64_list
    }
    order = ["label", "filename", "image"] if label_first else ["image", "filename", "label"]
    entries = b"".join(field(1, field(1, k.encode()) + field(2, feats[k])) for k in order)
    return field(1, entries)  # Example.features


def tfrecord(path: Path, records: list[bytes]) -> None:
    with open(path, "wb") as f:
        for data in records:  # length, CRC (unchecked: zeros), data, CRC
            f.write(len(data).to_bytes(8, "little") + bytes(4) + data + bytes(4))


def png_bytes(label: int, tag: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(label, tag)).save(buf, format="PNG")
    return buf.getvalue()


def test_dmlab_tfrecord_shards_read_without_tensorflow(tmp_path):
    base = tmp_path / "dmlab"
    base.mkdir()
    expected = {}
    for split, shards in (("train", 2), ("validation", 1), ("test", 1)):
        labels = []
        for k in range(shards):
            records = []
            for i in range(3 + k):
                label = (i + k + len(split)) % 6
                labels.append(label)
                records.append(
                    example(png_bytes(label, i), label, f"{split}_{k}_{i}.png", i % 2 == 0, i == 1)
                )
            tfrecord(base / f"dmlab-{split}.tfrecord-{k:05d}-of-{shards:05d}", records)
        expected[split] = labels
    full = load_all("dmlab", tmp_path)
    assert full["train"].labels.tolist() == expected["train"]
    assert full["val"].labels.tolist() == expected["validation"]
    assert full["test"].labels.tolist() == expected["test"]
    for split in full.values():
        assert_aligned(split)
    clone = pickle.loads(pickle.dumps(full["train"]))
    assert np.array_equal(np.asarray(clone[4][0]), np.asarray(full["train"][4][0]))


def test_dmlab_truncated_shard_is_named(tmp_path):
    base = tmp_path / "dmlab"
    base.mkdir()
    for split in ("train", "validation", "test"):
        tfrecord(
            base / f"dmlab-{split}.tfrecord-00000-of-00001",
            [example(png_bytes(1, 0), 1, "a", True, True)],
        )
    shard = base / "dmlab-test.tfrecord-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(
        DataError, match="cannot read TFRecord file .*dmlab-test.tfrecord-00000-of-00001"
    ):
        get_task("dmlab").load("test", tmp_path)


def test_dmlab_empty_folder_says_what_it_expects(tmp_path):
    (tmp_path / "dmlab").mkdir()
    with pytest.raises(
        DataError, match=r"neither dmlab-\{train,validation,test\}.tfrecord\* shards nor"
    ):
        get_task("dmlab").load("train", tmp_path)


def test_dmlab_folders(tmp_path):
    for split, n in (("train", 3), ("validation", 2), ("test", 1)):
        class_tree(tmp_path / "dmlab" / split, {"0": n, "5": n}, ".png", labels={"0": 0, "5": 5})
    full = load_all("dmlab", tmp_path)
    assert sizes(full) == {"train": 6, "val": 4, "test": 2}
    for split in full.values():
        assert_aligned(split)


# --------------------------------------------------------------------------- dSprites
def test_dsprites_binning_and_splits(tmp_path):
    n = 40
    latents = np.zeros((n, 6), np.int64)
    latents[:, 3] = np.arange(n) % 40  # orientation 0..39
    latents[:, 4] = np.arange(n) % 32  # posX 0..31
    imgs = (np.random.default_rng(0).random((n, 5, 3)) < 0.5).astype(np.uint8)  # 0/1 pixels
    imgs[:, 0, 0] = 1
    path = tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    path.parent.mkdir()
    np.savez_compressed(path, imgs=imgs, latents_classes=latents)

    loc = load_all("dsprites_location", tmp_path)
    ori = load_all("dsprites_orientation", tmp_path)
    assert sizes(loc) == sizes(ori) == {"train": 32, "val": 4, "test": 4}
    everything = np.sort(np.concatenate([loc[s].indices for s in loc]))
    assert everything.tolist() == list(range(n))
    # posX: 32 values -> 16 classes (x // 2); orientation: 40 values -> 16 classes (floor(o / 2.5))
    assert np.array_equal(loc["train"].labels, (np.arange(n) % 32 // 2)[loc["train"].indices])
    assert np.array_equal(
        ori["train"].labels, np.floor((np.arange(n) % 40) / 2.5).astype(int)[ori["train"].indices]
    )
    assert bin_attribute(np.array([0, 2, 3, 39]), 40).tolist() == [0, 0, 1, 15]
    img, _ = loc["test"][0]
    assert img.mode == "RGB" and np.asarray(img)[0, 0].tolist() == [255, 255, 255]
    row = loc["test"].indices[0]
    assert np.array_equal(np.asarray(img)[..., 1], imgs[row] * 255)  # shown as 0/255 grey
    packed = _images(str(path), chunk=7)  # streamed in chunks of rows, kept as bits
    assert all(np.array_equal(packed[i], imgs[i]) for i in range(n))
    assert sizes(load_all("vtab1k/dsprites_orientation", tmp_path)) == {
        "train": 32,
        "val": 4,
        "test": 4,
    }


# --------------------------------------------------------------------------- smallNORB
def write_norb(path: Path, array: np.ndarray) -> None:
    magic = {np.dtype(np.uint8): 0x1E3D4C55, np.dtype(np.int32): 0x1E3D4C54}[array.dtype]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<i4")
    path.write_bytes(header.tobytes() + array.astype(array.dtype.newbyteorder("<")).tobytes())


def make_norb(root: Path, attr: int) -> dict[str, np.ndarray]:
    """Two tiny files; the left image's red pixel carries the label of attribute ``attr``."""
    base = root / "smallnorb"
    base.mkdir(exist_ok=True)
    out = {}
    for split, stem, n in (
        ("train", "smallnorb-5x46789x9x18x6x2x96x96-training", 12),
        ("test", "smallnorb-5x01235x9x18x6x2x96x96-testing", 10),
    ):
        info = np.zeros((n, 4), np.int32)
        info[:, 1] = np.arange(n) % 9  # elevation 0..8
        info[:, 2] = 2 * (np.arange(n) % 18)  # azimuth 0, 2, ..., 34
        labels = info[:, 1] if attr == 1 else info[:, 2] // 2
        dat = np.zeros((n, 2, 6, 6), np.uint8)
        dat[:, 0, 0, 0] = labels  # left image carries the label
        dat[:, 1] = 99  # the right image is never used
        write_norb(base / f"{stem}-dat.mat", dat)
        write_norb(base / f"{stem}-cat.mat", np.zeros(n, np.int32))
        write_norb(base / f"{stem}-info.mat", info)
        out[split] = labels
    return out


@pytest.mark.parametrize(("task", "attr"), [("smallnorb_azimuth", 2), ("smallnorb_elevation", 1)])
def test_smallnorb_binary_files(tmp_path, task, attr):
    labels = make_norb(tmp_path, attr)
    full = load_all(task, tmp_path)
    assert sizes(full) == {"train": 12, "val": 5, "test": 5}
    assert full["train"].labels.tolist() == labels["train"].tolist()
    assert sorted(full["val"].labels.tolist() + full["test"].labels.tolist()) == sorted(
        labels["test"].tolist()
    )
    for split in full.values():
        assert_aligned(split)


def test_smallnorb_truncated_file_is_named(tmp_path):
    make_norb(tmp_path, 2)
    info = tmp_path / "smallnorb" / "smallnorb-5x46789x9x18x6x2x96x96-training-info.mat"
    info.write_bytes(info.read_bytes()[:30])
    with pytest.raises(DataError, match="training-info.mat is truncated"):
        get_task("smallnorb_azimuth").load("train", tmp_path)


def test_array_backed_splits_pickle_for_spawned_workers(tmp_path):
    import pickle

    make_norb(tmp_path, 2)
    split = get_task("smallnorb_azimuth").load("val", tmp_path)
    split[0]  # maps the file in this process
    clone = pickle.loads(pickle.dumps(split))
    assert clone.labels.tolist() == split.labels.tolist()
    assert np.array_equal(np.asarray(clone[1][0]), np.asarray(split[1][0]))


def test_kitti_uses_tfds_by_drive_split_when_the_devkit_mapping_is_there(tmp_path):
    base = tmp_path / "Kitti" / "raw"
    drives = [f"2011_09_26_drive_{d:04d}_sync" for d in range(12)]
    n = 24
    image_drive = [drives[(i * 5) % 12] for i in range(n)]  # 2 frames per drive, scattered
    (base / "training" / "label_2").mkdir(parents=True)
    for i in range(n):
        save(base / "training" / "image_2" / f"{i:06d}.png", 3, i)
        (base / "training" / "label_2" / f"{i:06d}.txt").write_text("")
    # train_rand.txt: 1-based line of train_mapping.txt for image i (here reversed order)
    (base / "mapping").mkdir()
    (base / "mapping" / "train_mapping.txt").write_text(
        "".join(f"2011_09_26 {image_drive[n - 1 - j]} {j:010d}\n" for j in range(n))
    )
    (base / "mapping" / "train_rand.txt").write_text(",".join(str(n - i) for i in range(n)))
    full = load_all("kitti_distance", tmp_path)
    drive_of = {f"{i:06d}.png": image_drive[i] for i in range(n)}
    split_drives = {
        s: {drive_of[Path(d.describe_item(i)).name] for i in range(len(d))} for s, d in full.items()
    }
    assert not (
        split_drives["train"] & split_drives["val"] or split_drives["train"] & split_drives["test"]
    )
    assert sizes(full) == {
        "train": 20,
        "val": 2,
        "test": 2,
    }  # one drive of 12 each for test and val
    # TFDS literally: np.random.seed(123); choice over the sorted drives, test first
    state = np.random.get_state()
    np.random.seed(123)
    test = set(np.random.choice(sorted(drives), 1, replace=False))
    val = set(np.random.choice(sorted(set(drives) - test), 1, replace=False))
    np.random.set_state(state)
    assert (split_drives["test"], split_drives["val"]) == (test, val)
