"""How long the suite takes to generate: ``python -m layerprobe.tasks.builtin [--size 32] [--seed 0]``.

Times every split of every task from scratch (caches bypassed), in wall-clock and in
CPU time of this process (which other processes on the machine do not inflate).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from layerprobe.errors import ConfigError
from layerprobe.tasks.builtin.generate import generate_split
from layerprobe.tasks.builtin.spec import SPLITS, BuiltinSpec


@dataclass
class Timing:
    task: str
    images: int
    wall_s: float
    cpu_s: float
    balanced: bool  # every split holds exactly the documented count of each class


def time_generation(specs: list[BuiltinSpec], image_size: int = 32, seed: int = 0) -> list[Timing]:
    """Generate every split of every spec once; one :class:`Timing` per task."""
    rows = []
    for spec in specs:
        wall, cpu, n, balanced = time.perf_counter(), time.process_time(), 0, True
        for split, per_class in zip(SPLITS, spec.per_class, strict=True):
            labels = generate_split(spec, split, image_size, seed=seed)[1]
            n += len(labels)
            balanced &= bool((np.bincount(labels, minlength=len(spec.classes)) == per_class).all())
        rows.append(
            Timing(spec.name, n, time.perf_counter() - wall, time.process_time() - cpu, balanced)
        )
    return rows


def _argument(check):
    # argparse reports ArgumentTypeError as a one-line usage error (exit 2), not a traceback.
    def parse(text: str):
        try:
            return check(text, "the value")
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    parse.__name__ = check.__name__
    return parse


def main(argv: list[str] | None = None) -> int:
    from layerprobe.tasks.builtin import SPECS
    from layerprobe.tasks.builtin.config import check_image_size, check_seed

    parser = argparse.ArgumentParser(
        prog="python -m layerprobe.tasks.builtin", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--size",
        type=_argument(check_image_size),
        default=32,
        help="image side in pixels (default 32)",
    )
    parser.add_argument(
        "--seed", type=_argument(check_seed), default=0, help="generation seed (default 0)"
    )
    args = parser.parse_args(argv)
    warm = time.perf_counter()
    rows = time_generation(list(SPECS.values()), args.size, args.seed)
    print(f"{'task':<18} {'images':>7} {'wall s':>7} {'cpu s':>7} {'img/s':>8} balanced")
    for r in rows:
        print(
            f"{r.task:<18} {r.images:>7} {r.wall_s:>7.2f} {r.cpu_s:>7.2f} {r.images / r.wall_s:>8.0f} {r.balanced}"
        )
    total = Timing(
        "total",
        sum(r.images for r in rows),
        sum(r.wall_s for r in rows),
        sum(r.cpu_s for r in rows),
        all(r.balanced for r in rows),
    )
    print(
        f"{total.task:<18} {total.images:>7} {total.wall_s:>7.2f} {total.cpu_s:>7.2f} "
        f"{total.images / total.wall_s:>8.0f} {total.balanced}   (with start-up: {time.perf_counter() - warm:.1f} s)"
    )
    return 0 if total.balanced else 1
