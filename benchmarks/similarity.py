"""Layer similarity (debiased linear CKA) against a plain numpy implementation, same cache.

A real feature cache (``tests/cachefiles.py`` writes it by the cache contract, float16) holds
C checkpoints × L layers × N images of synthetic features: a shared latent signal seen through
a different random projection per checkpoint and layer, with noise that grows with depth, so
the maps are neither all 1 nor all 0. Both sides compute the same thing: every pair of layers
within each checkpoint and the same layer across every pair of checkpoints, on the same rows.

- (a) ``layerprobe.analysis.similarity.layer_similarity`` (torch, CPU): reads the cache, builds
  each Gram matrix once in 128 × 128 tiles on and above the diagonal, the tile of every layer
  from one batched product, float32 tiles for the float16 cache (its default), and gets all
  pairs of a tile from one matrix product, accumulated in float64; (a64) the same in float64
  (``precision="float64"``, the arithmetic for float32 caches), timed once for reference;
- (b) plain numpy, the estimator as written (docs/similarity.md): per layer K = XXᵀ (float64) with its
  diagonal zeroed, then per pair tr(K̃L̃) = Σ K̃∘L̃, 1ᵀK̃1 · 1ᵀL̃1 and 1ᵀK̃L̃1. It keeps one
  checkpoint's Gram matrices for the pairs within it, then one layer's across checkpoints for
  the pairs across them (all C·L at once would be C·L·N²·8 bytes: 5.4 GB at the default size),
  so it builds each Gram matrix twice; its time is split into Gram building and pairs.

Checked: every CKA value of (a) equals (b)'s to 1e-6 (the largest difference is printed).
Usage: ``python benchmarks/similarity.py [--checkpoints 12] [--layers 14] [--rows 2000]
[--width 128] [--threads 1]``.

Measured on the shared 2-core machine (load 6.7–7.9), one thread each, 2026-12-07: (a) 3.56
CPU s (9.79 wall), (b) 50.44 CPU s (123.70 wall): 14.2× in CPU seconds, 12.6× wall; goal 10×
met. Largest difference 4.05e-8; (a64) 6.31 CPU s, 8.0×, difference 2.7e-13. More in
docs/speed.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cachefiles import write_cache_file  # noqa: E402

from layerprobe.analysis.similarity import layer_similarity  # noqa: E402
from layerprobe.extract.cache import cache_path, find_caches, read_arrays  # noqa: E402


def write_caches(root: Path, checkpoints: int, layers: int, rows: int, width: int) -> None:
    """C complete caches of one task's test split with L layers of (rows, width) features."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(rows, 32))
    labels = np.arange(rows) % 10
    for c in range(checkpoints):
        feats = {}
        for layer in range(layers):
            mix = rng.normal(size=(32, width)) / np.sqrt(32)
            noise = 0.3 + 1.5 * layer / max(layers - 1, 1) * (1 + c / checkpoints)
            x = latent @ mix + noise * rng.normal(size=(rows, width)) + 2.0
            feats[f"blocks.{layer}"] = x
        key = f"ckpt{c:02d}-0123456789ab"
        write_cache_file(
            cache_path(root, key, "synthetic", split="test"),
            feats,
            labels,
            model_key=key,
            task="synthetic",
            split="test",
        )


def numpy_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Debiased HSIC of two Gram matrices with zeroed diagonals (the formula in docs/similarity.md)."""
    n = len(k)
    return (
        np.sum(k * l)
        + k.sum() * l.sum() / ((n - 1) * (n - 2))
        - 2.0 * (k.sum(0) @ l.sum(1)) / (n - 2)
    ) / (n * (n - 3))


def numpy_reference(root: Path) -> tuple[dict, float, float]:
    """{(model_key, model_key_b, layer_a, layer_b): cka}, seconds building Grams, seconds on pairs."""
    infos = sorted(find_caches(root), key=lambda i: i.model_key)
    feats = {i.model_key: read_arrays(i.path)[2] for i in infos}
    gram_s = pair_s = 0.0
    out = {}

    def gram(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        k = x @ x.T
        np.fill_diagonal(k, 0.0)
        return k

    def pairs(grams: dict, names: list) -> dict:
        self = {a: numpy_hsic(grams[a], grams[a]) for a in names}
        got = {}
        for i, a in enumerate(names):
            for b in names[i:]:
                got[a, b] = numpy_hsic(grams[a], grams[b]) / np.sqrt(self[a] * self[b])
        return got

    for info in infos:  # within each checkpoint
        t = time.perf_counter()
        grams = {layer: gram(feats[info.model_key][layer]) for layer in info.layers}
        gram_s += time.perf_counter() - t
        t = time.perf_counter()
        for (a, b), v in pairs(grams, info.layers).items():
            out[info.model_key, info.model_key, a, b] = v
        pair_s += time.perf_counter() - t
    for layer in infos[0].layers:  # the same layer across checkpoints
        t = time.perf_counter()
        grams = {i.model_key: gram(feats[i.model_key][layer]) for i in infos}
        gram_s += time.perf_counter() - t
        t = time.perf_counter()
        for (a, b), v in pairs(grams, [i.model_key for i in infos]).items():
            if a != b:
                out[a, b, layer, layer] = v
        pair_s += time.perf_counter() - t
    return out, gram_s, pair_s


def _timed(fn, *args, **kwargs) -> tuple:
    """(fn's result, CPU seconds of this process, wall seconds)."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=12)
    parser.add_argument("--layers", type=int, default=14)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="threads of each side (torch, BLAS)")
    args = parser.parse_args()
    import torch

    from layerprobe.probe.solver import blas_threads

    torch.set_num_threads(args.threads)
    with blas_threads(args.threads), tempfile.TemporaryDirectory(prefix="cka-bench-") as tmp:
        root = Path(tmp) / "cache"
        write_caches(root, args.checkpoints, args.layers, args.rows, args.width)
        # (a), (b), (a) again: the machine's load drifts, so (a) counts as the slower of its two
        # runs. On a shared machine CPU seconds measure the work (one thread each side); wall
        # seconds depend on what else runs.
        first = _timed(layer_similarity, root, rows=args.rows)
        plain = _timed(numpy_reference, root)
        second = _timed(layer_similarity, root, rows=args.rows)
        exact = _timed(layer_similarity, root, rows=args.rows, precision="float64")
    table = first[0]
    ref, gram_s, pair_s = plain[0]
    cpu, wall = max(first[1], second[1]), max(first[2], second[2])
    got = {
        (r.model_key, r.model_key_b, r.layer_a, r.layer_b): r.cka
        for r in table.itertuples(index=False)
    }
    diff = max(abs(got[key] - value) for key, value in ref.items())
    got64 = {
        (r.model_key, r.model_key_b, r.layer_a, r.layer_b): r.cka
        for r in exact[0].itertuples(index=False)
    }
    diff64 = max(abs(got64[key] - value) for key, value in ref.items())
    print(
        f"{args.checkpoints} checkpoints × {args.layers} layers × {args.rows} images, width "
        f"{args.width}, float16 cache; {len(ref)} CKA values (pairs within and across "
        "checkpoints)"
    )
    print(f"{'method':<44} {'CPU s':>8} {'ratio':>7} {'wall s':>8} {'ratio':>7}")
    name = "(a) layerprobe (torch, float32 tiles, bmm)"
    print(f"{name:<44} {cpu:>8.2f} {1.0:>7.2f} {wall:>8.2f} {1.0:>7.2f}")
    print(
        f"    (a) before and after (b): CPU {first[1]:.2f}, {second[1]:.2f} s; wall "
        f"{first[2]:.2f}, {second[2]:.2f} s"
    )
    print(
        f"{'(b) plain numpy':<44} {plain[1]:>8.2f} {plain[1] / cpu:>7.2f} {plain[2]:>8.2f} "
        f"{plain[2] / wall:>7.2f}"
    )
    print(
        f"{'(a64) layerprobe, precision float64':<44} {exact[1]:>8.2f} {exact[1] / cpu:>7.2f} "
        f"{exact[2]:>8.2f} {exact[2] / wall:>7.2f}"
    )
    print(f"    (b) wall: Gram matrices {gram_s:.2f} s, pairs {pair_s:.2f} s")
    print(
        f"(b) ÷ (a) in CPU s: {plain[1] / cpu:.1f}× (goal ≥ 10×); (b) ÷ (a64): {plain[1] / exact[1]:.1f}×"
    )
    print(f"largest |CKA (a) − CKA (b)|: {diff:.2e} ({'ok' if diff < 1e-6 else 'FAILED'}, < 1e-6)")
    print(f"largest |CKA (a64) − CKA (b)|: {diff64:.2e}")
    print(
        f"machine: {os.cpu_count()} CPUs, {args.threads} thread(s) each side, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end"
    )
    if diff >= 1e-6 or diff64 >= 1e-6:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
