"""Pre-training throughput: `layerprobe pretrain`'s loop against a bare PyTorch loop.

For tiny ladder models at 32 px on builtin/upstream, on the CPU, in the same run and
interleaved repeat by repeat:

- layerprobe: ``train_epoch`` over ``train_batches`` -- the whole data path of ``layerprobe
  pretrain`` (indices from the distributed sampler, uint8 gather from the decoded arrays,
  random crop + flip, scaling and normalisation), the learning-rate schedule, loss / accuracy
  bookkeeping and the NaN checks;
- bare: the same model, batch and optimizer (AdamW with the same parameter groups) over
  float tensors already normalised in memory: forward, cross-entropy, zero_grad, backward, step.

Goal: layerprobe / bare >= 0.95 in images per second (median over repeats of the paired ratio).

    python benchmarks/pretrain_step.py            # batch 128, 8 steps per timing, 7 repeats
    python benchmarks/pretrain_step.py --quick    # batch 64, 4 steps, 2 repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from layerprobe.pretrain import data
from layerprobe.pretrain.ladder import build, resolve_model
from layerprobe.pretrain.loop import Schedule, train_epoch
from layerprobe.pretrain.optim import make_optimizer
from layerprobe.pretrain.run import MEAN, STD
from layerprobe.tasks import get_task

MODELS = ("resnet-tiny32", "vit-tiny32", "mixer-tiny32")
GOAL = 0.95
CPU = torch.device("cpu")


def bench_model(name: str, images, labels, batch: int, steps: int, repeats: int) -> dict:
    model, _ = build(resolve_model(name, 120))
    optimizer = make_optimizer(model, lr=1e-3, wd=0.05, head_wd=0.05, head_lr_mult=1.0)
    normalize = data.Normalizer(MEAN, STD, CPU)
    n = batch * steps
    subset = np.arange(n, dtype=np.int64)
    # The bare loop's batches: the same images, already floats in memory.
    xs = [normalize(torch.from_numpy(np.array(images[i : i + batch]))) for i in range(0, n, batch)]
    ys = [torch.from_numpy(np.array(labels[i : i + batch])) for i in range(0, n, batch)]
    schedule = Schedule(1e-3, 10**6, 10)
    one_process = dict(seed=0, rank=0, world=1, device=CPU, normalize=normalize)

    def batches(epoch: int):
        """layerprobe's data path: gather, crop + flip, normalise."""
        return data.train_batches(
            images, labels, subset, batch_size=batch, epoch=epoch, **one_process
        )

    def ours(epoch: int) -> float:
        loader = batches(epoch)
        start = time.perf_counter()
        train_epoch(model, loader, optimizer, schedule=schedule, step0=0, device=CPU)
        return n / (time.perf_counter() - start)

    def bare() -> float:
        model.train()
        start = time.perf_counter()
        for x, y in zip(xs, ys, strict=True):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return n / (time.perf_counter() - start)

    def data_only(epoch: int) -> float:
        """Milliseconds per batch of the data path alone (gather, crop + flip, normalise)."""
        start = time.perf_counter()
        for _ in batches(epoch):
            pass
        return 1000 * (time.perf_counter() - start) / steps

    ours(0), bare()  # warm-up
    pairs = []
    for r in range(repeats):  # alternate which side goes first
        if r % 2:
            b, o = bare(), ours(r + 1)
        else:
            o, b = ours(r + 1), bare()
        pairs.append((o, b))
    return {
        "model": name,
        "bare": statistics.median(b for _, b in pairs),
        "ours": statistics.median(o for o, _ in pairs),
        "ratio": statistics.median(o / b for o, b in pairs),
        "data_ms": statistics.median(data_only(r) for r in range(repeats)),
        "step_ms": 1000 * batch / statistics.median(b for _, b in pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, steps, repeats = (64, 4, 2) if args.quick else (128, 8, 7)
    images, labels = data.split_arrays(get_task("builtin/upstream"), "train", 32)
    print(
        f"batch {batch}, {steps} steps per timing, {repeats} repeats, "
        f"{torch.get_num_threads()} torch threads, CPU"
    )
    print(
        f"{'model':<16}{'bare img/s':>12}{'layerprobe img/s':>18}{'ratio':>8}"
        f"{'data ms/batch':>15}{'step ms':>9}  goal >= {GOAL}"
    )
    for name in args.models.split(","):
        row = bench_model(name, images, labels, batch, steps, repeats)
        verdict = "met" if row["ratio"] >= GOAL else "NOT met"
        print(
            f"{row['model']:<16}{row['bare']:>12.0f}{row['ours']:>18.0f}{row['ratio']:>8.3f}"
            f"{row['data_ms']:>15.2f}{row['step_ms']:>9.1f}  {verdict}"
        )


if __name__ == "__main__":
    main()
