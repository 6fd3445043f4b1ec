"""Few-shot index sampling and the validation hold-out, exactly as the probe recipe says.

Shots are nested: for each seed, one permutation of each class's train indices, and the
k-shot set is the first k of every class, so the 1-shot set is inside the 5-shot set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from layerprobe.errors import DataError

DEFAULT_SHOTS = (1, 5, 10, 25)  # examples per class a probe is fitted on, unless told otherwise


def fewshot_indices(
    labels: np.ndarray,
    shots: Iterable[int] = DEFAULT_SHOTS,
    seed: int = 0,
    *,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> dict[int, np.ndarray]:
    """Nested few-shot train indices for each shot count.

    Parameters
    ----------
    labels : (N,) int array of train labels, classes 0..C-1.
    shots : shot counts k per class; 0 means the whole split.
    seed : ``rng = numpy.random.default_rng(seed)`` draws one permutation per class, for each
        class c present in increasing order: ``rng.permutation(numpy.where(labels == c)[0])``.
    class_names : optional names used in error messages.
    num_classes : C, when known; then every class 0..C-1 must have k examples (a class with no
        train example at all is an error, not silently skipped), and labels must lie in 0..C-1.

    Returns
    -------
    dict k -> (k * C,) int64 indices into ``labels``, class-major (all of class 0 first); the
    k-shot set of each class is the first k of that class's permutation, so shot sets are nested.
    """
    labels = np.asarray(labels)
    shots = [int(k) for k in shots]
    for k in shots:
        if k < 0:
            raise DataError(f"shots must be >= 0, got {k}")
    if (
        num_classes is not None
        and len(labels)
        and (labels.min() < 0 or labels.max() >= num_classes)
    ):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataError(
            f"train label {int(bad)} is outside 0..{num_classes - 1}; check the task's data"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    perms = [rng.permutation(np.where(labels == c)[0]) for c in classes]
    counts = dict(zip(classes.tolist(), (len(p) for p in perms), strict=True))
    expected = range(num_classes) if num_classes is not None else classes.tolist()

    def name(c: int) -> str:
        return str(class_names[c]) if class_names is not None else str(int(c))

    out: dict[int, np.ndarray] = {}
    for k in shots:
        if k == 0:
            out[k] = np.arange(len(labels), dtype=np.int64)
            continue
        for c in expected:
            have = counts.get(c, 0)
            if have < k:
                hint = (
                    f"lower --shots to at most {have}" if have else "check the task's train split"
                )
                raise DataError(
                    f"class {name(c)!r} has {have} train examples, fewer than {k} shots; {hint}"
                )
        out[k] = np.concatenate([perm[:k] for perm in perms]).astype(np.int64)
    return out


def holdout_split(
    labels: np.ndarray, fraction: float = 0.2, seed: int = 0, *, max_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split train indices into (train, val), stratified by class, fixed by ``seed``.

    Used for λ selection when a task has no ``val`` split: the validation rows are taken
    out of the train split *before* shots are drawn, so they can never overlap any shot set.

    Returns
    -------
    (train_idx, val_idx), both sorted int64 arrays, disjoint, together all of ``labels``.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0x5EED])  # a stream of its own, not the shots' stream
    val = []
    for c in np.unique(labels):
        idx = rng.permutation(np.where(labels == c)[0])
        n_val = int(round(len(idx) * fraction))
        if max_per_class is not None:
            n_val = min(n_val, max_per_class)
        n_val = min(n_val, len(idx) - 1)  # keep at least one train example per class
        val.append(idx[:n_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64) if val else np.zeros(0, np.int64)
    train_mask = np.ones(len(labels), bool)
    train_mask[val_idx] = False
    return np.where(train_mask)[0].astype(np.int64), val_idx
