"""Paired tests of two configurations' scores and the multiplicity correction across them.

compare pairs the scores of a configuration with the best one's, per image (hundreds of
pairs) and per fold (3-10 pairs); every test here is valid at both sizes.

Definitions (``d = a - b`` over the pairs where neither side is NaN):

* **Sign-flip permutation test** (:func:`sign_flip_pvalue`): under the null of no
  difference each ``d_i`` is as likely to be ``-d_i``; the two-sided p-value is the share
  of sign assignments whose ``|mean|`` reaches the observed one. Exact over all ``2^n``
  assignments for ``n <= EXACT_MAX_N`` (16), otherwise ``N_PERMUTATIONS`` seeded random
  ones, p = ``(1 + hits) / (1 + N)``; both through ``scipy.stats.permutation_test``
  (``permutation_type="samples"``). Its smallest attainable value is ``2 / 2^n``:
  0.25 with 3 pairs, 0.0625 with 5, 0.0039 with 8.
* **Wilcoxon signed-rank** (:func:`wilcoxon_pvalue`): zeros dropped, tied ranks averaged;
  exact over all sign assignments of the ranks for ``n <= 16`` (ties included),
  ``scipy.stats.wilcoxon``'s default (exact without ties up to 50 pairs, normal
  approximation beyond) above.
* **Paired bootstrap p** (:func:`paired_bootstrap_pvalue`): a studentised (bootstrap-t)
  test. The pairs are resampled, each resample's ``t* = (mean* - mean) / (sd* / sqrt(n))``
  is compared with the observed ``t = mean / (sd / sqrt(n))``; only for
  ``n >= MIN_BOOTSTRAP_N`` (20) pairs, NaN below. Null rejection rate at alpha 0.05,
  2000 simulated null data sets per cell, 999 resamples each (Monte Carlo standard error
  0.5 points; ``benchmarks/paired_bootstrap_null.py``): normal differences 4.7% at 20
  pairs, 6.1% at 30, 6.0% at 60, 6.0% at 100; skewed (exponential) 5.9%, 5.7%, 5.2%,
  4.9%. The plain percentile bootstrap of the centred mean (``--percentile``) is liberal
  where this one holds: normal 7.7%, 7.7%, 6.6%, 6.4%; exponential 10.0%, 8.8%, 6.8%,
  6.1%; and 29.7% / 17.0% / 9.8% at 3 / 5 / 10 normal pairs. Below 20 pairs the
  studentised test is unstable (0% at 3 pairs, 2.4% at 5, 6.9% at 10 exponential), so
  none is reported; the permutation and Wilcoxon p-values need no minimum size.
* **Holm correction** (:func:`holm`): step-down Holm-Bonferroni over the ``m`` finite
  p-values of one family (e.g. every configuration against the best): the ``k``-th
  smallest becomes ``max_{j<=k} min(1, (m - j + 1) p_(j))``; it controls the
  family-wise error rate under any dependence.

Example:
    >>> sign_flip_pvalue([1, 2, 3], [0, 1, 2])
    0.25
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from medtl.metrics.statistics import bootstrap_ci, resample_indices

__all__ = [
    "EXACT_MAX_N",
    "MIN_BOOTSTRAP_N",
    "N_PERMUTATIONS",
    "holm",
    "paired_bootstrap_pvalue",
    "paired_test",
    "sign_flip_pvalue",
    "wilcoxon_pvalue",
]

EXACT_MAX_N = 16
N_PERMUTATIONS = 9999
MIN_BOOTSTRAP_N = 20
_NAN = float("nan")
Values = Sequence[float] | np.ndarray


def _paired_diffs(a: Values, b: Values) -> np.ndarray:
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired inputs differ in length: {a.size} != {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep] - b[keep]


def _diffs_to_test(a: Values, b: Values) -> tuple[np.ndarray, float | None]:
    """The paired differences, and the p-value when no test is needed: NaN with fewer than
    2 pairs, 1.0 when every difference is zero."""
    d = _paired_diffs(a, b)
    if d.size < 2:
        return d, _NAN
    return d, (1.0 if np.all(d == 0) else None)


def _sign_flip(x: np.ndarray, seed: int) -> float:
    """Two-sided sign-flip p of ``mean(x) == 0`` (exact up to ``EXACT_MAX_N`` values)."""
    res = stats.permutation_test(
        (x,),
        lambda v, axis: np.mean(v, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf if x.size <= EXACT_MAX_N else N_PERMUTATIONS,
        alternative="two-sided",
        batch=max(1, 2_000_000 // x.size),
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, res.pvalue))


def sign_flip_pvalue(a: Values, b: Values, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(a - b) == 0`` on paired scores.

    Exact (all ``2^n`` sign assignments) for ``n <= EXACT_MAX_N``, else ``N_PERMUTATIONS``
    seeded random assignments (``scipy.stats.permutation_test``).

    Returns:
        The p-value; 1.0 when every difference is zero; NaN with fewer than 2 pairs.
    """
    d, trivial = _diffs_to_test(a, b)
    if trivial is not None:
        return trivial
    return _sign_flip(d, seed)


def wilcoxon_pvalue(a: Values, b: Values) -> float:
    """Two-sided Wilcoxon signed-rank p-value on paired scores (zeros dropped, ties averaged).

    For ``n <= EXACT_MAX_N`` pairs it is exact given the ties: the sign-flip test of the
    signed ranks, whose mean is a linear function of the rank sum ``T+`` (the value of
    ``scipy.stats.wilcoxon(d, method=PermutationMethod(n_resamples=inf))``, much faster);
    above, ``scipy.stats.wilcoxon`` (exact without ties up to 50 pairs, normal
    approximation otherwise).

    Returns:
        The p-value; 1.0 when every difference is zero; NaN with fewer than 2 pairs.
    """
    d, trivial = _diffs_to_test(a, b)
    if trivial is not None:
        return trivial
    if d.size <= EXACT_MAX_N:
        nz = d[d != 0]
        if nz.size < 2:  # one non-zero difference: both signs are as extreme, p = 1
            return 1.0
        return _sign_flip(stats.rankdata(np.abs(nz)) * np.sign(nz), 0)
    return float(stats.wilcoxon(d).pvalue)


def paired_bootstrap_pvalue(a: Values, b: Values, n_boot: int = 5000, seed: int = 0) -> float:
    """Two-sided studentised bootstrap p-value for ``mean(a - b) == 0``, only with >= 20
    pairs (module docstring: the measured null rejection rates).

    Pairs with a NaN on either side are dropped. The pairs are resampled ``n_boot`` times;
    the p-value is ``(1 + #{|t*| >= |t|}) / (n_boot + 1)`` with ``t* = (mean* - mean) /
    (sd* / sqrt(n))`` and ``t = mean / (sd / sqrt(n))``, so it is never exactly 0 (a
    resample of one repeated value counts as extreme). Every difference equal and non-zero
    gives the smallest value, ``1 / (n_boot + 1)``. Below ``MIN_BOOTSTRAP_N`` pairs NaN
    is returned: use :func:`sign_flip_pvalue` or :func:`wilcoxon_pvalue`.

    Returns:
        The p-value; 1.0 when every difference is zero; NaN with fewer than 20 pairs.
    """
    d = _paired_diffs(a, b)
    n = d.size
    if n < MIN_BOOTSTRAP_N:
        return _NAN
    if np.all(d == 0):
        return 1.0
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return 1 / (n_boot + 1)
    observed = abs(mean) / (sd / math.sqrt(n))
    hits = 0
    for idx in resample_indices(n, n_boot, seed):
        x = d[idx]
        s_star = x.std(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = np.abs(x.mean(axis=1) - mean) / (s_star / math.sqrt(n))
        t_star[s_star == 0] = np.inf
        # Tolerance so that resamples equal to the observed t up to rounding still count.
        hits += int(np.sum(t_star >= observed * (1 - 1e-12)))
    return (1 + hits) / (n_boot + 1)


def paired_test(a: Values, b: Values, n_boot: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of ``a`` with ``b`` (NaN pairs dropped).

    Returns:
        ``{"n", "mean_diff", "ci_low", "ci_high", "p_permutation", "p_wilcoxon",
        "p_bootstrap"}``: the number of pairs, the mean of ``a - b`` with its 95% BCa CI
        (resampling pairs, :func:`~medtl.metrics.statistics.bootstrap_ci` of the
        differences), :func:`sign_flip_pvalue`, :func:`wilcoxon_pvalue` and
        :func:`paired_bootstrap_pvalue` (NaN below 20 pairs).
    """
    d = _paired_diffs(a, b)
    lo, hi = bootstrap_ci(d, n_boot=2000, seed=seed)
    return {
        "n": int(d.size),
        "mean_diff": float(d.mean()) if d.size else _NAN,
        "ci_low": lo,
        "ci_high": hi,
        "p_permutation": sign_flip_pvalue(a, b, seed=seed),
        "p_wilcoxon": wilcoxon_pvalue(a, b),
        "p_bootstrap": paired_bootstrap_pvalue(a, b, n_boot=n_boot, seed=seed),
    }


def holm(pvalues: Sequence[float | None]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (NaN/None stay NaN, not counted).

    Example:
        >>> holm([0.02, None, 0.5])
        [0.04, nan, 0.5]
    """
    p = np.array([_NAN if v is None else float(v) for v in pvalues], dtype=float)
    out = np.full(p.shape, _NAN)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return [float(v) if math.isfinite(v) else _NAN for v in out]
