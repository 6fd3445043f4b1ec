"""Each stage's typed config, built from a job file's tables.

``ModelConfig``, ``ExtractConfig``, ``ProbeConfig`` (and ``PretrainConfig`` /
``FinetuneConfig`` of :mod:`layerprobe.pretrain`) own every default and every check; this
module only feeds them the tables and, when one refuses a value, finds the key that caused it
so the error names the file, the key and the line.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from dataclasses import fields
from pathlib import Path

from layerprobe.errors import (
    ConfigError,
    EnvironmentProblem,
    UnknownNameError,
    UserError,
    did_you_mean,
    first_line,
)
from layerprobe.jobs.jobfile import Job
from layerprobe.jobs.lines import table_name

# [extract] keys that the job decides, and why.
EXTRACT_OWNED = {
    "cache_dir": 'set cache = "DIR" in [job]',
    "data_root": 'set data_root = "DIR" in [job]',
    "force": "delete the cache files (or the job's state/done folder) to extract again",
    "quiet": "pass --quiet to `layerprobe run`",
}
MODEL_EXTRA = ("label",)
BAD_VALUE = (ConfigError, UnknownNameError, TypeError, ValueError, OverflowError)


def model_config(raw: dict):
    """The ``ModelConfig`` of a ``[[models]]`` table (``label`` is the job's, not the model's)."""
    from layerprobe.backbones.config import ModelConfig

    return ModelConfig(**{k: v for k, v in raw.items() if k not in MODEL_EXTRA})


def extract_config(job: Job, **fixed):
    """The job's ``ExtractConfig`` (cache and data root from ``[job]``; quiet: units log)."""
    from layerprobe.extract.config import ExtractConfig

    given = {"cache_dir": job.cache, "data_root": job.data_root, "quiet": True}
    return ExtractConfig.build(None, **(job.extract | given | fixed))  # a unit's split wins


def probe_configs(job: Job) -> list:
    """The job's ``ProbeConfig`` objects, one per probe family of ``[probe] probe`` (``"ridge"``,
    ``"ridge,logistic"`` or a list, as ``layerprobe probe --probe`` takes them), with their shot
    and seed counts checked as a probe would."""
    return _probe_configs(**job.probe)


def _probe_configs(**table) -> list:
    from layerprobe.probe.config import ProbeConfig
    from layerprobe.probe.plan import check_plan_options

    configs = ProbeConfig.families(**table)
    for config in configs:  # the table's own values: a config rounds 1.5 seeds to 1
        shots, seeds = table.get("shots", config.shots), table.get("seeds", config.seeds)
        check_plan_options(shots, seeds, grid=len(config.grid))
    return configs


def pretrain_config(api, **point):
    """A grid point's ``PretrainConfig``, its upstream task and model name resolved as
    pre-training will (an unknown task or model name fails here, not after other units ran)."""
    from layerprobe.tasks.registry import get_task

    config = api.PretrainConfig(**point)
    task = get_task(config.task)
    if hasattr(api, "__path__"):  # the package itself (not a stand-in of its API)
        from layerprobe.pretrain.ladder import resolve_model

        resolve_model(
            config.model,
            task.num_classes,
            image_size=config.image_size,
            model_args=config.model_args,
        )
    return config


def pretrain_api():
    """``layerprobe.pretrain``, or a one-line :class:`EnvironmentProblem` when it is missing."""
    if not has_pretrain_api():
        raise EnvironmentProblem(
            "this job asks for pre-training or fine-tuning ([pretrain] / [finetune]) but this "
            "layerprobe has no layerprobe.pretrain module; update layerprobe, or remove those tables"
        )
    return importlib.import_module("layerprobe.pretrain")


def has_pretrain_api() -> bool:
    """Whether this ``layerprobe`` package has a ``pretrain`` module (not importing it; only
    inside this package's folder, so another checkout on the path does not count)."""
    if "layerprobe.pretrain" in sys.modules:
        return sys.modules["layerprobe.pretrain"] is not None
    import layerprobe

    return (
        importlib.machinery.PathFinder.find_spec("layerprobe.pretrain", layerprobe.__path__)
        is not None
    )


def finetune_config(job: Job):
    """The job's ``FinetuneConfig`` (data root from ``[job]``)."""
    return pretrain_api().FinetuneConfig(**job.finetune, data_root=job.data_root)


def check_job(job: Job, points: list[tuple[int, dict]] | None = None) -> None:
    """Build every stage's config once, so a bad value fails now, naming file, key and line.

    Parameters
    ----------
    job : from :func:`~layerprobe.jobs.jobfile.load_job`.
    points : the pre-training grid points as (grid index, PretrainConfig fields); checked when
        ``layerprobe.pretrain`` is installed (else :func:`pretrain_api` refuses at run time).
    """
    from layerprobe.backbones.config import ModelConfig
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.probe.config import ProbeConfig

    model_keys = [f.name for f in fields(ModelConfig)] + list(MODEL_EXTRA)
    for i, raw in enumerate(job.models):
        _keys(job, raw, model_keys, "models", i)
        _build(job, lambda **kw: model_config(kw), raw, "models", i, required=("spec",))
    extract_keys = [f.name for f in fields(ExtractConfig)]
    for key in job.extract:
        if key in EXTRACT_OWNED:
            raise job.error(
                f"[extract] {key} is set by the job: {EXTRACT_OWNED[key]}", "extract", key
            )
    _keys(job, job.extract, [k for k in extract_keys if k not in EXTRACT_OWNED], "extract")
    _build(job, lambda **kw: extract_config(_with(job, extract=kw)), job.extract, "extract")
    _keys(job, job.probe, [f.name for f in fields(ProbeConfig)], "probe")
    _build(job, _probe_configs, job.probe, "probe")
    if (job.pretrain or job.finetune is not None) and has_pretrain_api():
        api = pretrain_api()
        if job.finetune is not None:
            names = [f.name for f in fields(api.FinetuneConfig) if f.name != "data_root"]
            _keys(job, job.finetune, names + ["tasks"], "finetune")
            _build(job, lambda **kw: api.FinetuneConfig(**kw), job.finetune, "finetune")
        names = [f.name for f in fields(api.PretrainConfig)]
        for i, grid in enumerate(job.pretrain):
            _keys(job, grid, names, "pretrain", i if len(job.pretrain) > 1 else None)
        seen = set()
        for i, point in points or []:
            key = repr(sorted(point.items()))
            if key not in seen:
                seen.add(key)
                index = i if len(job.pretrain) > 1 else None  # [[pretrain]] #i, or [pretrain]
                make = lambda **kw: pretrain_config(api, **kw)  # noqa: E731
                _build(job, make, point, "pretrain", index, required=("model",))


def check_models(job: Job, which: set[int] | None = None) -> None:
    """Unknown model names and missing checkpoints of ``[[models]]`` tables (all, or the
    indices in ``which``) fail now; no model is built."""
    from layerprobe.backbones.spec import parse_spec

    for i, raw in enumerate(job.models):
        if which is not None and i not in which:
            continue
        try:
            spec = parse_spec(raw["spec"])
            _check_exists(spec)
            if raw.get("checkpoint") and not Path(raw["checkpoint"]).is_file():
                raise ConfigError(f"checkpoint {raw['checkpoint']} not found")
        except UserError as err:
            key = "checkpoint" if "checkpoint" in str(err) and raw.get("checkpoint") else "spec"
            raise job.error(
                f"{table_name('models', key, i)}: {first_line(err)}", "models", key, index=i
            ) from None


def _check_exists(spec) -> None:
    from layerprobe.errors import UnknownNameError

    if spec.namespace == "timm":
        import timm

        if not timm.is_model(spec.name):
            raise UnknownNameError(
                f"unknown timm model {spec.name!r}.{did_you_mean(spec.name, timm.list_models())}"
            )
    elif spec.namespace == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if spec.name not in names:
            raise UnknownNameError(
                f"unknown torchvision model {spec.name!r}.{did_you_mean(spec.name, names)}"
            )
    elif spec.namespace == "python":
        module = spec.name.rpartition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise UnknownNameError(f"cannot import module {module!r} of python:{spec.name}")
    elif not Path(spec.name).is_file():
        raise ConfigError(f"checkpoint {spec.name} not found")


def _with(job: Job, **tables) -> Job:
    from dataclasses import replace

    return replace(job, **tables)


def _keys(job: Job, table: dict, names: list[str], name: str, index: int | None = None) -> None:
    for key in table:
        if key not in names:
            raise job.error(
                f"unknown key {key!r} in {table_name(name, index=index)}.{did_you_mean(key, names)}"
                f" Keys: {', '.join(names)}",
                name,
                key,
                index=index or 0,
            )


def _build(job: Job, make, raw: dict, table: str, index: int | None = None, required=()):
    """``make(**raw)``; when it refuses, the error names the first key that fails alone."""
    try:
        return make(**raw)
    except BAD_VALUE as err:
        message = first_line(err)
        base = {k: raw[k] for k in required if k in raw}
        culprit = None
        try:
            make(**base)
        except BAD_VALUE:
            culprit = next(iter(base), None)  # a required value fails alone
        for key, value in raw.items() if culprit is None else ():
            try:
                make(**(base | {key: value}))
            except BAD_VALUE:
                culprit = key
                break
        where = table_name(table, culprit, index)
        raise job.error(f"{where}: {message}", table, culprit, index=index or 0) from None
