"""Extraction overhead: all probe points captured, pooled and written to HDF5, vs a plain forward.

For ViT-S/16, ResNet-50 and Mixer-S/16 at 224 px on the CPU (random weights), time on the same
batch, interleaved and in the same run:

- plain: ``model(x)`` under ``torch.inference_mode()``;
- extract: what ``layerprobe extract`` does per batch -- one ``Backbone.capture`` of every probe
  point (pooled), the cast to float16, and the HDF5 write and commit of the rows.

Goal: extract / plain <= 1.10 (median over repeats of the paired ratio). Image decoding is left out of both sides (same batch).

    python benchmarks/extract_overhead.py            # batches of 32, 5 timed repeats
    python benchmarks/extract_overhead.py --quick    # batches of 8, 2 timed repeats
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from layerprobe.backbones import load
from layerprobe.extract.features import BatchFeatures
from layerprobe.extract.run import cache_header
from layerprobe.extract.writer import PartialCache

MODELS = {
    "ViT-S/16": "timm:vit_small_patch16_224",
    "ResNet-50": "timm:resnet50",
    "Mixer-S/16": "timm:mixer_s16_224",
}
GOAL = 1.10


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_model(spec: str, batch: int, repeats: int, folder: Path) -> dict:
    """Seconds per batch of the plain forward and of the extraction step, paired by repeat."""
    torch.manual_seed(0)
    bb = load(spec, image_size=224)
    model = bb.model.eval()
    names = [p.name for p in bb.probe_points]
    widths = bb.pooled_widths(names, "auto")
    rows = batch * (repeats + 1)
    header = cache_header(
        bb,
        bb.model_key("auto"),
        task="bench",
        split="train",
        points=bb.probe_points,
        pool="auto",
        dtype="float16",
        amp="none",
        num_items=rows,
    )
    part = PartialCache.open(folder / f"{spec.replace(':', '_')}.h5.partial", header, widths)
    compute = BatchFeatures(bb, names, "auto", torch.device("cpu"), "float16", "none")
    x = torch.randn(batch, 3, 224, 224)

    def plain():
        with torch.inference_mode():
            model(x)

    def extract_step():
        index = np.arange(part.rows_done, part.rows_done + batch)
        part.write(compute(x, index), index % 10, index, items=batch)

    plain()  # warm-up: allocator, oneDNN kernels, first HDF5 writes
    extract_step()
    plain_s, extract_s = [], []
    for r in range(repeats):
        # Alternate which goes first so that drift in machine load hits both sides alike.
        if r % 2 == 0:
            plain_s.append(_timed(plain))
            extract_s.append(_timed(extract_step))
        else:
            extract_s.append(_timed(extract_step))
            plain_s.append(_timed(plain))
    part.close()
    return {"plain": plain_s, "extract": extract_s, "layers": len(names)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batches of 8, 2 timed repeats")
    parser.add_argument(
        "--batch-size", type=int, help="images per batch (default 32; 8 with --quick)"
    )
    parser.add_argument(
        "--repeats", type=int, help="timed repeats per side (default 5; 2 with --quick)"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS)
    )
    args = parser.parse_args(argv)
    batch = args.batch_size or (8 if args.quick else 32)
    repeats = args.repeats or (2 if args.quick else 5)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, 224 px, "
        f"{repeats} interleaved repeats; s/batch are medians, ratio is the median of paired ratios"
    )
    header = (
        f"{'model':<11} {'layers':>6} {'plain s/batch':>14} {'extract s/batch':>16} "
        f"{'ratio':>6} {'pair ratios (min-max)':>22}  goal<={GOAL:.2f}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.models.split(","):
            got = bench_model(MODELS[label.strip()], batch, repeats, Path(tmp))
            # Each repeat's two timings are adjacent in time, so their ratio cancels most of the
            # drift in machine load; the headline is the median of those ratios.
            pairs = [e / p for e, p in zip(got["extract"], got["plain"], strict=True)]
            ratio = statistics.median(pairs)
            print(
                f"{label:<11} {got['layers']:>6} {statistics.median(got['plain']):>14.3f} "
                f"{statistics.median(got['extract']):>16.3f} {ratio:>6.3f} "
                f"{f'{min(pairs):.3f}-{max(pairs):.3f}':>22}  {'yes' if ratio <= GOAL else 'NO'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
