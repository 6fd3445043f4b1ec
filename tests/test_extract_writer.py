"""The partial-file writer: commit order, resume, restart of unusable files, full disk, shard merge."""

from __future__ import annotations

import errno

import h5py
import numpy as np
import pytest

from layerprobe.errors import EnvironmentProblem
from layerprobe.extract.cache import FORMAT_VERSION, read_arrays, read_info
from layerprobe.extract.writer import PartialCache, chunk_rows, merge_shards
from tests.limits import HANG

WIDTHS = {"blocks.0": 6, "pre_logits": 4}


def header(n=10, **changes):
    h = {
        "format_version": FORMAT_VERSION,
        "model": "timm:toy",
        "model_key": "toy-0123456789ab",
        "weights_sha256": "ab" * 32,
        "task": "toy",
        "split": "train",
        "layers": list(WIDTHS),
        "depths": [0.0, 1.0],
        "pooling": "auto",
        "preprocess": {"input_size": 32},
        "pretrain": {},
        "dtype": "float16",
        "amp": "none",
        "layerprobe_version": "test",
        "num_items": n,
        "item_start": 0,
        "item_stop": n,
    }
    return h | changes


def block(start, stop, dtype=np.float16):
    rows = np.arange(start, stop)
    feats = {
        name: (rows[:, None] + np.arange(w)[None] / 10).astype(dtype) for name, w in WIDTHS.items()
    }
    return feats, rows % 3, rows


def write_all(part, n, size=4, skip=()):
    for start in range(part.items_done, n, size):
        items = np.arange(start, min(n, start + size))
        kept = np.array([i for i in items if i not in skip], dtype=np.int64)
        feats, labels, index = block(0, 0)
        if len(kept):
            feats = {k: np.stack([block(i, i + 1)[0][k][0] for i in kept]) for k in WIDTHS}
            labels, index = kept % 3, kept
        part.write(feats, labels, index, items=len(items), skipped=[i for i in items if i in skip])


def test_chunks_are_rows_between_10kib_and_1mib():
    for width in (48, 384, 768, 2048, 4096):
        rows = chunk_rows(width, 2, 100_000)
        assert 10 * 1024 <= rows * width * 2 <= 1024 * 1024
    assert chunk_rows(48, 2, 7) == 7  # never more rows than the dataset


def test_write_finish_and_read(tmp_path):
    part = PartialCache.open(tmp_path / "train.h5.partial", header(), WIDTHS)
    write_all(part, 10)
    final = part.finish(tmp_path / "train.h5")
    assert not (tmp_path / "train.h5.partial").exists()
    info = read_info(final)
    assert info.layers == list(WIDTHS) and info.num_rows == 10
    labels, index, feats = read_arrays(final)
    np.testing.assert_array_equal(index, np.arange(10))
    np.testing.assert_array_equal(feats["blocks.0"], block(0, 10)[0]["blocks.0"])
    with h5py.File(final) as f:  # readable with plain h5py, chunked by rows
        assert f["features/pre_logits"].chunks[1] == 4
        assert f["features/pre_logits"].dtype == np.float16


def test_resume_continues_after_rows_done(tmp_path):
    path = tmp_path / "train.h5.partial"
    part = PartialCache.open(path, header(), WIDTHS)
    write_all(part, 8)  # items 0..7 committed
    # Rows written past rows_done but never committed (a crash before the commit) are redone.
    part.file["features/blocks.0"][8:10] = 999
    part.close()
    part = PartialCache.open(path, header(), WIDTHS)
    assert (part.rows_done, part.items_done) == (8, 8)
    write_all(part, 10)
    final = part.finish(tmp_path / "train.h5")
    _, _, feats = read_arrays(final)
    np.testing.assert_array_equal(feats["blocks.0"], block(0, 10)[0]["blocks.0"])


@pytest.mark.parametrize(
    "change",
    [{"model_key": "other-000000000000"}, {"dtype": "float32"}, {"layers": ["pre_logits"]}],
)
def test_partial_of_other_settings_restarts_with_warning(tmp_path, change):
    path = tmp_path / "train.h5.partial"
    part = PartialCache.open(path, header(), WIDTHS)
    write_all(part, 4)
    part.close()
    said = []
    widths = {k: WIDTHS[k] for k in change.get("layers", WIDTHS)}
    part = PartialCache.open(path, header(**change), widths, warn=said.append)
    assert part.rows_done == 0 and len(said) == 1 and "restarting" in said[0]
    part.close()


def test_corrupt_partial_restarts_with_warning(tmp_path):
    path = tmp_path / "train.h5.partial"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # a torn write
    said = []
    part = PartialCache.open(path, header(), WIDTHS, warn=said.append)
    assert part.rows_done == 0 and "cannot be read" in said[0]
    write_all(part, 10)
    read_info(part.finish(tmp_path / "train.h5"))


def test_partial_is_never_read_as_complete(tmp_path):
    from layerprobe.errors import CacheError

    part = PartialCache.open(tmp_path / "train.h5.partial", header(), WIDTHS)
    write_all(part, 4)
    part.close()
    with pytest.raises(CacheError, match="unfinished"):
        read_info(tmp_path / "train.h5.partial")


def test_skipped_items_are_removed_and_listed(tmp_path):
    part = PartialCache.open(tmp_path / "train.h5.partial", header(), WIDTHS)
    write_all(part, 10, skip={2, 7})
    final = part.finish(tmp_path / "train.h5")
    labels, index, feats = read_arrays(final)
    np.testing.assert_array_equal(index, [0, 1, 3, 4, 5, 6, 8, 9])
    assert feats["pre_logits"].shape == (8, 4)
    assert read_info(final).attrs["skipped_items"].tolist() == [2, 7]


def test_no_space_left_is_an_environment_problem_and_resumable(tmp_path, monkeypatch):
    path = tmp_path / "train.h5.partial"
    part = PartialCache.open(path, header(), WIDTHS)
    write_all(part, 4)
    real = PartialCache._write_rows

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PartialCache, "_write_rows", full_disk)
    with pytest.raises(EnvironmentProblem, match="no space left.*resumes"):
        write_all(part, 10)
    part.close()
    monkeypatch.setattr(PartialCache, "_write_rows", real)
    part = PartialCache.open(path, header(), WIDTHS)
    assert part.rows_done == 4
    write_all(part, 10)
    _, index, _ = read_arrays(part.finish(tmp_path / "train.h5"))
    np.testing.assert_array_equal(index, np.arange(10))


def test_merge_shards_reads_like_one_file(tmp_path):
    shards = []
    for rank, (start, stop) in enumerate([(0, 5), (5, 10)]):
        path = tmp_path / f"train.h5.partial.rank{rank}of2"
        part = PartialCache.open(path, header(item_start=start, item_stop=stop), WIDTHS)
        for a in range(start, stop, 2):
            b = min(stop, a + 2)
            kept = [i for i in range(a, b) if i != 6]
            feats = {k: block(0, 10)[0][k][kept] for k in WIDTHS}
            part.write(
                feats,
                np.array(kept) % 3,
                np.array(kept),
                items=b - a,
                skipped=[6] if 6 in range(a, b) else [],
            )
        part.mark_complete()
        part.close()
        shards.append(path)
    merged = merge_shards(shards, tmp_path / "train.h5.partial", header(), widths=WIDTHS)
    final = merged.finish(tmp_path / "train.h5")
    labels, index, feats = read_arrays(final)
    kept = [i for i in range(10) if i != 6]
    np.testing.assert_array_equal(index, kept)
    np.testing.assert_array_equal(feats["blocks.0"], block(0, 10)[0]["blocks.0"][kept])
    assert read_info(final).attrs["skipped_items"].tolist() == [6]


def test_a_partial_file_another_process_writes_is_left_alone(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "train.h5.partial"
    part = PartialCache.open(path, header(), WIDTHS)
    write_all(part, 4)
    part.file.flush()  # still open for writing here: HDF5 locks the file
    probe = (
        "import sys; from layerprobe.extract.writer import PartialCache\n"
        "from layerprobe.errors import CacheError\n"
        "try:\n"
        f"    PartialCache.open({str(path)!r}, {header()!r}, {WIDTHS!r})\n"
        "except CacheError as err:\n"
        "    print(err); sys.exit(3)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=HANG
    )
    assert run.returncode == 3 and "being written by another process" in run.stdout, run.stderr
    assert path.exists() and part.rows_done == 4
    part.close()
