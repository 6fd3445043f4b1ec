"""Expanding a job into units of work with their dependencies.

Units: ``pretrain(config)``, ``extract(model, task, split)``, ``probe(model, task)``,
``finetune(model, task)``. Each has an id computed from the job file alone (readable names
plus a hash of every setting that changes its output), so planning never builds a model or
opens a cache, and a changed setting makes new units instead of reusing stale ones.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from layerprobe.jobs.jobfile import Job
from layerprobe.runtime.ids import short_hash, slug

STAGES = ("pretrain", "extract", "probe", "finetune")
# Settings that change how fast a stage runs, not what it writes.
EXTRACT_SPEED = ("batch_size", "device", "workers")
RUN_SPEED = ("device",)
NOT_AXES = ("model_args", "snapshots")
# Short names of pre-training axes in run folder names.
AXIS_ABBR = {
    "data_fraction": "df",
    "epochs": "ep",
    "head_wd": "hwd",
    "head_lr_mult": "hlr",
    "seed": "s",
    "batch_size": "bs",
    "warmup_epochs": "wu",
    "label_smoothing": "ls",
    "image_size": "px",
}
CHECKPOINT = "checkpoint.pt"


class Unit(NamedTuple):
    """One unit of work: a stage applied to a model (and a task and split).

    Its ``id`` is ``<model id>`` (pretrain) or ``<model id>~<tail>``, where the tail (task,
    split and the stage's settings hash) is one string shared by every model's unit, so a plan
    of half a million units stays small.

    Attributes
    ----------
    stage : ``pretrain``, ``extract``, ``probe`` or ``finetune``.
    model : the model id.
    task, split : what the stage works on (empty for ``pretrain``).
    deps : indices into :attr:`Plan.units` of the units that must be done first.
    tail : the id's part after the model id.
    """

    stage: str
    model: str
    task: str = ""
    split: str = ""
    deps: tuple[int, ...] = ()  # indices into Plan.units
    tail: str = ""

    @property
    def id(self) -> str:
        return f"{self.model}~{self.tail}" if self.tail else self.model


@dataclass
class Model:
    """A model of the job: a ``[[models]]`` table or a pre-training grid point.

    Attributes
    ----------
    id : readable name plus a hash of its settings (unique in the job).
    table : the ``[[models]]`` table (ModelConfig fields + label), or None.
    point : the PretrainConfig fields of a grid point, or None.
    index : which ``[[models]]`` table or ``[pretrain]`` grid (for error lines).
    run_dir : the pre-training run folder (its checkpoint feeds extraction).
    """

    id: str
    table: dict | None = None
    point: dict | None = None
    index: int = 0
    run_dir: Path | None = None

    def model_config(self):
        """The ``ModelConfig`` that extraction and fine-tuning use."""
        from layerprobe.jobs.configs import model_config

        if self.point is not None:
            return model_config({"spec": str(self.run_dir / CHECKPOINT)})
        return model_config(self.table)


@dataclass
class Plan:
    """Every unit of a job, each model's units together (pretrain, extract, probe, finetune);
    a unit's dependencies come before it.

    Attributes
    ----------
    job : the job file it expands.
    models : model id -> the model (a listed spec or a pre-training grid point).
    units : every unit, dependencies first.
    """

    job: Job
    models: dict[str, Model]
    units: list[Unit]

    def counts(self) -> dict[str, int]:
        have = Counter(u.stage for u in self.units)
        return {stage: have.get(stage, 0) for stage in STAGES}

    def points(self) -> list[tuple[int, dict]]:
        """(grid index, PretrainConfig fields) of every pre-training config."""
        return [(m.index, m.point) for m in self.models.values() if m.point is not None]


def grid_points(grid: dict) -> list[dict]:
    """The points of a ``[pretrain]`` grid: every list value is an axis (model_args and
    snapshots, whose values are lists themselves, are not)."""
    axes = [k for k, v in grid.items() if isinstance(v, list) and k not in NOT_AXES]
    shared = {k: v for k, v in grid.items() if k not in axes}
    return [
        shared | dict(zip(axes, values, strict=True))
        for values in itertools.product(*(grid[k] for k in axes))
    ]


def run_name(point: dict, axes: list[str]) -> str:
    """``<model>_df0.1_ep7_s0-<hash>``: the axes' values for people, the hash for uniqueness."""
    parts = [slug(str(point["model"]).rsplit(":", 1)[-1].rsplit("/", 1)[-1], 40)]
    for key in axes:
        if key != "model":
            value = point[key]
            text = f"{value:g}" if isinstance(value, float) else str(value)
            parts.append(f"{AXIS_ABBR.get(key, key)}{slug(text, 20)}")
    return f"{'_'.join(parts)}-{short_hash(point)}"


def job_models(job: Job) -> dict[str, Model]:
    """Every model of the job by id: ``[[models]]`` tables, then pre-training grid points."""
    models: dict[str, Model] = {}
    for i, table in enumerate(job.models):
        spec = table["spec"]
        label = table.get("label") or re.sub(
            r"\.(pt|pth|bin|safetensors)$", "", re.split(r"[:/]", spec)[-1]
        )
        mid = f"{slug(label, 60)}-{short_hash(table)}"
        if mid in models:
            raise job.error(
                f"[[models]] #{i + 1} repeats model {spec!r} with the same settings",
                "models",
                "spec",
                index=i,
            )
        models[mid] = Model(mid, table=table, index=i)
    for g, grid in enumerate(job.pretrain):
        axes = [k for k, v in grid.items() if isinstance(v, list) and k not in NOT_AXES]
        for point in grid_points(grid):
            mid = run_name(point, axes)
            models.setdefault(mid, Model(mid, point=point, index=g, run_dir=job.dir / "runs" / mid))
    return models


def task_splits(job: Job) -> dict[str, list[str]]:
    """The splits to extract of each task (``[extract] splits``, default every split)."""
    from layerprobe.tasks.registry import get_task

    wanted = job.extract.get("splits", "all")
    names = [wanted] if isinstance(wanted, str) else [str(w) for w in wanted]
    names = [s.strip() for n in names for s in n.split(",") if s.strip()]
    out = {}
    for task in job.tasks:
        have = list(get_task(task).splits)
        if not names or "all" in names:
            out[task] = have
            continue
        missing = [s for s in names if s not in have]
        if missing:
            raise job.error(
                f"[extract] splits: task {task!r} has no split {missing[0]!r}; it has "
                f"{', '.join(have)}",
                "extract",
                "splits",
            )
        out[task] = [s for s in have if s in names]
        if not {"train", "test"} <= set(out[task]):
            raise job.error(
                "[extract] splits must include train and test (probes train on one "
                "and score on the other)",
                "extract",
                "splits",
            )
    return out


def stage_hashes(job: Job) -> dict[str, str]:
    """Per stage, a hash of the settings that change its outputs (part of every unit id)."""
    extract = {k: v for k, v in job.extract.items() if k not in EXTRACT_SPEED}
    xh = short_hash([extract, str(job.cache), job.data_root], 6)
    probe = {k: v for k, v in job.probe.items() if k not in RUN_SPEED}
    finetune = {k: v for k, v in (job.finetune or {}).items() if k not in RUN_SPEED}
    return {
        "extract": xh,
        "probe": short_hash([probe, str(job.results), xh], 6),
        "finetune": short_hash([finetune, str(job.results), job.data_root], 6),
    }


def make_plan(job: Job) -> Plan:
    """Expand ``job`` into its units.

    Parameters
    ----------
    job : a loaded job file.

    Returns
    -------
    Plan
        Every unit, each model's together, dependencies first (see :class:`Plan`).
    """
    models = job_models(job)
    splits = task_splits(job)
    hashes = stage_hashes(job)
    tasks = [(t, slug(t, 60)) for t in job.tasks]
    fine = [(t, slug(t, 60)) for t in job.finetune_tasks] if job.finetune is not None else []
    units: list[Unit] = []
    add = units.append
    xh, ph, fh = hashes["extract"], hashes["probe"], hashes["finetune"]
    extract_tails = {
        t: [(split, f"{tslug}~{split}~{xh}") for split in splits[t]] for t, tslug in tasks
    }
    for mid, model in models.items():
        first: tuple[int, ...] = ()
        if model.point is not None:
            first = (len(units),)
            add(Unit("pretrain", mid))
        for task, tslug in tasks:
            start = len(units)
            for split, tail in extract_tails[task]:
                add(Unit("extract", mid, task, split, first, tail))
            add(Unit("probe", mid, task, "", tuple(range(start, len(units))), f"{tslug}~{ph}"))
        for task, tslug in fine:
            add(Unit("finetune", mid, task, "", first, f"{tslug}~{fh}"))
    return Plan(job, models, units)
