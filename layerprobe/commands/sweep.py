"""`layerprobe sweep SWEEP.toml`: a pre-training grid, then extraction, probing (and
fine-tuning) of every checkpoint on every task, into one results store."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from layerprobe.commands.run import add_job_options

    p = subparsers.add_parser(
        "sweep",
        help="pre-train a grid of models, then probe every checkpoint on every task (resumable)",
        description=(
            "`run` for a job file with a [pretrain] grid (models x data fractions x epochs x head "
            "weight decays x head learning-rate multipliers x seeds): each grid point is "
            "pre-trained, then every checkpoint is extracted and probed (and fine-tuned where "
            "[finetune] asks) on every task, ending in one results store ready for the "
            "saturation fit and the report."
        ),
    )
    add_job_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprobe.commands.run import run as run_job

    return run_job(args, sweep=True)
