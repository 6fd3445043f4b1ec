"""What each kind of unit does: it calls its stage's own function with the job's configs.

Every function takes a :class:`~layerprobe.jobs.work.Work` item, the job and its state, and
returns the unit's record (``outputs``: the files it made, with their stamps and tokens, and
the identity of its ``inputs``: see :mod:`layerprobe.jobs.verify`). The stages write their
outputs atomically themselves (cache files, results parts, checkpoints); a unit's record is
written only after it returns. ``layerprobe.pretrain`` is imported only by the units that need
it. A unit run again because its record no longer counts (``work.redo``) first removes the
outputs that cannot be reused: a damaged checkpoint or cache file, a changed results part.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from layerprobe.jobs.configs import extract_config, finetune_config, pretrain_api, probe_configs
from layerprobe.jobs.units import CHECKPOINT, STAGES
from layerprobe.jobs.verify import VERSION, file_entries, model_files, output_entries, stamp
from layerprobe.registry import Registry

# What a unit of each stage runs: ``RUN.get(unit.stage)(work, job, state) -> record``; one
# entry per stage of a plan (``units.STAGES``), in its order, registered at the end of this file.
RUN: Registry[Callable[..., dict]] = Registry("job stage")

# The last model a process built, reused by its next extract units of the same model (a
# worker gets each model's units one after another) while its weight files are unchanged.
_last: dict[tuple, object] = {}


def _backbone(model):
    key = (model.id, *(stamp(p) for p in model_files(model)))
    if key not in _last:
        _last.clear()
        _last[key] = model.model_config().load()
    return _last[key]


def _record(outputs: list, inputs: dict | None = None, tokens: dict | None = None, **extra):
    return {
        "verify": VERSION,
        "outputs": [str(p) for p in outputs],
        "stamps": output_entries(outputs, tokens),
        "inputs": inputs or {},
        **extra,
    }


def _drop_damaged_checkpoint(path: Path) -> None:
    """A checkpoint that cannot be read (truncated, overwritten) is removed so that the run
    makes it again instead of returning it as complete."""
    from layerprobe.backbones.checkpoint import read_checkpoint

    if not path.is_file():
        return
    try:
        read_checkpoint(path)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is re-made
        print(f"removing damaged checkpoint {path} ({type(err).__name__}); making it again")
        path.unlink(missing_ok=True)


def pretrain_unit(work, job, state) -> dict:
    api = pretrain_api()
    config = api.PretrainConfig(**work.model.point)
    _drop_damaged_checkpoint(Path(work.model.run_dir) / CHECKPOINT)
    # not quiet: its log gets a line per epoch (and steps, img/s, ETA), which `run` relays
    checkpoint = api.pretrain(config, work.model.run_dir, quiet=False, data_root=job.data_root)
    return _record([checkpoint])


def extract_unit(work, job, state) -> dict:
    from layerprobe.errors import CacheError
    from layerprobe.extract.cache import read_info
    from layerprobe.extract.run import extract

    if work.redo:  # a damaged cache file of the last run is extracted again, not refused
        for old in (state.read("done", "extract", work.unit.id) or {}).get("outputs", []):
            try:
                if Path(old).exists():
                    read_info(old)
            except CacheError:
                print(f"removing damaged cache file {old}; extracting it again")
                Path(old).unlink(missing_ok=True)
    config = extract_config(job, splits=[work.unit.split])
    [path] = extract(_backbone(work.model), work.unit.task, config)
    info = read_info(path)
    made = str(info.identity()[0])
    inputs = {
        "data": info.attrs.get("task_fingerprint", ""),
        "files": file_entries(model_files(work.model)),
    }
    return _record([path], inputs, {str(path): made}, model_key=info.model_key, extraction_id=made)


def probe_unit(work, job, state) -> dict:
    from layerprobe.extract.cache import read_info
    from layerprobe.probe.run import Unit, probe_unit, unit_identity
    from layerprobe.results.parts import part_path, write_part

    infos, caches = {}, {}
    for stage, uid in work.deps:
        record = state.read("done", stage, uid)
        if record is None:
            raise RuntimeError(f"dependency {stage} {uid} has no done record; run the job again")
        for path in record["outputs"]:
            info = read_info(path)
            infos[info.split] = info
            caches[uid] = str(info.identity()[0])
    if not {"train", "test"} <= set(infos):
        from layerprobe.errors import DataError

        raise DataError(
            f"task {work.unit.task!r} has splits {', '.join(sorted(infos))}; probes "
            "need train and test"
        )
    unit = Unit(infos["train"].model_key, work.unit.task, infos)
    paths = []
    for config in probe_configs(job):  # one part per probe family
        identity = unit_identity(unit, config)
        path = part_path(job.results, identity)
        if work.redo or not path.exists():  # a part of the same identity may have been damaged
            path = write_part(probe_unit(unit, config), job.results, identity)
        paths.append(path)
    return _record(paths, {"caches": caches}, model_key=unit.model_key)


def finetune_unit(work, job, state) -> dict:
    out = pretrain_api().finetune(
        work.model.model_config(),
        work.unit.task,
        finetune_config(job),
        results_dir=job.results,
        quiet=True,
    )
    return _record([Path(out)], {"files": file_entries(model_files(work.model))})


# The stages are the plan's (units.STAGES): stage ``s`` runs the function ``s_unit`` above.
for _stage in STAGES:
    RUN.register(_stage, globals()[f"{_stage}_unit"])
