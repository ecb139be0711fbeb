"""Statistics of per-image and per-fold scores: bootstrap CIs, summaries and paired tests.

The one home of every statistic that evaluate, compare and the report show. NaN values
are ignored (NaN pairs dropped), which is how the ``"skip"`` empty-mask rule removes
images. Every resampling is seeded (``np.random.default_rng(seed)``) and draws its
resamples from one stream (:func:`resample_indices`), so the same inputs always give the
same numbers.

Definitions:

* **Percentile bootstrap CI** (:func:`bootstrap_ci`, :func:`bootstrap_statistic_ci`):
  ``n_boot`` resamples with replacement; the ``alpha/2`` and ``1 - alpha/2`` quantiles
  (linear interpolation) of the statistic over the resamples.
* **Summary** (:func:`aggregate`, :func:`fold_summary`): mean, sample standard deviation
  (ddof=1), median, count and the 95% bootstrap CI of the mean.
* **Paired tests** (:func:`paired_test`): the two-sided paired bootstrap p-value of
  ``mean(a - b) == 0`` (:func:`paired_bootstrap_pvalue`) and the Wilcoxon signed-rank
  p-value (:func:`wilcoxon_pvalue`).

Example:
    >>> aggregate([0.5, 0.7, float("nan")])["n_nan"]
    1
    >>> paired_test([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])["p_bootstrap"]
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "aggregate",
    "bootstrap_ci",
    "bootstrap_statistic_ci",
    "fold_summary",
    "paired_bootstrap_pvalue",
    "paired_test",
    "resample_indices",
    "wilcoxon_pvalue",
]

_NAN = float("nan")
Values = Sequence[float] | np.ndarray


def _finite_1d(values: Values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[~np.isnan(v)]


def resample_indices(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``range(n)`` as blocks of index rows, ``n_boot`` rows in all.

    One ``np.random.default_rng(seed)`` stream; the blocks keep the (rows x n) index array
    around a few MB for large test sets, and row ``r`` is the same resample whatever the
    block size (the stream equals ``n_boot`` draws of ``rng.integers(0, n, n)``).
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, 1_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        yield rng.integers(0, n, size=(stop - start, n))


def _interval(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def bootstrap_ci(
    values: Values, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (NaN values ignored).

    Draws ``n_boot`` resamples with replacement (:func:`resample_indices`), takes their
    means and returns the ``alpha/2`` and ``1 - alpha/2`` quantiles. Deterministic for a
    given seed.

    Returns:
        ``(low, high)``; ``(v, v)`` for a single value, ``(nan, nan)`` for none.
    """
    v = _finite_1d(values)
    n = v.size
    if n == 0:
        return (_NAN, _NAN)
    if n == 1:
        return (float(v[0]), float(v[0]))
    means = np.concatenate([v[idx].mean(axis=1) for idx in resample_indices(n, n_boot, seed)])
    return _interval(means, alpha)


def bootstrap_statistic_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap CI of any statistic of ``n`` items (e.g. macro-F1, AUROC).

    ``statistic(idx)`` computes the statistic on the items at positions ``idx``; it is
    evaluated on the same ``n_boot`` resamples as :func:`bootstrap_ci` draws for the same
    ``n`` and ``seed``. Resamples where it is NaN (e.g. AUROC of a one-class resample) are
    dropped before the quantiles.

    Returns:
        ``(low, high)``; ``(s, s)`` with ``s = statistic(arange(n))`` for ``n == 1``,
        ``(nan, nan)`` for ``n == 0`` or when every resample is NaN.
    """
    if n < 2:
        value = statistic(np.arange(n)) if n else _NAN
        return value, value
    draws = np.array(
        [statistic(idx) for block in resample_indices(n, n_boot, seed) for idx in block]
    )
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return _NAN, _NAN
    return _interval(draws, alpha)


def aggregate(values: Values, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Summary of per-image scores, NaN values ignored.

    Returns:
        ``{"mean", "std", "median", "n", "n_nan", "ci_low", "ci_high"}``: ``std`` is the
        sample standard deviation (ddof=1; 0.0 for one value), ``n`` the number of non-NaN
        values, ``n_nan`` the number ignored, ``ci_*`` the 95% percentile bootstrap CI of
        the mean (:func:`bootstrap_ci`). With no values, the floats are NaN and ``n`` is 0.
    """
    all_v = np.asarray(values, dtype=float).ravel()
    v = all_v[~np.isnan(all_v)]
    n = int(v.size)
    lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return {
        "mean": float(v.mean()) if n else _NAN,
        "std": float(v.std(ddof=1)) if n > 1 else (0.0 if n == 1 else _NAN),
        "median": float(np.median(v)) if n else _NAN,
        "n": n,
        "n_nan": int(all_v.size - n),
        "ci_low": lo,
        "ci_high": hi,
    }


def fold_summary(values: Values, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Summary of per-fold scores: every value, then :func:`aggregate` of the finite ones.

    Returns:
        ``{"values", "mean", "std", "n", "ci_low", "ci_high"}``; ``values`` keeps the
        non-finite folds (as NaN) so position ``k`` is fold ``k``.
    """
    v = np.asarray(values, dtype=float)
    s = aggregate(v[np.isfinite(v)], n_boot=n_boot, seed=seed)
    return {
        "values": [float(x) for x in v],
        **{key: s[key] for key in ("mean", "std", "n", "ci_low", "ci_high")},
    }


def _paired_diffs(a: Values, b: Values) -> np.ndarray:
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired inputs differ in length: {a.size} != {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep] - b[keep]


def paired_bootstrap_pvalue(a: Values, b: Values, n_boot: int = 5000, seed: int = 0) -> float:
    """Two-sided bootstrap p-value for ``mean(a - b) == 0`` on paired scores.

    Pairs with a NaN on either side are dropped. The differences are centred on zero
    (imposing the null), resampled ``n_boot`` times, and the p-value is
    ``(1 + #{|mean*| >= |mean(d)|}) / (n_boot + 1)``, so it is never exactly 0.

    Returns:
        The p-value; 1.0 when every difference is zero; NaN with fewer than 2 pairs.
    """
    d = _paired_diffs(a, b)
    n = d.size
    if n < 2:
        return _NAN
    if np.all(d == 0):
        return 1.0
    observed = abs(float(d.mean()))
    centred = d - d.mean()
    hits = 0
    for idx in resample_indices(n, n_boot, seed):
        means = centred[idx].mean(axis=1)
        # Tolerance so that resamples equal to the observed mean up to rounding still count.
        hits += int(np.sum(np.abs(means) >= observed - 1e-12))
    return (1 + hits) / (n_boot + 1)


def wilcoxon_pvalue(a: Values, b: Values) -> float:
    """Two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``) on paired scores.

    Pairs with a NaN on either side are dropped.

    Returns:
        The p-value; 1.0 when every difference is zero; NaN with fewer than 2 pairs.
    """
    d = _paired_diffs(a, b)
    if d.size < 2:
        return _NAN
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def paired_test(a: Values, b: Values, n_boot: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of ``a`` with ``b`` (NaN pairs dropped).

    Returns:
        ``{"n", "mean_diff", "p_bootstrap", "p_wilcoxon"}``: the number of pairs, the mean
        of ``a - b``, :func:`paired_bootstrap_pvalue` and :func:`wilcoxon_pvalue`.
    """
    d = _paired_diffs(a, b)
    return {
        "n": int(d.size),
        "mean_diff": float(d.mean()) if d.size else _NAN,
        "p_bootstrap": paired_bootstrap_pvalue(a, b, n_boot=n_boot, seed=seed),
        "p_wilcoxon": wilcoxon_pvalue(a, b),
    }
