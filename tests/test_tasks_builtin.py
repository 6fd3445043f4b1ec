"""The built-in offline suite: registry, determinism, balance, settings, caches, honest splits."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

import layerprobe.tasks.builtin as builtin
from layerprobe.errors import ConfigError, DataError, UnknownNameError
from layerprobe.tasks import get_task, list_tasks
from layerprobe.tasks.builtin import (
    SPECS,
    builtin_task,
    configure,
    generate_split,
    load_arrays,
    natural,
    photos,
)
from layerprobe.tasks.builtin.timing import time_generation

SMALL = 16  # px: enough to tell images apart, cheap to make


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch):
    for var in ("LAYERPROBE_BUILTIN_SIZE", "LAYERPROBE_BUILTIN_SEED", "LAYERPROBE_BUILTIN_CACHE"):
        monkeypatch.delenv(var, raising=False)
    builtin.reset()
    yield
    builtin.reset()
    builtin.clear_memory()


def test_suite_has_upstream_and_twenty_downstream_tasks_in_every_group():
    tasks = list_tasks(builtin=True)
    names = [t.name for t in tasks]
    assert all(n.startswith("builtin/") for n in names)
    downstream = [t for t in tasks if t.group != "upstream"]
    assert len(downstream) >= 20
    assert {t.group for t in downstream} == {"natural", "specialized", "structured"}
    (upstream,) = [t for t in tasks if t.group == "upstream"]
    assert upstream.name == "builtin/upstream"
    assert upstream.num_classes >= 100
    assert len(set(upstream.classes)) == upstream.num_classes
    n_images = sum(SPECS["upstream"].split_size(s) for s in upstream.splits)
    assert n_images >= 10_000
    # Real-data tasks are not mixed in.
    assert not any(t.name.startswith("builtin/") for t in list_tasks(builtin=False))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_task_documents_itself_in_one_line(name):
    task = get_task(f"builtin/{name}")
    spec = SPECS[name]
    assert task.splits == ("train", "val", "test")
    assert "\n" not in task.description and len(task.description) > 40
    tr, va, te = spec.per_class
    assert f"{tr}/{va}/{te} per class" in task.description
    assert task.extra["per_class"] == {"train": tr, "val": va, "test": te}
    assert tr >= 25 + 10 and va >= 20  # room for 25 shots and a full-data probe
    assert task.locate is None and task.find() == (True, "")
    assert len(set(task.classes)) == task.num_classes >= 2


@pytest.mark.parametrize("name", sorted(SPECS))
def test_same_seed_same_images_other_seed_other_images(name):
    images, labels = generate_split(SPECS[name], "val", SMALL, seed=0)
    again, labels_again = generate_split(SPECS[name], "val", SMALL, seed=0)
    other, _ = generate_split(SPECS[name], "val", SMALL, seed=1)
    assert images.shape == (len(labels), SMALL, SMALL, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert not np.array_equal(images, other)
    # Exactly balanced as documented, and in a shuffled order.
    counts = np.bincount(labels, minlength=len(SPECS[name].classes))
    assert (counts == SPECS[name].per_class[1]).all()
    assert not (np.diff(labels) >= 0).all()


def test_splits_are_different_draws():
    spec = SPECS["count"]
    val, _ = generate_split(spec, "val", SMALL, seed=0)
    test, _ = generate_split(spec, "test", SMALL, seed=0)
    assert not np.array_equal(val[:10], test[:10])


@pytest.mark.parametrize("size", [8, 33, 96])
def test_every_generator_draws_any_image_size(size):
    rng = np.random.default_rng(0)
    for name, spec in SPECS.items():
        labels = np.arange(min(4, len(spec.classes)))
        images = spec.generate(labels, rng, size=size, split="test")
        assert images.shape == (len(labels), size, size, 3) and images.dtype == np.uint8, name
        assert images.std() > 0, name  # not blank


def test_split_items_are_rgb_images_of_the_chosen_size():
    task = builtin_task("scenes", image_size=33)
    img, label = task.load("val")[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (33, 33)
    assert 0 <= label < task.num_classes


def test_configure_changes_registered_tasks_and_builtin_task_is_pinned():
    configure(image_size=24, seed=5)
    data = get_task("builtin/loc-x").load("val")
    assert data[0][0].size == (24, 24)
    pinned = builtin_task("loc-x", image_size=24, seed=0).load("val")
    assert not np.array_equal(data.images, pinned.images)
    np.testing.assert_array_equal(
        data.images, builtin_task("builtin/loc-x", 24, 5).load("val").images
    )
    builtin.reset()
    assert get_task("builtin/loc-x").load("val")[0][0].size == (32, 32)


def test_environment_variables_set_size_and_seed(monkeypatch):
    monkeypatch.setenv("LAYERPROBE_BUILTIN_SIZE", "20")
    monkeypatch.setenv("LAYERPROBE_BUILTIN_SEED", "3")
    images, _ = load_arrays("size", "val")
    assert images.shape[1:] == (20, 20, 3)
    np.testing.assert_array_equal(images, builtin_task("size", 20, 3).load("val").images)
    configure(image_size=12)  # configure() wins over the environment
    assert load_arrays("size", "val")[0].shape[1] == 12


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: configure(image_size=4), "image_size must be"),
        (lambda: configure(image_size="big"), "image_size must be"),
        (lambda: configure(seed=-1), "seed must be"),
        (lambda: builtin_task("count", image_size=2000), "image_size must be"),
        (lambda: builtin_task("count", image_size=float("inf")), "image_size must be"),
        (lambda: configure(seed=float("inf")), "seed must be"),
    ],
)
def test_bad_settings_say_what_is_wrong(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_bad_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv("LAYERPROBE_BUILTIN_SIZE", "32px")
    with pytest.raises(ConfigError, match=r"\$LAYERPROBE_BUILTIN_SIZE"):
        get_task("builtin/count").load("val")


def test_unknown_task_or_split_is_a_user_error():
    with pytest.raises(UnknownNameError, match="builtin/count"):
        builtin_task("cuont")
    with pytest.raises(UnknownNameError, match="builtin/textures"):
        get_task("builtin/texture")
    with pytest.raises(DataError, match="no split 'all'"):
        get_task("builtin/count").load("all")
    with pytest.raises(DataError, match="no split 'all'"):
        load_arrays("count", "all")


def test_memory_cache_returns_the_same_read_only_arrays():
    first = load_arrays("relation", "val", SMALL, seed=0)
    second = load_arrays("relation", "val", SMALL, seed=0)
    assert first[0] is second[0]
    with pytest.raises(ValueError):
        first[0][0, 0, 0, 0] = 1  # shared with the cache: must not be writable


def test_disk_cache_round_trip_and_recovery(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERPROBE_BUILTIN_CACHE", str(tmp_path))
    images, labels = load_arrays("occlusion", "val", SMALL, seed=0)
    files = sorted(p.name for p in tmp_path.rglob("*.npy"))
    assert files == ["val-16px-seed0.images.npy", "val-16px-seed0.labels.npy"]
    assert not list(tmp_path.rglob("*.partial"))
    builtin.clear_memory()
    from_disk, labels_disk = load_arrays("occlusion", "val", SMALL, seed=0)
    assert isinstance(from_disk, np.memmap)
    np.testing.assert_array_equal(from_disk, images)
    np.testing.assert_array_equal(labels_disk, labels)
    # A damaged file is noticed and the split made again.
    builtin.clear_memory()
    next(tmp_path.rglob("*.images.npy")).write_bytes(b"not an array")
    with pytest.warns(UserWarning, match="regenerating"):
        again, _ = load_arrays("occlusion", "val", SMALL, seed=0)
    np.testing.assert_array_equal(again, images)


def test_unwritable_disk_cache_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    configure(cache_dir=blocker)  # a file where a folder should be
    from layerprobe.errors import CacheError

    with pytest.raises(CacheError, match="cannot write the built-in task cache"):
        load_arrays("occlusion", "val", SMALL, seed=0)


def test_real_sources_never_share_items_between_splits():
    # Photos: each block belongs to one split.
    for name in natural.SCENES + ("brick", "histology", "retina", "terrain"):
        blocks = [set(map(tuple, photos.split_blocks(name, s))) for s in ("train", "val", "test")]
        assert all(blocks) and not (
            blocks[0] & blocks[1] or blocks[0] & blocks[2] or blocks[1] & blocks[2]
        )
    # Digits: the scans of one split are not in another.
    _, targets = natural._digits()
    parts = [
        np.concatenate(natural.split_items(targets, s, seed=8)) for s in ("train", "val", "test")
    ]
    assert sum(map(len, parts)) == len(targets) and len(np.unique(np.concatenate(parts))) == len(
        targets
    )
    # Faces: every LFW item appears once, in one split only.
    faces = [
        builtin_task("faces", 25).load(s).images.reshape(-1, 25 * 25 * 3)
        for s in ("train", "val", "test")
    ]
    rows = np.concatenate(faces)
    assert len(rows) == 200 and len(np.unique(rows, axis=0)) == 200


def _white_pixels(name, split="val", size=32):
    data = builtin_task(name, size).load(split)
    images, labels = data.images, data.labels
    return images[..., 0].astype(float) / 255, labels


def test_position_and_size_labels_mean_what_they_say():
    ink, labels = _white_pixels("loc-x")
    x = (ink * np.arange(32)[None, None, :]).sum((1, 2)) / ink.sum((1, 2))
    mean_x = np.array([x[labels == c].mean() for c in range(16)])
    assert (np.diff(mean_x) > 0).all()
    ink, labels = _white_pixels("loc-y")
    y = (ink * np.arange(32)[None, :, None]).sum((1, 2)) / ink.sum((1, 2))
    assert (np.diff([y[labels == c].mean() for c in range(16)]) > 0).all()
    ink, labels = _white_pixels("size")
    area = ink.sum((1, 2))
    assert (np.diff([area[labels == c].mean() for c in range(6)]) > 0).all()


def test_histology_grades_follow_the_brown_stain():
    images, labels = load_arrays("histology", "val", 32, seed=0)
    rgb = images.astype(float) / 255
    brown = (rgb[..., 0] - rgb[..., 2]).mean((1, 2))  # DAB is brown: red high, blue low
    assert (np.diff([brown[labels == c].mean() for c in range(3)]) > 0).all()


def test_steeper_terrain_shades_with_more_contrast():
    images, labels = load_arrays("terrain", "val", 32, seed=0)
    contrast = images[..., 0].astype(float).std((1, 2))
    assert (np.diff([contrast[labels == c].mean() for c in range(4)]) > 0).all()


def test_count_scenes_grow_busier_with_the_count():
    images, labels = load_arrays("count", "val", 32, seed=0)
    # Saturated pixels belong to objects (backgrounds are muted).
    rgb = images.astype(float) / 255
    saturated = (rgb.max(-1) - rgb.min(-1) > 0.35).sum((1, 2))
    assert (np.diff([saturated[labels == c].mean() for c in range(6)]) > 0).all()


@pytest.mark.slow
def test_whole_suite_generates_balanced_within_a_minute_of_cpu():
    rows = time_generation(list(SPECS.values()), image_size=32, seed=0)
    wall = sum(r.wall_s for r in rows)
    cpu = sum(r.cpu_s for r in rows)
    images = sum(r.images for r in rows)
    print(f"\nbuilt-in suite at 32 px: {images} images in {wall:.1f} s wall, {cpu:.1f} s CPU")
    assert images >= 10_000 + 20 * 200
    # CPU time of this process: other jobs on the machine do not inflate it.
    assert cpu < 60, f"generating the suite took {cpu:.0f} s of CPU"
    assert wall < 180, f"generating the suite took {wall:.0f} s"  # loose: the machine is shared
    # Full splits are exactly balanced as documented.
    assert [r.task for r in rows if not r.balanced] == []


def test_time_generation_reports_every_task():
    start = time.process_time()
    rows = time_generation([SPECS["relation"], SPECS["occlusion"]], image_size=SMALL)
    assert [r.task for r in rows] == ["relation", "occlusion"]
    assert [r.images for r in rows] == [240, 240]
    assert all(r.wall_s > 0 and r.balanced for r in rows) and time.process_time() >= start


def test_split_sizes_are_known_without_generating(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("generated images just to count them")

    monkeypatch.setattr(builtin.generate, "generate_split", refuse)
    sizes = get_task("builtin/upstream").split_sizes()
    assert sizes == {"train": 120 * 200, "val": 120 * 20, "test": 120 * 50}
    assert get_task("builtin/faces").split_sizes() == {"train": 100, "val": 40, "test": 60}


def test_fingerprint_names_what_the_images_depend_on():
    registered = get_task("builtin/count")
    assert registered.fingerprint() == f"builtin-v{builtin.GENERATOR_VERSION}-32px-seed0"
    configure(image_size=48, seed=7)
    assert registered.fingerprint().endswith("-48px-seed7")
    pinned = builtin_task("count", image_size=20, seed=1)
    assert pinned.fingerprint().endswith("-20px-seed1")
    assert (pinned.extra["image_size"], pinned.extra["seed"]) == (20, 1)


def test_timing_command_prints_a_table_and_rejects_bad_input(monkeypatch, capsys):
    from layerprobe.tasks.builtin import timing

    monkeypatch.setattr(builtin, "SPECS", {"relation": SPECS["relation"]})
    assert timing.main(["--size", "12", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "relation" in out and "total" in out and "240" in out
    with pytest.raises(SystemExit) as exit_info:
        timing.main(["--size", "4"])
    assert exit_info.value.code == 2
    assert "must be a whole number of pixels" in capsys.readouterr().err


def test_cache_folder_choices(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for raw, expected in [
        ("", None),
        ("off", None),
        ("1", tmp_path / "layerprobe" / "builtin"),
        (str(tmp_path / "mine"), tmp_path / "mine"),
    ]:
        monkeypatch.setenv("LAYERPROBE_BUILTIN_CACHE", raw)
        assert builtin.settings().cache_dir == expected
    assert configure(cache_dir=None).cache_dir is None  # configure() beats the environment
