"""jobs: batch job files (TOML) expanded into units, run locally or on Slurm, resumable.

>>> from layerprobe.jobs import load_job, run_job, job_status
>>> report = run_job("examples/builtin-probe.toml", workers=2)
>>> print(format_status(job_status("examples/builtin-probe.toml")))

Modules: :mod:`~.jobfile` (read and check the file), :mod:`~.configs` (stage configs),
:mod:`~.units` (the plan), :mod:`~.state` (records and lock), :mod:`~.verify` (which units
are done: their outputs exist and match their inputs), :mod:`~.graph`
(dependencies), :mod:`~.work` / :mod:`~.stages` (one unit in a worker), :mod:`~.local`,
:mod:`~.slurm` (executors; :mod:`~.worker`: a local worker process), :mod:`~.runner`
(``run``), :mod:`~.status` (status, dry run).
"""

from layerprobe.jobs.jobfile import Job, load_job
from layerprobe.jobs.runner import RunReport, run_job
from layerprobe.jobs.status import JobStatus, dry_run, format_plan, format_status, job_status
from layerprobe.jobs.units import Plan, Unit, make_plan

__all__ = [
    "Job",
    "JobStatus",
    "Plan",
    "RunReport",
    "Unit",
    "dry_run",
    "format_plan",
    "format_status",
    "job_status",
    "load_job",
    "make_plan",
    "run_job",
]
