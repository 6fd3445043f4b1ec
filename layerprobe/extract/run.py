"""`extract`: run a backbone over a task's splits once and write one HDF5 cache file per split.

For each split: reuse a complete cache with the same model key (unless ``force``), otherwise
resume or start ``<split>.h5.partial``, stream pooled features into it batch by batch (memory
bounded by a batch, never by the dataset) and rename it to ``<split>.h5`` once complete. Under
``torchrun`` each rank fills a shard of the rows and rank 0 merges the shards.

``force`` means "do not reuse the finished cache"; a ``.partial`` file of the same extraction
is still resumed, so that a killed ``--force`` run continues when the same command is re-run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerprobe import __version__
from layerprobe.backbones import Backbone, ModelConfig, as_model_config
from layerprobe.errors import (
    CacheError,
    ConfigError,
    DataError,
    check_folder,
    check_writable,
)
from layerprobe.extract import distributed
from layerprobe.extract.cache import FORMAT_VERSION, cache_path, partial_path, read_info
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.data import batches
from layerprobe.extract.features import BatchFeatures
from layerprobe.extract.writer import PartialCache, merge_shards
from layerprobe.progress import Progress
from layerprobe.runtime.devices import resolve_device
from layerprobe.runtime.warn import warn as warn_user
from layerprobe.tasks.base import Task
from layerprobe.tasks.registry import get_task


def extract(
    model: str | Path | ModelConfig | Backbone,
    task: str | Task,
    config: ExtractConfig | None = None,
    **options,
) -> list[Path]:
    """Extract pooled features of every requested layer for every requested split of a task.

    Parameters
    ----------
    model : a :class:`~layerprobe.backbones.ModelConfig` (spec, checkpoint, ``model_args`` …),
        a bare spec (``"vit_small_patch16_224"``, ``"python:pkg.mod:factory"``, a layerprobe
        checkpoint path), or a loaded ``Backbone``.
    task : a task name (``layerprobe tasks``), ``"folder:PATH"``, or a :class:`Task`.
    config : how to extract (:class:`ExtractConfig`); default ``ExtractConfig()``.
    **options : :class:`ExtractConfig` fields replacing those of ``config``
        (``extract(bb, "builtin/digits", cache_dir="cache")``).

    Returns
    -------
    list of Path : the complete cache file of each split, in the order of ``config.splits``.
    """
    config = ExtractConfig.build(config, **options)
    check_writable(config.cache_dir, "--cache")
    dev = resolve_device(config.device)
    task = get_task(task) if isinstance(task, str) else task
    split_names = resolve_splits(task, config.splits)
    bb = model if isinstance(model, Backbone) else as_model_config(model).load()
    bb = bb.with_resize(config.resize or task.resize)
    requested = [p.name for p in bb.select(config.layers)]
    model_key = bb.model_key(config.pool)  # also checks the pooling name
    ranks = distributed.start(dev.type)
    try:
        if dev.type == "cuda" and ranks.world > 1:
            dev = torch.device("cuda", ranks.local_rank)
        if len(set(ranks.gather(bb.weights_sha256))) > 1:
            raise ConfigError(
                "the torchrun ranks built different weights (a random initialisation?); pass "
                "--checkpoint or --pretrained so that every rank loads the same weights"
            )
        job = _Job(bb=bb, task=task, config=config, device=dev, ranks=ranks, model_key=model_key)
        n = len(split_names)
        return [
            job.run_split(split, requested, f"split {i} of {n}")
            for i, split in enumerate(split_names, 1)
        ]
    finally:
        distributed.stop(ranks)


def resolve_splits(task: Task, splits: str | list[str]) -> list[str]:
    """Split names to extract: ``all`` means every split of the task; commas separate names."""
    names = [splits] if isinstance(splits, str) else list(splits)
    names = [s.strip() for name in names for s in str(name).split(",") if s.strip()]
    if not names or names == ["all"]:
        return list(task.splits)
    out = []
    for name in names:
        if name == "all":
            out += [s for s in task.splits if s not in out]
        elif name not in task.splits:
            raise DataError(
                f"task {task.name!r} has no split {name!r}; it has {', '.join(task.splits)}"
            )
        elif name not in out:
            out.append(name)
    return out


def cache_header(
    bb,
    model_key: str,
    *,
    task: str,
    split: str,
    points,
    pool: str,
    dtype: str,
    amp: str,
    num_items: int,
    task_fingerprint: str = "",
) -> dict:
    """The attributes of a cache file (see :mod:`layerprobe.extract.cache`), before any row is written."""
    return {
        "format_version": FORMAT_VERSION,
        "model": bb.spec,
        "model_key": model_key,
        "weights_sha256": bb.weights_sha256,
        "task": task,
        "task_fingerprint": task_fingerprint,
        "split": split,
        "layers": [p.name for p in points],
        "depths": [float(p.depth) for p in points],
        # The pooling spelt out ("auto" -> what it means for this model), as in the model key.
        "pooling": bb.canonical_pool(pool),
        "preprocess": bb.preprocess.to_dict(),
        "pretrain": dict(bb.pretrain_info or {}),
        "dtype": dtype,
        "amp": amp,
        "layerprobe_version": __version__,
        "num_items": num_items,
        "item_start": 0,
        "item_stop": num_items,
    }


@dataclass
class _Job:
    """The settings shared by every split of one `extract` call."""

    bb: Backbone
    task: Task
    config: ExtractConfig
    device: torch.device
    ranks: distributed.Ranks
    model_key: str
    position: str = ""  # e.g. "split 1 of 2", in the progress of the split being extracted

    # -- messages ---------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if not self.config.quiet and self.ranks.is_main:
            print(f"layerprobe: {msg}", file=sys.stderr)

    def warn(self, msg: str) -> None:
        where = f"[rank {self.ranks.rank}] " if self.ranks.world > 1 else ""
        warn_user(f"{where}{msg}", stacklevel=2)

    # -- one split --------------------------------------------------------------------------
    def run_split(self, split: str, requested: list[str], position: str = "") -> Path:
        self.position = position
        final = cache_path(self.config.cache_dir, self.model_key, self.task.name, split=split)
        check_folder(final.parent, "--cache")  # a file where a model-key or task folder belongs
        fingerprint = self.task.fingerprint(split, self.config.content_hash)
        layers = self._layers_to_extract(final, requested, fingerprint)
        if layers is None:
            self.say(f"reusing complete cache {final}")
            return final
        data = self.task.load(split, self.config.data_root)
        if len(data) == 0:
            raise DataError(f"task {self.task.name!r} split {split!r} has no items; check the data")
        points = self.bb.select(layers)
        widths = self.bb.pooled_widths([p.name for p in points], self.config.pool)
        header = cache_header(
            self.bb,
            self.model_key,
            task=self.task.name,
            split=split,
            points=points,
            pool=self.config.pool,
            dtype=self.config.dtype,
            amp=self.config.amp,
            num_items=len(data),
            task_fingerprint=fingerprint,
        )
        partial = partial_path(self.config.cache_dir, self.model_key, self.task.name, split=split)
        if self.ranks.world == 1:
            part = self._fill(partial, header, widths, data, 0, len(data), split)
            return self._finish(part, final)
        return self._run_sharded(final, partial, split, header, widths, data)

    def _run_sharded(
        self, final: Path, merged_at: Path, split: str, header: dict, widths: dict, data
    ) -> Path:
        shards = [
            merged_at.with_name(f"{merged_at.name}.rank{r}of{self.ranks.world}")
            for r in range(self.ranks.world)
        ]
        start, stop = self.ranks.shard(len(data))
        part = self._fill(shards[self.ranks.rank], header, widths, data, start, stop, split)
        try:
            part.mark_complete()
            part.close()
        except BaseException:
            part.abandon()
            raise
        self.ranks.barrier()  # every shard is complete
        if self.ranks.is_main:
            merged = merge_shards(
                shards, merged_at, header | {"item_start": 0, "item_stop": len(data)}, widths=widths
            )
            self._finish(merged, final)
            for shard in shards:
                shard.unlink(missing_ok=True)
        self.ranks.barrier()  # the merged file exists before any rank returns it
        return final

    def _finish(self, part: PartialCache, final: Path) -> Path:
        try:
            part.finish(final)
        except BaseException:
            part.abandon()
            raise
        if part.skipped:
            self.warn(
                f"skipped {len(part.skipped)} unreadable image(s); their dataset indices are "
                f"in the skipped_items attribute of {final}"
            )
        self.say(f"wrote {final} ({part.rows_done} rows, {len(part.layers)} layers)")
        return final

    def _layers_to_extract(
        self, final: Path, requested: list[str], fingerprint: str
    ) -> list[str] | None:
        """None to reuse the complete cache at ``final``; else the layers to extract."""
        if self.config.force or not final.exists():
            return requested
        try:
            info = read_info(final)
        except CacheError as err:
            if "format_version" in str(err):
                raise
            raise CacheError(f"{err} (or pass --force to extract it again)") from err
        if info.attrs.get("task_fingerprint", "") != fingerprint:
            self.say(
                f"extracting {final} again: the images of {self.task.name} changed since it was "
                f"made ({info.attrs.get('task_fingerprint')!r}, now {fingerprint!r})"
            )
            return requested
        missing = [name for name in requested if name not in info.layers]
        if (
            not missing
            and info.attrs.get("dtype") == self.config.dtype
            and info.attrs.get("amp", "none") == self.config.amp
        ):
            return None
        if missing:
            why = f"it lacks layer(s) {', '.join(missing)}"
        else:
            why = f"it was made with dtype={info.attrs.get('dtype')}, amp={info.attrs.get('amp', 'none')}"
        self.say(f"extracting {final} again: {why}; its other layers are kept")
        return list(dict.fromkeys(list(info.layers) + requested))

    def _fill(
        self, path: Path, header: dict, widths: dict, data, start: int, stop: int, split: str
    ) -> PartialCache:
        """Open (resume or start) the partial file of items ``[start, stop)`` and fill it."""
        header = header | {"item_start": start, "item_stop": stop}
        part = PartialCache.open(path, header, widths, warn=self.warn)
        try:
            if not part.complete and part.items_done < stop - start:
                if part.items_done:
                    self.say(
                        f"resuming {path} at item {start + part.items_done} of {header['num_items']}"
                    )
                self._stream(part, data, start, stop, split)
        except BaseException:
            part.abandon()
            raise
        return part

    def _stream(self, part: PartialCache, data, start: int, stop: int, split: str) -> None:
        compute = BatchFeatures(
            self.bb, part.layers, self.config.pool, self.device, self.config.dtype, self.config.amp
        )
        pre = self.bb.preprocess
        loader = batches(
            data,
            start + part.items_done,
            stop,
            transform=pre.transform(),
            image_size=pre.input_size,
            batch_size=self.config.batch_size,
            workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
        )
        where = f" ({self.position})" if self.position else ""
        with Progress(
            stop - start,
            initial=part.items_done,
            unit="img",
            quiet=self.config.quiet or not self.ranks.is_main,
            desc=f"extract {self.task.name}/{split}{where}",
            first=True,
        ) as bar:
            for x, index, errors in loader:
                index = index.numpy()
                bad = np.array([bool(e) for e in errors])
                if bad.any() and not self.config.skip_bad:
                    raise DataError(" ".join(errors[int(np.argmax(bad))].split()))
                keep = index[~bad]
                if len(keep):
                    feats = compute(x[torch.from_numpy(~bad)] if bad.any() else x, keep)
                else:
                    feats = {name: np.zeros((0, 1)) for name in part.layers}
                part.write(
                    feats, data.labels[keep], keep, items=len(index), skipped=index[bad].tolist()
                )
                bar.update(len(index))
