"""The run folder: what a pre-training run keeps on disk, and how it is checked and resumed.

``RUN_DIR/``

- ``config.json``: the run's config (and the resolved architecture); a folder holds one;
- ``state.pt``: the resumable state after the last completed epoch (weights, optimizer,
  metrics), rewritten atomically after every epoch and removed once the run is complete;
- ``metrics.csv``: one row per completed epoch;
- ``checkpoint.pt``: the layerprobe checkpoint, written last: its existence means done;
- ``.lock``: held (``flock``) by the process writing the folder, with a note naming it; a
  second ``pretrain`` into the same folder is refused while it is held.

Every file is written under a temporary name and renamed. A run refused or failed before its
first epoch was saved leaves no folder behind where it made the folder itself.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from layerprobe.backbones.weights import HASH_KEY, tensors_sha256
from layerprobe.errors import (
    CheckpointError,
    ConfigError,
    UserError,
    check_writable,
    missing_folders,
)
from layerprobe.locks import holder, release_lock, take_lock
from layerprobe.runtime.atomic import write_bytes_atomic

CHECKPOINT_NAME = "checkpoint.pt"
STATE_NAME = "state.pt"
METRICS_NAME = "metrics.csv"
CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"
METRIC_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "upstream_accuracy",
    "images",
    "seconds",
    "images_per_s",
)


def run_complete(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a finished run.

    Parameters
    ----------
    out_dir : a pre-training run folder.

    Returns
    -------
    bool
        True when its final checkpoint exists (it is written last, atomically).
    """
    return (Path(out_dir) / CHECKPOINT_NAME).is_file()


class RunFolder:
    """Reading and writing one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def snapshot(self, epoch: int) -> Path:
        """Where the snapshot after ``epoch`` epochs goes (named after the run, for model keys)."""
        folder = self.path / "snapshots"
        folder.mkdir(exist_ok=True)
        return folder / f"{self.path.resolve().name}-e{epoch}.pt"

    @contextlib.contextmanager
    def claim(self, main: bool = True) -> Iterator[RunFolder]:
        """Hold the folder's lock while the body writes it (``main``: this process writes it).

        The folder is created if missing and checked to be writable (:class:`ConfigError`
        naming ``--out`` otherwise). Another process holding the lock raises
        :class:`FolderBusy` naming it. If the body raises and this call made the folder, and no
        epoch was saved in it, the folder is removed again: a refused or failed start leaves
        nothing behind.
        """
        if not main:
            yield self
            return
        made = missing_folders(self.path)
        where = self.path / LOCK_NAME

        def busy(note: dict) -> FolderBusy:
            return FolderBusy(
                f"run folder {self.path} is in use by {holder(note)} (another pretrain writing "
                "it); wait for it to finish or stop it, or give another --out"
            )

        try:
            check_writable(self.path, "--out")
            fd = take_lock(where, busy)
        except BaseException:
            self._remove_made(made)
            raise
        try:
            yield self
        except BaseException:
            release_lock(where, fd)
            fd = -1
            if made and not (self.path / STATE_NAME).exists() and not run_complete(self.path):
                shutil.rmtree(self.path, ignore_errors=True)
                self._remove_made(made[1:])
            raise
        finally:
            if fd >= 0:
                release_lock(where, fd)

    @staticmethod
    def _remove_made(made: list[Path]) -> None:
        """Remove the (empty) folders in ``made``, deepest first, stopping at one not empty."""
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                return

    def check(self, identity: dict, force: bool) -> str:
        """``"new"``, ``"resume"`` or ``"complete"``; read-only, so every rank may call it.

        A folder holding another config raises :class:`ConfigError` unless ``force`` (then
        ``"new"``: the run starts over).
        """
        stored = self.read_identity()
        if stored is None:
            return "new"
        if stored != identity:
            if force:
                return "new"
            raise ConfigError(
                f"run folder {self.path} holds a run of another config ({_differences(stored, identity)}); "
                "give another --out, or --force to start over there"
            )
        return "complete" if run_complete(self.path) else "resume"

    def read_identity(self) -> dict | None:
        path = self.path / CONFIG_NAME
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())["identity"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(
                f"{path} is not a layerprobe run config ({err}); give another --out, or --force"
            ) from err

    def start(self, identity: dict, details: dict) -> None:
        """Make the folder hold a fresh run of ``identity`` (removing another run's files)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.read_identity() != identity:
            for name in (CHECKPOINT_NAME, STATE_NAME, METRICS_NAME):
                (self.path / name).unlink(missing_ok=True)
        text = json.dumps({"identity": identity, **details}, indent=2, sort_keys=True, default=str)
        write_bytes_atomic(self.path / CONFIG_NAME, text.encode())

    def load_state(self, identity: dict) -> dict | None:
        """The state after the last completed epoch, or None when no epoch has completed."""
        path = self.path / STATE_NAME
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a damaged file is the user's to remove
            raise CheckpointError(
                f"cannot read the resumable state {path} ({type(err).__name__}); delete it to "
                "restart the run from the beginning"
            ) from err
        if state.get("identity") != identity:
            raise CheckpointError(
                f"{path} belongs to another config than {self.path / CONFIG_NAME}; delete it"
            )
        stored = state.get(HASH_KEY)
        if stored is not None and tensors_sha256(state.get("model", {})) != stored:
            raise CheckpointError(
                f"the resumable state {path} is damaged (its weights do not match the sha256 "
                "stored with them); delete it to restart the run from the beginning"
            )
        return state

    def save_state(self, state: dict) -> None:
        """Write the resumable state (with the sha256 of its weights, checked on load)."""
        buffer = io.BytesIO()
        torch.save({**state, HASH_KEY: tensors_sha256(state["model"])}, buffer)
        write_bytes_atomic(self.path / STATE_NAME, buffer.getvalue())

    def write_metrics(self, rows: list[dict]) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_bytes_atomic(self.path / METRICS_NAME, out.getvalue().encode())

    def finish(self) -> None:
        """Drop the resumable state once the checkpoint is written."""
        (self.path / STATE_NAME).unlink(missing_ok=True)


class FolderBusy(UserError):
    """Another process is writing the run folder."""


def _differences(old: dict, new: dict, limit: int = 3) -> str:
    """``data_fraction: 0.02 there, 0.03 now; ...``: only the fields that differ, nested
    fields by their dotted path (the run config's own without a prefix)."""
    old, new = _flatten(old), _flatten(new)
    keys = sorted(set(old) | set(new))
    missing = "(none)"
    diffs = [
        f"{k}: {old.get(k, missing)!r} there, {new.get(k, missing)!r} now"
        for k in keys
        if old.get(k, missing) != new.get(k, missing)
    ]
    more = f", and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _flatten(value: dict, prefix: str = "") -> dict:
    out = {}
    for key, item in value.items():
        name = f"{prefix}{key}" if prefix or key != "config" else ""
        if isinstance(item, dict) and item:
            out.update(_flatten(item, f"{name}." if name else ""))
        else:
            out[name or key] = item
    return out
