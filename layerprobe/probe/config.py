"""``ProbeConfig``: what to probe and how, one typed config for the Python API, the CLI and job
files.

Its fields are the one home of each probe option's default, choices and help text: ``layerprobe
probe`` (and ``scan``) generate their options from them (:mod:`layerprobe.options`), and a job
file's ``[probe]`` table names the same fields. Several probe families at once (``--probe
ridge,logistic``, ``probe = "ridge,logistic"`` in a job file) are one config per family:
:meth:`ProbeConfig.families`.

The module imports neither torch nor the solvers (they are imported when a config is checked),
so building the CLI stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from layerprobe.errors import ConfigError
from layerprobe.layers import LAYERS_HELP, is_all, split_layers
from layerprobe.options import option, parse_float_list, parse_int_list, whole_number
from layerprobe.probe import policy
from layerprobe.probe.problems import DEFAULT_KS
from layerprobe.runtime.devices import DEVICES
from layerprobe.tasks.fewshot import DEFAULT_SHOTS

PRECISIONS = ("float64", "float32")  # dtype of the Gram matrices and eigendecompositions


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
    probe : the family (the ``probe`` column): ``ridge`` (the closed form of probe/solver.py),
        ``logistic`` (L2-penalised softmax regression; λ grid default 1, 4, … 4^10), ``knn``
        (cosine k-NN, majority vote) or ``knn_weighted`` (dinov2's temperature-weighted vote).
    ks : the k grid of the k-NN families (default 10, 20, 50, 200).
    """

    shots: Sequence[int] = option(
        DEFAULT_SHOTS,
        help="examples per class; 0 = the whole train split",
        type=parse_int_list,
        metavar="K,…",
    )
    seeds: int = option(3, help="few-shot draws per shot count", type=whole_number(), metavar="N")
    l2s: Sequence[float] | None = option(
        None,
        help="λ values, e.g. 2**-10,1,2**10",
        type=parse_float_list,
        metavar="λ,…",
        flag="--l2",
        show_default="ridge 2**-10 … 2**19, 30 values; logistic 1, 4, … 4**10",
    )
    l2_select: str = option(
        policy.VAL,
        help="λ policy: val (best on validation, ties to the larger λ) or fixed:VALUE "
        "(fixed:1024 is big_vision's protocol; the grid then defaults to that one value)",
        metavar="val|fixed:VALUE",
    )
    layers: str | Sequence[str] | None = option(None, help=LAYERS_HELP, metavar="all|NAMES|GLOBS")
    backend: str = option(
        "torch", help="torch (the default), cuml (GPU, the gpu extra) or sklearn (slow reference)"
    )
    device: str = option("auto", help="torch backend device", choices=DEVICES)
    precision: str = option(
        "float64",
        help="dtype of the Gram matrices and eigendecompositions",
        choices=PRECISIONS,
    )
    probe: str = option(
        "ridge",
        help="probe families: ridge (the closed form), logistic (softmax regression), "
        "knn (cosine k-NN, majority vote), knn_weighted (dinov2's weighted vote)",
        metavar="FAMILY,…",
    )
    ks: Sequence[int] | None = option(
        None,
        help="neighbours of the k-NN families",
        type=parse_int_list,
        metavar="K,…",
        flag="--k",
        show_default=",".join(map(str, DEFAULT_KS)),
    )

    def __post_init__(self) -> None:
        from layerprobe.probe.families import DEFAULT_LOGISTIC_L2S, check_family
        from layerprobe.probe.problems import DEFAULT_L2S, check_ks, check_l2s

        self.probe = check_family(self.probe)
        self.l2_select = policy.parse_policy(self.l2_select)
        if self.probe.startswith("knn"):
            if self.l2_select != policy.VAL:
                raise ConfigError("--l2-select fixed:VALUE applies to ridge and logistic probes")
            self.ks = [int(k) for k in check_ks(self.ks or DEFAULT_KS)]
            self.l2s = []
        else:
            default = DEFAULT_LOGISTIC_L2S if self.probe == "logistic" else DEFAULT_L2S
            given = None if self.l2s is None or len(self.l2s) == 0 else self.l2s  # [] = the default
            grid = policy.policy_grid(self.l2_select, given, default)
            self.l2s = [float(v) for v in check_l2s(grid)]
            self.ks = None
        self.shots = sorted(set(int(k) for k in self.shots))
        self.seeds = int(self.seeds)
        self.layers = None if is_all(self.layers) else split_layers(self.layers)

    @classmethod
    def families(cls, probe: str | Sequence[str] = "ridge", **fields) -> list[ProbeConfig]:
        """One config per probe family of ``probe``, the other fields shared.

        Parameters
        ----------
        probe : a family, comma-separated families (``"ridge,logistic"``, as ``--probe`` takes
            them) or a list of families; repeats count once, blanks are dropped (none = ridge).
        **fields : the other :class:`ProbeConfig` fields.

        Returns
        -------
        list of ProbeConfig : in the order given; each is built (so checked) before any is used.
        """
        names = split_layers(probe)  # the same comma and list rules as a layer selection
        return [cls(probe=name, **fields) for name in dict.fromkeys(names or ["ridge"])]

    def values_identity(self) -> dict:
        """What changes a row's numbers besides its key (the ``config`` column hashes it)."""
        from layerprobe.probe.plan import VAL_FRACTION, VAL_MAX_PER_CLASS

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
