"""What each kind of unit does: it calls its stage's own function with the job's configs.

Every function takes a :class:`~layerprobe.jobs.work.Work` item, the job and its state, and
returns the unit's record (``outputs``: the files it made). The stages write their outputs
atomically themselves (cache files, results parts, checkpoints); a unit's record is written
only after it returns. ``layerprobe.pretrain`` is imported only by the units that need it.
"""

from __future__ import annotations

from pathlib import Path

from layerprobe.jobs.configs import extract_config, finetune_config, pretrain_api, probe_config

# The last model a process built, reused by its next extract units of the same model (a
# worker gets each model's units one after another).
_last: dict[str, object] = {}


def _backbone(model):
    if model.id not in _last:
        _last.clear()
        _last[model.id] = model.model_config().load()
    return _last[model.id]


def pretrain_unit(work, job, state) -> dict:
    api = pretrain_api()
    config = api.PretrainConfig(**work.model.point)
    checkpoint = api.pretrain(config, work.model.run_dir, quiet=True, data_root=job.data_root)
    return {"outputs": [str(checkpoint)]}


def extract_unit(work, job, state) -> dict:
    from layerprobe.extract.cache import read_info
    from layerprobe.extract.run import extract

    config = extract_config(job, splits=[work.unit.split])
    [path] = extract(_backbone(work.model), work.unit.task, config)
    return {"outputs": [str(path)], "model_key": read_info(path).model_key}


def probe_unit(work, job, state) -> dict:
    from layerprobe.extract.cache import read_info
    from layerprobe.probe.run import Unit, probe_unit, unit_identity
    from layerprobe.results.parts import part_path, write_part

    infos = {}
    for stage, uid in work.deps:
        record = state.read("done", stage, uid)
        if record is None:
            raise RuntimeError(f"dependency {stage} {uid} has no done record; run the job again")
        for path in record["outputs"]:
            info = read_info(path)
            infos[info.split] = info
    if not {"train", "test"} <= set(infos):
        from layerprobe.errors import DataError

        raise DataError(
            f"task {work.unit.task!r} has splits {', '.join(sorted(infos))}; probes "
            "need train and test"
        )
    config = probe_config(job)
    unit = Unit(infos["train"].model_key, work.unit.task, infos)
    identity = unit_identity(unit, config)
    path = part_path(job.results, identity)
    if not path.exists():
        path = write_part(probe_unit(unit, config), job.results, identity)
    return {"outputs": [str(path)], "model_key": unit.model_key}


def finetune_unit(work, job, state) -> dict:
    out = pretrain_api().finetune(
        work.model.model_config(), work.unit.task, finetune_config(job), job.results, quiet=True
    )
    return {"outputs": [str(Path(out))]}


RUN = {
    "pretrain": pretrain_unit,
    "extract": extract_unit,
    "probe": probe_unit,
    "finetune": finetune_unit,
}
