"""Coverage of the saturation fit's intervals on known curves (`layerprobe.analysis.fit`).

A panel of known curves e_DS = k · e_US^α + e_IR (α from 0.6 to 4, flat stretches, linear
stretches, 4 to 40 checkpoints), each checkpoint's DS accuracy either on the curve (a third)
or below it (by |N(0, 0.05)|: checkpoints that are not the best reachable), then probe noise:
3 seeds of N(0, σ) each, the point being their mean and its standard error over the seeds.
Every replicate is seeded, so the table is the same on every run.

Each curve is labelled as one whose points determine e_IR or not by an oracle that knows the
truth (:attr:`Curve.determined`: a concave frontier whose expected 95 % interval, from the
Fisher information of its points at the true curve, is narrower than 0.2) — not by the
fit's own status. Printed per curve: the share of replicates reported ``ok``, the
coverage of the nominal 95 % profile interval of e_IR (over the ``ok`` fits and over all), of
k and α (over ``ok``), the median width of the e_IR interval, and the share reported ``ok`` with
an e_IR interval narrower than 0.2. Then the three goals:

* coverage of the 95 % e_IR interval over fits reported ``ok``: ≥ 90 %;
* share reported ``ok`` where the curve determines e_IR: ≥ 50 %;
* share of non-identifiable replicates reported ``ok`` with an interval narrower than 0.2: ≤ 10 %.

Baseline in the same run: the percentile bootstrap (``--bootstrap``, 100 resamples) on the first
``--baseline`` replicates of each curve, its e_IR coverage over all fits (the anchors measured
0–87 %).

    python benchmarks/fit_coverage.py                  # 100 replicates per curve (a few minutes)
    python benchmarks/fit_coverage.py --replicates 20  # a quick look
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np

from layerprobe.analysis.fit import fit_group

NARROW = 0.2
SEEDS = 3


@dataclass(frozen=True)
class Curve:
    name: str
    k: float
    alpha: float
    e_ir: float
    us: tuple[float, float]  # US accuracy range of the checkpoints
    n: int  # checkpoints
    sigma: float  # probe noise of one seed (accuracy units)

    @property
    def expected_width(self) -> float:
        """Width of a 95 % interval of e_IR that the curve's frontier would give if its points
        were fitted exactly as they lie (Fisher information of n/3 evenly spaced points on the
        curve, noise σ/√3): 2 · 1.96 · SE(e_IR)."""
        m = max(round(self.n / 3), 1)
        e = 1.0 - np.linspace(*self.us, m)
        z = e**self.alpha
        jac = np.stack([z, self.k * z * np.log(e), np.ones(m)], 1)
        info = jac.T @ jac / (self.sigma**2 / SEEDS)
        try:
            cov = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            return float("inf")
        return float(2 * 1.96 * np.sqrt(max(cov[2, 2], 0.0)))

    @property
    def determined(self) -> bool:
        """Do the points determine e_IR? A concave frontier (α > 1: a convex one is not on the
        hull) whose expected interval is narrower than 0.2."""
        return self.alpha > 1 and self.expected_width < NARROW


PANEL = [
    Curve("alpha 1.5, near", 0.9, 1.5, 0.05, (0.2, 0.9), 20, 0.01),
    Curve("alpha 2, mid", 0.8, 2.0, 0.20, (0.2, 0.9), 20, 0.01),
    Curve("alpha 2.5, 15 ckpt", 0.6, 2.5, 0.30, (0.2, 0.95), 15, 0.01),
    Curve("alpha 3, 40 ckpt", 0.7, 3.0, 0.15, (0.1, 0.9), 40, 0.01),
    Curve("alpha 4, flat start", 0.9, 4.0, 0.10, (0.1, 0.9), 30, 0.01),
    Curve("alpha 1.2, low noise", 0.7, 1.2, 0.10, (0.3, 0.95), 25, 0.005),
    Curve("alpha 0.6 (convex)", 0.5, 0.6, 0.20, (0.2, 0.9), 20, 0.01),
    Curve("alpha 0.8 (convex)", 0.6, 0.8, 0.10, (0.2, 0.9), 30, 0.01),
    Curve("flat", 0.001, 1.0, 0.65, (0.02, 0.57), 20, 0.01),
    Curve("linear stretch", 0.5, 1.0, 0.10, (0.3, 0.45), 12, 0.01),
    Curve("4 checkpoints", 0.8, 2.0, 0.20, (0.2, 0.9), 4, 0.01),
    Curve("9 checkpoints", 0.8, 2.0, 0.20, (0.2, 0.9), 9, 0.01),
    Curve("saturated plateau", 0.7, 3.0, 0.20, (0.6, 0.95), 20, 0.01),
    Curve("alpha 3, far from top", 0.6, 3.0, 0.25, (0.05, 0.45), 20, 0.01),
]


def replicate(curve: Curve, rng: np.random.Generator, seeds: int = SEEDS):
    """(US, DS, DS standard error) of one replicate of ``curve``."""
    us = np.sort(rng.uniform(*curve.us, curve.n))
    ds = 1.0 - (curve.k * (1.0 - us) ** curve.alpha + curve.e_ir)
    below = rng.random(curve.n) < 2 / 3
    ds = ds - below * np.abs(rng.normal(0, 0.05, curve.n))
    runs = ds[:, None] + rng.normal(0, curve.sigma, (curve.n, seeds))
    return us, runs.mean(1), runs.std(1, ddof=1) / np.sqrt(seeds)


def run_curve(curve: Curve, replicates: int, seed: int, bootstrap_first: int) -> dict:
    rng = np.random.default_rng([seed, PANEL.index(curve)])
    rows, boot = [], []
    for r in range(replicates):
        us, ds, se = replicate(curve, rng)
        row = fit_group(us, ds, ds_se=se, holdout_top=0)
        if row is not None:
            rows.append(row)
        if r < bootstrap_first:
            b = fit_group(us, ds, ds_se=se, holdout_top=0, bootstrap=100, seed=r)
            if b is not None:
                boot.append(b["e_ir_boot_lo"] <= curve.e_ir <= b["e_ir_boot_hi"])
    fitted = len(rows)
    ok = [x for x in rows if x["status"] == "ok"]

    def covers(x, name, truth):
        return x[f"{name}_lo"] - 1e-9 <= truth <= x[f"{name}_hi"] + 1e-9

    def share(items, pred):
        return float(np.mean([pred(x) for x in items])) if items else float("nan")

    return {
        "replicates": replicates,
        "fitted": fitted,
        "ok": len(ok),
        "ok_share": len(ok) / replicates,
        "cover_ok": share(ok, lambda x: covers(x, "e_ir", curve.e_ir)),
        "cover_all": share(rows, lambda x: covers(x, "e_ir", curve.e_ir)),
        "cover_k": share(ok, lambda x: covers(x, "k", curve.k)),
        "cover_alpha": share(ok, lambda x: covers(x, "alpha", curve.alpha)),
        "width": float(np.median([x["e_ir_hi"] - x["e_ir_lo"] for x in rows])) if rows else 0,
        "ok_narrow": sum(x["e_ir_hi"] - x["e_ir_lo"] < NARROW for x in ok) / replicates,
        "n_ok_covered": sum(covers(x, "e_ir", curve.e_ir) for x in ok),
        "boot": float(np.mean(boot)) if boot else float("nan"),
        "statuses": _count(x["status"] for x in rows)
        + (f", not fitted {replicates - fitted}" if fitted < replicates else ""),
    }


def _count(values) -> str:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicates", type=int, default=100, help="per curve (default 100)")
    p.add_argument("--baseline", type=int, default=20, help="bootstrap replicates per curve")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")
    start = time.perf_counter()
    header = (
        f"{'curve':<24} {'e_IR':>5} {'E wid':>5} {'det':>3} {'ok':>5} {'cov ok':>6} {'cov all':>7} "
        f"{'cov k':>5} {'cov α':>5} {'width':>5} {'ok<0.2':>6} {'boot':>5}  statuses"
    )
    print(header)
    results = []
    for curve in PANEL:
        res = run_curve(curve, args.replicates, args.seed, args.baseline)
        results.append((curve, res))
        print(
            f"{curve.name:<24} {curve.e_ir:5.2f} {min(curve.expected_width, 9.99):5.2f} {'yes' if curve.determined else 'no':>3} "
            f"{res['ok_share']:5.0%} {_pct(res['cover_ok']):>6} {_pct(res['cover_all']):>7} "
            f"{_pct(res['cover_k']):>5} {_pct(res['cover_alpha']):>5} {res['width']:5.2f} "
            f"{res['ok_narrow']:6.0%} {_pct(res['boot']):>5}  {res['statuses']}",
            flush=True,
        )
    elapsed = time.perf_counter() - start
    n_ok = sum(r["ok"] for _, r in results)
    covered = sum(r["n_ok_covered"] for _, r in results)
    det = [r for c, r in results if c.determined]
    non = [r for c, r in results if not c.determined]
    ok_det = sum(r["ok"] for r in det) / sum(r["replicates"] for r in det)
    false_ok = sum(r["ok_narrow"] * r["replicates"] for r in non) / sum(
        r["replicates"] for r in non
    )
    boots = [r["boot"] for _, r in results if r["boot"] == r["boot"]]
    boot = float(np.mean(boots)) if boots else float("nan")
    print()
    print(f"{'measure':<62} {'value':>6} {'goal':>6} met")
    lines = [
        (
            "coverage of the 95 % e_IR interval over fits reported ok",
            covered / max(n_ok, 1),
            "≥ 90%",
            covered / max(n_ok, 1) >= 0.90,
        ),
        ("share reported ok where the curve determines e_IR", ok_det, "≥ 50%", ok_det >= 0.5),
        (
            "non-identifiable replicates reported ok, interval < 0.2",
            false_ok,
            "≤ 10%",
            false_ok <= 0.10,
        ),
        ("baseline: percentile bootstrap e_IR coverage (all fits)", boot, "", None),
    ]
    for name, value, goal, met in lines:
        flag = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<62} {value:6.1%} {goal:>6} {flag}")
    fits = sum(r["replicates"] for _, r in results)
    print(
        f"{fits} replicates ({n_ok} ok) + {args.baseline} bootstrap baselines per curve in "
        f"{elapsed:.0f} s; load average after: {os.getloadavg()[0]:.2f}"
    )


def _pct(value: float) -> str:
    return "–" if value != value else f"{value:.0%}"


if __name__ == "__main__":
    main()
