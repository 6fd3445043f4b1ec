"""``ProbeConfig``: what to probe and how, one typed config for the Python API, the CLI and job
files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from layerprobe.errors import ConfigError
from layerprobe.layers import is_all, split_layers
from layerprobe.probe import policy
from layerprobe.probe.families import DEFAULT_LOGISTIC_L2S, check_family
from layerprobe.probe.knn import DEFAULT_KS, check_ks
from layerprobe.probe.plan import VAL_FRACTION, VAL_MAX_PER_CLASS
from layerprobe.probe.problems import DEFAULT_L2S, check_l2s


@dataclass
class ProbeConfig:
    """What to probe and how: one typed config for the Python API, the CLI and job files.

    Attributes
    ----------
    shots : examples per class; 0 = the whole train split.
    seeds : few-shot draws per shot count (seeds 0 … seeds-1).
    l2s : the λ grid; None = the policy's default (30 values 2^-10 … 2^19 for ``val``, the one
        value for ``fixed:VALUE``).
    l2_select : ``val`` or ``fixed:VALUE`` (:mod:`layerprobe.probe.policy`).
    layers : a layer selection (:mod:`layerprobe.layers`); None or "all" = every cached layer.
    backend, device, precision : how the solver runs (:mod:`layerprobe.probe.backends`).
    probe : the family (the ``probe`` column): ``ridge`` (the closed form of design.md),
        ``logistic`` (L2-penalised softmax regression; λ grid default 1, 4, … 4^10), ``knn``
        (cosine k-NN, majority vote) or ``knn_weighted`` (dinov2's temperature-weighted vote).
    ks : the k grid of the k-NN families (default 10, 20, 50, 200).
    """

    shots: Sequence[int] = (1, 5, 10, 25)
    seeds: int = 3
    l2s: Sequence[float] | None = None
    l2_select: str = policy.VAL
    layers: str | Sequence[str] | None = None
    backend: str = "torch"
    device: str = "auto"
    precision: str = "float64"
    probe: str = "ridge"
    ks: Sequence[int] | None = None

    def __post_init__(self) -> None:
        self.probe = check_family(self.probe)
        self.l2_select = policy.parse_policy(self.l2_select)
        if self.probe.startswith("knn"):
            if self.l2_select != policy.VAL:
                raise ConfigError("--l2-select fixed:VALUE applies to ridge and logistic probes")
            self.ks = [int(k) for k in check_ks(self.ks or DEFAULT_KS)]
            self.l2s = []
        else:
            default = DEFAULT_LOGISTIC_L2S if self.probe == "logistic" else DEFAULT_L2S
            grid = policy.policy_grid(self.l2_select, self.l2s, default)
            self.l2s = [float(v) for v in check_l2s(grid)]
            self.ks = None
        self.shots = sorted(set(int(k) for k in self.shots))
        self.seeds = int(self.seeds)
        self.layers = None if is_all(self.layers) else split_layers(self.layers)

    def values_identity(self) -> dict:
        """What changes a row's numbers besides its key (the ``config`` column hashes it)."""
        return {
            "probe": self.probe,
            "l2s": self.l2s,
            "ks": self.ks,
            "l2_select": self.l2_select,
            "backend": self.backend,
            "precision": self.precision,
            "val": [VAL_FRACTION, VAL_MAX_PER_CLASS],
        }

    @property
    def grid(self) -> np.ndarray:
        """The regularisation grid, ascending: λ values, or k values for k-NN."""
        return np.asarray(self.ks, np.int64) if self.ks else np.asarray(self.l2s, np.float64)

    def identity(self) -> dict:
        """What names a unit's part file (the device does not change results)."""
        return self.values_identity() | {
            "shots": self.shots,
            "seeds": self.seeds,
            "layers": self.layers,
        }
