"""Writing the HDF5 cache: a ``.partial`` file filled block by block, resumable, renamed when complete.

The file follows the contract in :mod:`layerprobe.extract.cache`. Every dataset is created at
its full size N up front and chunked by rows; each block of rows is written, flushed, and only
then is ``rows_done`` advanced and flushed again. So after a crash (``kill -9`` included) the
rows below ``rows_done`` are good, rows above it are overwritten on resume, and a file that is
not complete is never named ``<split>.h5``.

Extra attributes, besides the contract's:

``num_items``, ``item_start``, ``item_stop``
    The split's size, and the range of dataset items this file covers (a rank's shard in a
    ``torchrun`` extraction; the whole split otherwise).
``items_done``
    Dataset items processed so far (rows written plus items skipped).
``skipped_items`` (K,) int64
    Dataset indices of unreadable images left out with ``--skip-bad``. Their rows are
    *removed*: the finished file has N - K rows and ``index`` says which item each row is.
``amp``
    ``"none"`` or ``"bf16"``: the autocast the features were computed under.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from layerprobe.errors import CacheError, EnvironmentProblem
from layerprobe.extract.cache import FORMAT_VERSION
from layerprobe.locks import holder, lock_path, release_lock, take_lock
from layerprobe.runtime.warn import warn as warn_user

# Attributes that say *what* a file holds; a partial file is resumed only when all of them match.
IDENTITY_ATTRS = (
    "format_version",
    "model_key",
    "weights_sha256",
    "task",
    "task_fingerprint",
    "split",
    "layers",
    "pooling",
    "dtype",
    "amp",
    "num_items",
    "item_start",
    "item_stop",
)
# Chunks of 10 KiB - 1 MiB are what HDF5 reads and writes best; aim at the middle.
CHUNK_TARGET_BYTES = 256 * 1024


def chunk_rows(width: int, itemsize: int, num_rows: int) -> int:
    """Rows per chunk so that a chunk of a (N, width) dataset holds about 256 KiB."""
    rows = max(1, CHUNK_TARGET_BYTES // max(1, width * itemsize))
    return max(1, min(rows, num_rows))


def is_no_space(err: Exception, path: Path | None = None) -> bool:
    """Whether an error of a write (h5py's OSError or RuntimeError, which often lack ``errno``)
    means the disk is full; with ``path``, also any HDF5 write error while its disk is full
    (after a first failed write HDF5 reports the next ones as address overflows)."""
    text = str(err)
    if (
        getattr(err, "errno", None) == errno.ENOSPC
        or "No space left" in text
        or "errno = 28" in text
    ):
        return True
    return path is not None and _free_bytes(path) < SPACE_MARGIN


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn 'no space left on device' during a write into :class:`EnvironmentProblem`."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if is_no_space(err, path):
            raise EnvironmentProblem(
                f"no space left on the device while writing {path}; free some space and re-run the "
                "same command: it resumes where it stopped"
            ) from err
        raise


def _free_bytes(path: Path) -> float:
    """Bytes free to this user on the file system of ``path``'s folder (inf when unknown)."""
    try:
        st = os.statvfs(Path(path).parent)
    except OSError:
        return float("inf")
    return st.f_bavail * st.f_frsize


SPACE_MARGIN = 1 << 20  # bytes kept free beyond a block's own: HDF5 metadata, the file system


def check_space(path: Path, need: int) -> None:
    """Raise :class:`EnvironmentProblem` before writing ``need`` bytes into ``path`` when its
    file system has not that much free (plus :data:`SPACE_MARGIN`): HDF5 is never asked to
    write into a full disk, which it reports badly (errors inside destructors, then a crash)."""
    free = _free_bytes(path)  # inf when unknown: a real failure is still caught by disk_errors
    if free < need + SPACE_MARGIN:
        raise EnvironmentProblem(
            f"no space left on the device while writing {path} ({free / 2**20:.1f} MiB free, the "
            f"next block needs {(need + SPACE_MARGIN) / 2**20:.1f} MiB); free some space and re-run "
            "the same command: it resumes where it stopped"
        )


def _same(a, b) -> bool:
    if isinstance(a, bytes):
        a = a.decode()
    if isinstance(a, np.ndarray) or isinstance(b, list | tuple | np.ndarray):
        return _decoded_list(a) == list(b)
    if isinstance(a, np.generic):
        a = a.item()
    return a == b


class PartialCache:
    """An open ``.partial`` cache file being filled with rows in dataset order.

    Use :meth:`open` (resume or start), then :meth:`write` blocks, then :meth:`finish`.

    Attributes
    ----------
    rows_done : rows written and committed so far.
    items_done : dataset items of ``[item_start, item_stop)`` processed so far (written or skipped).
    skipped : dataset indices of skipped (unreadable) items.
    """

    def __init__(self, path: Path, file: h5py.File, lock: int):
        self.path = path
        self.file = file
        self._lock = lock
        self.rows_done = int(file.attrs["rows_done"])
        self.items_done = int(file.attrs["items_done"])
        self.skipped = _skipped_items(file.attrs)
        self.layers = [str(x) for x in _decoded_list(file.attrs["layers"])]
        # Datasets stay open while the file is: closing a dataset writes its cached chunks, and
        # HDF5 reports a full disk there only inside a destructor (ignored, then a crash).
        # Open, the chunks are written by the flush after each block, where errors are raised.
        self._datasets = {name: file[name] for name in ("labels", "index")}
        self._datasets |= {layer: file["features"][layer] for layer in self.layers}

    @classmethod
    def open(
        cls, path: str | Path, header: dict, widths: dict[str, int], *, warn=warn_user
    ) -> PartialCache:
        """Resume ``path`` if it holds the same extraction (``header``'s identity), else start it anew.

        Parameters
        ----------
        path : the ``.partial`` file.
        header : attributes of the extraction (see :data:`IDENTITY_ATTRS`); ``item_start`` and
            ``item_stop`` give the number of rows, ``item_stop - item_start``.
        widths : ``{layer: D}``, the pooled width of each layer in ``header["layers"]``.
        warn : called with a one-line message when an unusable partial file is discarded
            (default: a :class:`~layerprobe.runtime.warn.LayerprobeWarning`).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The lock is taken before HDF5 touches the file: HDF5 truncates a file before it
        # locks it, so without this a second process could wipe the first one's rows.
        lock = _take_lock(path)
        try:
            if path.exists():
                reason = _resume_problem(path, header)
                if reason is None:
                    with disk_errors(path):
                        return cls(path, h5py.File(path, "r+"), lock)
                warn(f"restarting {path} from zero: {reason}")
                path.unlink()
            with disk_errors(path):
                return cls(path, _create(path, header, widths), lock)
        except BaseException:
            os.close(lock)
            raise

    @property
    def complete(self) -> bool:
        return bool(self.file.attrs["complete"])

    def write(
        self,
        feats: dict[str, np.ndarray],
        labels: np.ndarray,
        index: np.ndarray,
        *,
        items: int,
        skipped: list[int] = (),
    ) -> None:
        """Append a block of rows and commit it.

        Parameters
        ----------
        feats : ``{layer: (R, D)}`` features of the block's rows, in the file's dtype.
        labels, index : (R,) label and dataset item of each row.
        items : how many dataset items the block covers (R plus the skipped ones).
        skipped : dataset indices of the block's skipped items.
        """
        start, stop = self.rows_done, self.rows_done + len(index)
        need = sum(np.asarray(a).nbytes for a in (*feats.values(), labels, index))
        check_space(self.path, need + self._chunk_bytes())
        with disk_errors(self.path):
            if stop > start:
                self._write_rows(start, stop, feats, labels, index)
                self.file.flush()  # data reaches the file before rows_done says it is there
            if len(skipped):
                self.skipped += [int(i) for i in skipped]
                self.file.attrs["skipped_items"] = np.asarray(self.skipped, dtype=np.int64)
            self.file.attrs["rows_done"] = stop
            self.file.attrs["items_done"] = self.items_done + items
            self.file.flush()
        self.rows_done, self.items_done = stop, self.items_done + items

    def _write_rows(self, start, stop, feats, labels, index) -> None:
        for layer in self.layers:
            self._datasets[layer][start:stop] = feats[layer]
        self._datasets["labels"][start:stop] = labels
        self._datasets["index"][start:stop] = index

    def _chunk_bytes(self) -> int:
        """Bytes of one chunk of every dataset: what HDF5 may allocate at once beyond a block."""
        return sum(
            int(np.prod(d.chunks or d.shape)) * d.dtype.itemsize for d in self._datasets.values()
        )

    def mark_complete(self) -> None:
        """Drop the rows of skipped items (datasets shrink to ``rows_done``) and set ``complete``."""
        with disk_errors(self.path):
            if self.file["labels"].shape[0] != self.rows_done:
                for name in ["labels", "index"] + [f"features/{layer}" for layer in self.layers]:
                    self.file[name].resize(self.rows_done, axis=0)
            self.file.attrs["complete"] = True
            self.file.flush()

    def close(self) -> None:
        """Close the file (flushing what is left; a full disk is an :class:`EnvironmentProblem`)."""
        self._datasets = {}
        try:
            if self.file.id.valid:
                with disk_errors(self.path):
                    self.file.close()
        finally:
            self._release()

    def abandon(self) -> None:
        """Close after an error, never masking it: what was committed stays resumable."""
        self._datasets = {}
        try:
            if self.file.id.valid:
                self.file.close()
        except Exception:  # noqa: BLE001 - the error being handled matters more
            pass
        self._release()

    def _release(self) -> None:
        if self._lock >= 0:
            release_lock(lock_path(self.path), self._lock)
            self._lock = -1

    def verify(self) -> None:
        """Raise unless every dataset holds exactly ``rows_done`` rows of the declared width."""
        widths = {name: self.file["features"][name].shape for name in self.layers}
        rows = {self.file["labels"].shape[0], self.file["index"].shape[0]}
        rows |= {shape[0] for shape in widths.values()}
        if rows != {self.rows_done} or int(self.file.attrs["items_done"]) != int(
            self.file.attrs["item_stop"]
        ) - int(self.file.attrs["item_start"]):
            raise CacheError(
                f"{self.path} is inconsistent after writing (rows {sorted(rows)}, expected "
                f"{self.rows_done}); it was not renamed: delete it and extract again"
            )

    def finish(self, final: str | Path) -> Path:
        """Mark complete, check every dataset, close, and rename to ``final`` (replacing an
        older file there). The lock is held until the rename is done."""
        self.mark_complete()
        self.verify()
        self._datasets = {}
        try:
            if self.file.id.valid:
                with disk_errors(self.path):
                    self.file.close()
            os.replace(self.path, final)
        finally:
            self._release()
        return Path(final)


def _take_lock(path: Path) -> int:
    """An exclusive, non-blocking lock on :func:`~layerprobe.locks.lock_path` of ``path``; a
    :class:`CacheError` naming the holder when another process holds it. Returns the
    descriptor that holds it."""

    def busy(note: dict) -> CacheError:
        return CacheError(
            f"{path} is being written by another process ({holder(note)}); wait for it to "
            "finish, or stop it and re-run this command to resume"
        )

    return take_lock(lock_path(path), busy)


def _decoded_list(value) -> list:
    return [x.decode() if isinstance(x, bytes) else x for x in np.asarray(value).tolist()]


def _skipped_items(attrs) -> list[int]:
    return [int(i) for i in np.asarray(attrs["skipped_items"]).tolist()]


def _resume_problem(path: Path, header: dict) -> str | None:
    """Why the partial file at ``path`` cannot be resumed for ``header``, or None if it can."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            layers = _decoded_list(attrs.get("layers", []))
            shapes = {name: f["features"][name].shape[0] for name in layers}
            n = f["labels"].shape[0]
            for key in ("rows_done", "items_done", "skipped_items", "complete"):
                attrs[key]  # noqa: B018 - raises KeyError when missing
    except OSError as err:
        if _is_locked(err):  # never discard a file another process is filling
            raise CacheError(
                f"{path} is being written by another process (the file is locked); wait for it "
                "to finish, or stop it and re-run this command to resume"
            ) from err
        return f"the file cannot be read ({type(err).__name__}: {err})"
    except (KeyError, ValueError, RuntimeError) as err:
        return f"the file cannot be read ({type(err).__name__}: {err})"
    for key in IDENTITY_ATTRS:
        if not _same(attrs.get(key, ""), header.get(key, "")):
            return f"it was started with another {key} ({_short(attrs.get(key))} != {_short(header.get(key))})"
    rows = header["item_stop"] - header["item_start"]
    if (
        n < int(attrs["rows_done"])
        or any(s != n for s in shapes.values())
        or int(attrs["items_done"]) > rows
    ):
        return "its row counts are inconsistent"
    return None


def _is_locked(err: OSError) -> bool:
    return err.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "unable to lock file" in str(err)


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        value = _decoded_list(value)
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _create(path: Path, header: dict, widths: dict[str, int]) -> h5py.File:
    rows = header["item_stop"] - header["item_start"]
    f = h5py.File(path, "w")
    try:
        for key, value in header.items():
            f.attrs[key] = _attr(value)
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["extraction_id"] = uuid.uuid4().hex
        f.attrs["rows_done"] = 0
        f.attrs["items_done"] = 0
        f.attrs["skipped_items"] = np.zeros(0, dtype=np.int64)
        f.attrs["complete"] = False
        dtype = np.dtype(header["dtype"])
        # maxshape=None on rows lets finishing drop the rows of skipped items.
        for name in ("labels", "index"):
            f.create_dataset(
                name,
                shape=(rows,),
                maxshape=(None,),
                dtype=np.int64,
                chunks=(chunk_rows(1, 8, max(rows, 1)),),
            )
        group = f.create_group("features")
        for layer in header["layers"]:
            width = int(widths[layer])
            group.create_dataset(
                layer,
                shape=(rows, width),
                maxshape=(None, width),
                dtype=dtype,
                chunks=(chunk_rows(width, dtype.itemsize, max(rows, 1)), width),
            )
        f.flush()
    except BaseException:
        f.close()
        raise
    return f


def _attr(value):
    """An attribute value h5py stores well: dicts as JSON, lists of str as string arrays."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return np.asarray(value, dtype=h5py.string_dtype())
    if isinstance(value, list | tuple):
        return np.asarray(value)
    return value


def merge_shards(
    shards: list[Path], target: Path, header: dict, *, widths: dict[str, int]
) -> PartialCache:
    """Concatenate complete rank shards (in rank order) into a fresh partial file at ``target``.

    Rows are copied one chunk-sized block at a time, so memory stays bounded by a block.
    The returned file is ready for :meth:`PartialCache.finish`.
    """
    if target.exists():
        target.unlink()
    out = PartialCache.open(target, header, widths)
    try:
        for shard in shards:
            with h5py.File(shard, "r") as f:
                n, items = int(f.attrs["rows_done"]), int(f.attrs["items_done"])
                skipped = _skipped_items(f.attrs)
                # chunk_rows is at least 1
                block = min(
                    chunk_rows(w, np.dtype(header["dtype"]).itemsize, n) for w in widths.values()
                )
                for start in range(0, max(n, 1), block):
                    stop = min(n, start + block)
                    feats = {layer: f["features"][layer][start:stop] for layer in out.layers}
                    last = stop >= n
                    out.write(
                        feats,
                        f["labels"][start:stop],
                        f["index"][start:stop],
                        items=(stop - start) + (items - n if last else 0),
                        skipped=skipped if last else (),
                    )
    except BaseException:
        out.abandon()
        raise
    return out
