"""``layerprobe status`` at the paper's scale, now that a done unit is checked against its files.

Builds synthetically the state of a finished paper-scale job (the job of
``benchmarks/jobs_scale.py``: 4,800 pre-training configs x 25 tasks x 3 splits = 4,800
pretrain + 360,000 extract + 120,000 probe units), every unit done, each with the output files
a run leaves (empty stand-ins: a checkpoint per config, a cache file per extract unit, a part
per probe unit) and a done record as the workers write it (output stamps and tokens, input
identities). Then times from the shell, each in a fresh process:

- ``plan``: read the job file and expand it (the floor: what status cost before it checked
  any file), the baseline of the ratios;
- ``status`` with a cold index (``state/index.pkl`` removed: every record is parsed);
- ``status`` and ``run --dry-run`` with the index a run leaves (what a user meets).

Goal: ``status`` under 10 s wall. Prints the machine load (``uptime``) beside the table.

    python benchmarks/jobs_status.py              # the paper's 4,800 configs
    python benchmarks/jobs_status.py --configs 480  # a tenth (grid with 1 seed and 1/2 head wds)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs_scale import PAPER_JOB, measure, plan_command  # noqa: E402

GOAL_SECONDS = 10.0


def _touch(path: str, made: set, body: bytes = b"") -> tuple[int, int, int]:
    folder = os.path.dirname(path)
    if folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    if body:
        os.write(fd, body)
    st = os.fstat(fd)
    os.close(fd)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def build_state(plan) -> int:
    """Outputs and done records of every unit, as a finished run leaves them; returns the
    number of files written."""
    from layerprobe.jobs.state import State
    from layerprobe.jobs.verify import VERSION, data_fingerprint, file_sha256

    job, state = plan.job, State(plan.job.dir)
    done = str(state.root / "done")
    made: set = set()
    files = 0
    fingerprints: dict = {}
    extraction: dict[int, str] = {}
    weights: dict[str, list] = {}
    for i, unit in enumerate(plan.units):
        model = plan.models[unit.model]
        record: dict = {"verify": VERSION, "inputs": {}}
        if unit.stage == "pretrain":
            out = model.run_dir / "checkpoint.pt"
            token = None
        elif unit.stage == "extract":
            out = job.cache / unit.model / unit.task.replace(":", "_") / f"{unit.split}.h5"
            token = record["extraction_id"] = f"x{i}"
            extraction[i] = token
            key = (unit.task, unit.split)
            if key not in fingerprints:
                fingerprints[key] = data_fingerprint(unit.task, unit.split)
            record["inputs"] = {"data": fingerprints[key], "files": [weights[unit.model]]}
        else:
            out = job.results / unit.model / f"{unit.tail}.parquet"
            token = "sha256:0"
            record["inputs"] = {"caches": {plan.units[d].id: extraction[d] for d in unit.deps}}
        out = str(out)
        stamp = _touch(out, made)
        if unit.stage == "pretrain":
            token = file_sha256(out)
            weights[unit.model] = [out, *stamp, token]
        record |= {"outputs": [out], "stamps": [[*stamp, token]], "seconds": 1.0}
        record |= {"host": "bench", "finished_at": "2026-01-01T00:00:00+0000", "attempts": 1}
        _touch(f"{done}/{unit.stage}/{unit.id}", made, json.dumps(record).encode())
        files += 2
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        type=int,
        choices=(4800, 480),
        default=4800,
        help="pre-training configs (4800: the paper's grid)",
    )
    args = parser.parse_args()
    text = PAPER_JOB
    if args.configs == 480:
        text = text.replace("seed = [0, 1, 2, 3, 4]", "seed = 0").replace(
            "head_wd = [0.0, 0.01, 0.1, 1.0]", "head_wd = [0.0, 0.1]"
        )
    with tempfile.TemporaryDirectory(prefix="jobs-status-") as tmp:
        root = Path(tmp)
        path = root / "paper.toml"
        path.write_text(text.replace("ROOT", str(root)))
        from layerprobe.jobs import load_job, make_plan
        from layerprobe.jobs.state import State
        from layerprobe.jobs.verify import INDEX, check_units

        plan = make_plan(load_job(path))
        print(f"job: {plan.counts()} ({len(plan.units):,} units)", flush=True)
        start = time.perf_counter()
        files = build_state(plan)
        print(f"state: {files:,} files in {time.perf_counter() - start:.0f} s", flush=True)
        index = State(plan.job.dir).root / INDEX
        py = [sys.executable]
        plan_cmd = plan_command(path)
        status_cmd = py + ["-m", "layerprobe", "status", str(path)]
        rows = [("plan (baseline)", *measure(plan_cmd)[:3])]
        index.unlink(missing_ok=True)
        rows.append(("status, cold index", *measure(status_cmd)[:3]))
        check = check_units(plan, State(plan.job.dir))  # what the end of a run leaves
        assert all(check.done), check.lines(plan)[:3]
        del plan, check
        seconds, mib, cpu, out = measure(status_cmd)
        rows.append(("status", seconds, mib, cpu))
        rows.append(
            (
                "run --dry-run",
                *measure(py + ["-m", "layerprobe", "run", str(path), "--dry-run"])[:3],
            )
        )
        print(out)
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        base = rows[0][1]
        print(f"\n{'paper scale':<22}{'wall s':>9}{'CPU s':>9}{'peak MiB':>10}{'/ plan':>8}")
        for name, seconds, mib, cpu in rows:
            print(f"{name:<22}{seconds:>9.2f}{cpu:>9.2f}{mib:>10.0f}{seconds / base:>8.2f}")
        ok = rows[2][1] < GOAL_SECONDS
        print(f"goal: status < {GOAL_SECONDS:g} s wall: {'met' if ok else 'NOT met'}")
        print(f"load: {load}")


if __name__ == "__main__":
    main()
