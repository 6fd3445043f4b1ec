"""Job files: one TOML file describes a whole batch job; read and check it here.

A job file has these tables (every one but ``[job]`` and a model source is optional)::

    [job]        name, dir, tasks, cache, results, data_root
    [[models]]   spec + ModelConfig fields (checkpoint, model_args, ...) + label; repeatable
    [pretrain]   PretrainConfig fields; a list value is a grid axis ([[pretrain]]: several grids)
    [extract]    ExtractConfig fields (not cache_dir / data_root: those come from [job])
    [probe]      ProbeConfig fields; probe = one family or several ("ridge,logistic" or a list)
    [finetune]   FinetuneConfig fields + tasks (default: the job's tasks); present = fine-tune
    [run]        executor (local | slurm), workers, retries
    [slurm]      cluster, partition, account, qos, constraint, gpus, cpus, mem_gb, time,
                 array_parallelism, bundle, setup, extra

:func:`load_job` only reads and checks the structure and the names (cheap: status and plans
of paper-scale jobs use it); :func:`layerprobe.jobs.configs.check_job` builds every stage's
typed config once, so bad values fail with the file, the key and the line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from layerprobe.errors import UserError, did_you_mean, first_line
from layerprobe.jobs.lines import JobFileError, job_error, table_name

TABLES = ("job", "models", "pretrain", "extract", "probe", "finetune", "run", "slurm")
JOB_KEYS = ("name", "dir", "tasks", "cache", "results", "data_root")
EXECUTORS = ("local", "slurm")
CLUSTERS = ("slurm", "local", "debug")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
DEFAULT_JOBS_DIR = "jobs"


@dataclass(frozen=True)
class RunSettings:
    """``[run]``: how a job's units run (checked by :func:`load_job`).

    Attributes
    ----------
    executor : ``local`` (worker processes on this machine) or ``slurm`` (job arrays).
    workers : local worker processes (>= 1).
    retries : attempts after a unit's first failure (>= 0).
    """

    executor: str = "local"
    workers: int = 1
    retries: int = 0


@dataclass(frozen=True)
class SlurmSettings:
    """``[slurm]``: the Slurm executor's settings (checked by :func:`slurm_settings`); None
    leaves a setting to the executor's default (:mod:`layerprobe.jobs.slurm`).

    Attributes
    ----------
    cluster : ``slurm``, or ``local`` / ``debug`` (submitit's executors on this machine).
    partition, account, qos, constraint : sbatch's options of those names.
    gpus, cpus, mem_gb : per array task (GPUs per node, CPUs per task, memory in GB).
    time : the time limit of an array task, in minutes.
    array_parallelism : array tasks running at once.
    bundle : extract / probe units per array task.
    setup : shell lines run before each array task.
    extra : further sbatch options (name -> value).
    """

    cluster: str = "slurm"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: int | None = None
    time: int | None = None
    array_parallelism: int | None = None
    bundle: int | None = None
    setup: list[str] | None = None
    extra: dict | None = None

    def updated(self, given: dict | None) -> SlurmSettings:
        """These settings with the keys of ``given`` (checked by :func:`slurm_settings`,
        e.g. from command-line flags) in their place."""
        return replace(self, **(given or {}))


RUN_KEYS = tuple(f.name for f in fields(RunSettings))
SLURM_KEYS = tuple(f.name for f in fields(SlurmSettings))


@dataclass
class Job:
    """A job file, read and checked; paths are absolute, tables are as written.

    Attributes
    ----------
    path, text : the job file and its text (for error lines).
    name : the job's identity (recorded in its results folder).
    dir : the job folder: ``state/`` (done / failed / running records, logs), ``runs/``
        (pre-training runs), ``lock``; default ``jobs/<name>``.
    cache, results : feature cache and results store (default ``<dir>/cache``, ``<dir>/results``).
    data_root : where task data lives (None: ``$LAYERPROBE_DATA``).
    tasks : task names (patterns resolved), in registry order.
    models : the ``[[models]]`` tables; pretrain : the ``[pretrain]`` grids.
    extract, probe, finetune : the stage tables (finetune None: no fine-tuning).
    finetune_tasks : tasks to fine-tune on.
    run, slurm : executor settings (``[run]``, ``[slurm]``).
    """

    path: Path
    text: str
    name: str
    dir: Path
    cache: Path
    results: Path
    data_root: str | None
    tasks: list[str]
    models: list[dict] = field(default_factory=list)
    pretrain: list[dict] = field(default_factory=list)
    extract: dict = field(default_factory=dict)
    probe: dict = field(default_factory=dict)
    finetune: dict | None = None
    finetune_tasks: list[str] = field(default_factory=list)
    run: RunSettings = field(default_factory=RunSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)

    def error(self, message: str, table: str = "", key: str | None = None, *, index: int = 0):
        """A one-line :class:`JobFileError` naming this file, ``[table] key`` and its line."""
        return job_error(self.path, self.text, message, table=table, key=key, index=index)


def load_job(path: str | Path) -> Job:
    """Read and check a job file's structure, names and tasks (no model is built).

    Raises
    ------
    JobFileError : a missing file, bad TOML, an unknown table or key (with a suggestion), a
        wrong type, an unknown task, an empty grid, no models.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise JobFileError(
            f"job file {path} not found; give the path of a .toml job file"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise JobFileError(f"cannot read job file {path}: {first_line(err)}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise JobFileError(f"{path}: not valid TOML: {first_line(err)}") from None
    fail = _Failer(path, text)
    for key in data:
        if key not in TABLES:
            message = f"unknown table or key {key!r}.{did_you_mean(key, TABLES)} Tables: {', '.join(TABLES)}"
            if isinstance(data[key], dict | list):  # [key] or [[key]]: point at its header
                raise fail(message, key)
            raise fail(message, "", key)
    head = _table(data, "job", fail)
    _known(head, JOB_KEYS, "job", fail)
    name = head.get("name", path.stem)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise fail(
            f"[job] name must be letters, digits, '.', '_' or '-', got {name!r}", "job", "name"
        )
    root = _path(head.get("dir", Path(DEFAULT_JOBS_DIR) / name), "job", "dir", fail)
    job = Job(
        path=path.resolve(),
        text=text,
        name=name,
        dir=root,
        cache=_path(head.get("cache", root / "cache"), "job", "cache", fail),
        results=_path(head.get("results", root / "results"), "job", "results", fail),
        data_root=None
        if head.get("data_root") is None
        else str(_path(head["data_root"], "job", "data_root", fail)),
        tasks=_tasks(head.get("tasks"), "job", fail),
        models=_models(data.get("models", []), fail),
        pretrain=_grids(data.get("pretrain", []), fail),
        extract=_table(data, "extract", fail),
        probe=_table(data, "probe", fail),
        run=_run(_table(data, "run", fail), fail),
        slurm=SlurmSettings(**slurm_settings(_table(data, "slurm", fail), fail)),
    )
    if "finetune" in data:
        job.finetune = dict(_table(data, "finetune", fail))
        tasks = job.finetune.pop("tasks", None)
        job.finetune_tasks = job.tasks if tasks is None else _tasks(tasks, "finetune", fail)
    if not job.models and not job.pretrain:
        raise fail("the job has no models: add [[models]] tables (spec = ...) or a [pretrain] grid")
    return job


class _Failer:
    """Makes job-file errors for one file."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def __call__(self, message: str, table: str = "", key: str | None = None, index: int = 0):
        return job_error(self.path, self.text, message, table=table, key=key, index=index)


def _table(data: dict, name: str, fail) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise fail(f"{name!r} must be a table ([{name}]), got {type(value).__name__}", "", name)
    return value


def _known(table: dict, keys, name: str, fail, index: int = 0, where: str | None = None) -> None:
    for key in table:
        if key not in keys:
            raise fail(
                f"unknown key {key!r} in {where or table_name(name)}.{did_you_mean(key, keys)} "
                f"Keys: {', '.join(keys)}",
                name,
                key,
                index,
            )


def _path(value, table: str, key: str, fail) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise fail(f"[{table}] {key} must be a folder path (a string), got {value!r}", table, key)
    return Path(value).expanduser().absolute()


def _tasks(value, table: str, fail) -> list[str]:
    """Task names and shell patterns (``builtin/*``) as registered task names."""
    from layerprobe.tasks.summary import select_tasks

    if isinstance(value, str):
        value = [value]
    if not value or not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(
            f"[{table}] tasks must be a non-empty list of task names or patterns, e.g. "
            f'["builtin/*"], got {value!r}',
            table,
            "tasks",
        )
    try:
        return list(dict.fromkeys(t.name for t in select_tasks(value)))
    except UserError as err:
        raise fail(f"[{table}] tasks: {first_line(err)}", table, "tasks") from None


def _models(value, fail) -> list[dict]:
    if isinstance(value, dict):
        raise fail("models must be an array of tables: write [[models]], one per model", "models")
    out = []
    for i, model in enumerate(value):
        if not isinstance(model, dict):
            raise fail(
                "models must be an array of tables: write [[models]], one per model", "", "models"
            )
        if not isinstance(model.get("spec"), str) or not model["spec"].strip():
            raise fail(
                f'{table_name("models", index=i)} needs spec = "MODEL" (a timm name, '
                "torchvision:NAME, python:pkg.mod:factory or a checkpoint path)",
                "models",
                "spec",
                i,
            )
        if "label" in model and (
            not isinstance(model["label"], str) or not NAME_RE.match(model["label"])
        ):
            raise fail(
                f"{table_name('models', 'label', i)} must be letters, digits, '.', '_' or '-'",
                "models",
                "label",
                i,
            )
        model = dict(model)
        if isinstance(model.get("checkpoint"), str):
            model["checkpoint"] = str(Path(model["checkpoint"]).expanduser().absolute())
        out.append(model)
    return out


def _grids(value, fail) -> list[dict]:
    grids = [value] if isinstance(value, dict) else value
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise fail("pretrain must be a table ([pretrain]) or tables ([[pretrain]])", "", "pretrain")
    for i, grid in enumerate(grids):
        index = i if isinstance(value, list) else 0
        if "model" not in grid:
            raise fail(
                f'{table_name("pretrain")} needs model = "NAME" (or a list: a grid axis)',
                "pretrain",
                None,
                index,
            )
        for key, axis in grid.items():
            if isinstance(axis, list) and not axis:
                raise fail(
                    f"empty grid: [pretrain] {key} = [] has no values; give at least one",
                    "pretrain",
                    key,
                    index,
                )
        if "model_args" in grid and not isinstance(grid["model_args"], dict):
            raise fail(
                "[pretrain] model_args must be a table of constructor arguments",
                "pretrain",
                "model_args",
                index,
            )
    return [dict(g) for g in grids]


def _whole(table: dict, key: str, low: int, name: str, fail) -> None:
    value = table.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise fail(f"[{name}] {key} must be a whole number >= {low}, got {value!r}", name, key)


def _one_of(table: dict, key: str, choices, *, name: str, fail, note: str = "") -> None:
    """``[name] key``, where given, is one of ``choices``; ``note`` follows the list, and
    without one the message suggests the closest choice."""
    if key in table and table[key] not in choices:
        value = table[key]
        hint = "" if note else f".{did_you_mean(str(value), choices)}"
        raise fail(
            f"[{name}] {key} must be one of {', '.join(choices)}{note}, got {value!r}{hint}",
            name,
            key,
        )


def _run(table: dict, fail) -> RunSettings:
    _known(table, RUN_KEYS, "run", fail)
    _one_of(table, "executor", EXECUTORS, name="run", fail=fail)
    _whole(table, "workers", 1, "run", fail)
    _whole(table, "retries", 0, "run", fail)
    return RunSettings(**table)


def slurm_settings(table: dict, fail) -> dict:
    """``[slurm]`` (or the same keys from flags) checked, as a dict of the keys given (the
    fields of :class:`SlurmSettings`); ``fail(message, table, key)`` makes the error; ``time``
    becomes minutes."""
    _known(table, SLURM_KEYS, "slurm", fail)
    note = " (local: submitit's local executor on this machine)"
    _one_of(table, "cluster", CLUSTERS, name="slurm", fail=fail, note=note)
    for key in ("gpus", "cpus", "mem_gb", "array_parallelism", "bundle"):
        _whole(table, key, 0 if key == "gpus" else 1, "slurm", fail)
    for key in ("partition", "account", "qos", "constraint"):
        if key in table and not isinstance(table[key], str):
            raise fail(f"[slurm] {key} must be a string, got {table[key]!r}", "slurm", key)
    if "time" in table:
        try:
            table["time"] = minutes(table["time"])
        except ValueError:
            raise fail(
                f'[slurm] time must be minutes or "[D-]HH:MM[:SS]", got {table["time"]!r}',
                "slurm",
                "time",
            ) from None
    if "setup" in table and not (
        isinstance(table["setup"], list) and all(isinstance(s, str) for s in table["setup"])
    ):
        raise fail(
            "[slurm] setup must be a list of shell lines run before each task", "slurm", "setup"
        )
    if "extra" in table and not isinstance(table["extra"], dict):
        raise fail(
            '[slurm] extra must be a table of sbatch options (e.g. { exclude = "node1" })',
            "slurm",
            "extra",
        )
    return dict(table)


def minutes(value) -> int:
    """A Slurm time limit as whole minutes (rounded up): ``90``, ``"90"``, ``"MM:SS"``,
    ``"H:MM:SS"``, ``"D-H"``, ``"D-H:MM"``, ``"D-H:MM:SS"``."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(value)
        return max(1, -(-int(value * 60) // 60))
    text = str(value).strip()
    days, sep, text = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = [int(p) for p in text.split(":")]
    if min(parts) < 0 or int(days) < 0 or len(parts) > 3:
        raise ValueError(value)
    if sep:  # D-H[:MM[:SS]]
        h, m, s = (parts + [0, 0])[:3]
    else:  # M, M:S, H:M:S
        h, m, s = (
            [0, *parts] if len(parts) == 2 else ([0, parts[0], 0] if len(parts) == 1 else parts)
        )
    seconds = ((int(days) * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError(value)
    return -(-seconds // 60)
