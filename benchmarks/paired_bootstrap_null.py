"""Null rejection rate of medtl's paired bootstrap p at alpha 0.05, by simulation.

For each pair count and distribution, ``--sims`` null data sets (differences centred on
zero: standard normal, or exponential minus 1 for a skewed case) are tested with
:func:`medtl.metrics.paired.paired_bootstrap_pvalue` (``--boot`` resamples); the share
with ``p <= 0.05`` is printed with its Monte Carlo standard error. A test that holds its
level gives about 5%.

    python benchmarks/paired_bootstrap_null.py --sims 2000 --boot 999 [--percentile]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from medtl.metrics.paired import paired_bootstrap_pvalue


def percentile_pvalue(d: np.ndarray, boot: int, seed: int) -> float:
    """The plain (not studentised) bootstrap p of the centred mean, for comparison."""
    idx = np.random.default_rng(seed).integers(0, d.size, (boot, d.size))
    means = (d - d.mean())[idx].mean(axis=1)
    return (1 + int(np.sum(np.abs(means) >= abs(d.mean()) - 1e-12))) / (boot + 1)


def rejection_rate(
    n: int, sims: int, boot: int, skewed: bool, seed: int = 0, percentile: bool = False
) -> float:
    """Share of ``sims`` null data sets of ``n`` pairs whose bootstrap p is <= 0.05."""
    rng = np.random.default_rng(seed)
    hits = 0
    for k in range(sims):
        d = rng.exponential(1.0, n) - 1.0 if skewed else rng.standard_normal(n)
        if percentile:
            hits += percentile_pvalue(d, boot, k) <= 0.05
        else:
            hits += paired_bootstrap_pvalue(d, np.zeros(n), n_boot=boot, seed=k) <= 0.05
    return hits / sims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=999)
    ap.add_argument("--n", default="20,30,60,100")
    ap.add_argument("--percentile", action="store_true", help="the plain percentile bootstrap")
    a = ap.parse_args()
    se = math.sqrt(0.05 * 0.95 / a.sims)
    for skewed in (False, True):
        for n in (int(v) for v in a.n.split(",")):
            rate = rejection_rate(n, a.sims, a.boot, skewed, percentile=a.percentile)
            name = "exponential" if skewed else "normal"
            print(f"{name:11s} n={n:3d}  rejection {rate:.2%} (MC s.e. {se:.2%})", flush=True)


if __name__ == "__main__":
    main()
