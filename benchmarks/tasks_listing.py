"""Listing cost: `layerprobe tasks` finds and sizes real tasks without decoding images.

On synthetic data roots in the published layouts (EuroSAT: JPEG class folders; CLEVR: PNGs
plus a scenes file; smallNORB: binary matrices), time in the same run:

- listing: ``summarize_tasks`` for the full-split and ``vtab1k/`` tasks, on a fresh data root
  each repeat, so no split is cached;
- baseline: what sizing through a dataset object costs when it decodes its items: one pass
  over every split, decoding each image (``split[i]``).

Goal: listing / baseline <= 0.05 (medians): sizing must stay a small fraction of one pass.

    python benchmarks/tasks_listing.py            # 3,000 EuroSAT + 1,500 CLEVR + 2,000 NORB
    python benchmarks/tasks_listing.py --quick    # a fifth of that
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from layerprobe.tasks import get_task
from layerprobe.tasks.summary import summarize_tasks

GOAL = 0.05
PATTERNS = ("eurosat", "clevr_count", "smallnorb_azimuth", "vtab1k/eurosat", "vtab1k/clevr_count")


def make_root(root: Path, n_euro: int, n_clevr: int, n_norb: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n_euro):  # 64 px RGB JPEGs in 10 class folders, like EuroSAT
        cls = ("AnnualCrop", "Forest", "Highway", "River", "SeaLake")[i % 5]
        path = root / "eurosat" / "2750" / cls / f"{cls}_{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    base = root / "clevr" / "CLEVR_v1.0"
    for split, n in (("train", n_clevr), ("val", n_clevr // 5)):
        scenes = []
        for i in range(n):
            name = f"CLEVR_{split}_{i:06d}.png"
            path = base / "images" / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(path)
            k = 3 + i % 8
            scenes.append({"image_filename": name, "objects": [{"pixel_coords": [1, 2, 9.0]}] * k})
        (base / "scenes").mkdir(parents=True, exist_ok=True)
        (base / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"scenes": scenes}))
    norb = root / "smallnorb"
    norb.mkdir()
    for stem, n in (
        ("5x46789x9x18x6x2x96x96-training", n_norb),
        ("5x01235x9x18x6x2x96x96-testing", n_norb),
    ):
        dat = rng.integers(0, 255, (n, 2, 96, 96), dtype=np.uint8)
        info = np.zeros((n, 4), np.int32)
        info[:, 2] = 2 * (np.arange(n) % 18)
        for kind, arr, magic in (("dat", dat, 0x1E3D4C55), ("info", info, 0x1E3D4C54)):
            dims = list(arr.shape) + [1] * max(0, 3 - arr.ndim)
            header = np.array([magic, arr.ndim, *dims], "<i4").tobytes()
            (norb / f"smallnorb-{stem}-{kind}.mat").write_bytes(header + arr.tobytes())


def listing(root: Path) -> float:
    start = time.perf_counter()
    rows = summarize_tasks(root, PATTERNS)
    assert all(r.found for r in rows), [r.missing for r in rows if not r.found]
    return time.perf_counter() - start


def baseline(root: Path) -> float:
    start = time.perf_counter()
    for name in PATTERNS:
        task = get_task(name)
        for split in task.splits:
            data = task.load(split, root)
            for i in range(len(data)):
                data[i]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scale = 5 if args.quick else 1
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        make_root(template, 3000 // scale, 1500 // scale, 2000 // scale)
        fast, slow = [], []
        for r in range(args.repeats):
            root = Path(tmp) / f"root{r}"  # a new root: nothing cached from the last repeat
            shutil.copytree(template, root)
            fast.append(listing(root))
            slow.append(baseline(root))
        t_fast, t_slow = statistics.median(fast), statistics.median(slow)
    ratio = t_fast / t_slow
    print(f"{'tasks':<40} {'listing s':>10} {'baseline s':>11} {'ratio':>7} {'goal':>6}")
    print(
        f"{', '.join(PATTERNS):<40.40} {t_fast:>10.3f} {t_slow:>11.3f} {ratio:>7.3f} {GOAL:>6.2f}"
    )
    print("PASS" if ratio <= GOAL else "FAIL: listing decodes or builds more than it should")


if __name__ == "__main__":
    main()
