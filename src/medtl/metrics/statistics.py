"""Confidence intervals and summaries of per-image and per-fold scores (``scipy.stats``).

The one home of every interval that evaluate, compare and the report show; the paired
tests live in :mod:`medtl.metrics.paired`. NaN values are ignored (NaN pairs dropped),
which is how the ``"skip"`` empty-mask rule removes images. Every resampling is seeded
(``np.random.default_rng(seed)``), so the same inputs always give the same numbers.

Definitions:

* **BCa bootstrap CI** (:func:`bootstrap_ci`, :func:`bootstrap_statistic_ci`):
  ``scipy.stats.bootstrap(method="BCa")`` with ``n_boot`` resamples, the bias-corrected
  and accelerated interval (Efron 1987), second-order accurate where the percentile
  interval is only first-order.
* **Fallback for degenerate samples**, where BCa is undefined (its acceleration divides
  by the spread of the jackknife values): no value -> ``(nan, nan)``; one value, or all
  values equal -> ``(v, v)`` (every resample has the same mean); two values, or a BCa
  interval that comes out NaN (e.g. a statistic constant over the jackknife, or NaN on
  some resamples such as AUROC of a one-class resample) -> the percentile interval
  (``alpha/2`` and ``1 - alpha/2`` quantiles of the finite resampled statistics, from
  :func:`resample_indices`).
* **Summary** (:func:`aggregate`, :func:`fold_summary`): mean, sample standard deviation
  (ddof=1), median, count and the 95% CI of the mean.

Example:
    >>> aggregate([0.5, 0.7, float("nan")])["n_nan"]
    1
    >>> bootstrap_ci([0.8, 0.8, 0.8])
    (0.8, 0.8)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "aggregate",
    "bootstrap_ci",
    "bootstrap_statistic_ci",
    "fold_summary",
    "resample_indices",
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


def _percentile(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return (_NAN, _NAN)
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def _bca(
    data: np.ndarray, statistic: Callable, vectorized: bool, n_boot: int, seed: int, alpha: float
) -> tuple[float, float]:
    """``scipy.stats.bootstrap`` BCa interval; ``(nan, nan)`` where BCa is undefined."""
    with warnings.catch_warnings():
        # degenerate samples: scipy warns and returns NaN, which the callers replace
        warnings.simplefilter("ignore")
        ci = stats.bootstrap(
            (data,),
            statistic,
            vectorized=vectorized,
            n_resamples=n_boot,
            confidence_level=1 - alpha,
            method="BCa",
            rng=np.random.default_rng(seed),
        ).confidence_interval
    return (float(ci.low), float(ci.high))


def bootstrap_ci(
    values: Values, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """BCa bootstrap confidence interval of the mean (NaN values ignored).

    ``scipy.stats.bootstrap(method="BCa")``, seeded; the fallback for degenerate samples
    is in the module docstring. For paired scores pass the differences ``a - b``:
    resampling the pairs is resampling their differences.

    Returns:
        ``(low, high)``; ``(v, v)`` for a single value or a constant sample, ``(nan, nan)``
        for none.
    """
    v = _finite_1d(values)
    if v.size == 0:
        return (_NAN, _NAN)
    if np.all(v == v[0]):
        return (float(v[0]), float(v[0]))
    lo, hi = (_NAN, _NAN) if v.size < 3 else _bca(v, np.mean, True, n_boot, seed, alpha)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        means = np.concatenate([v[i].mean(axis=1) for i in resample_indices(v.size, n_boot, seed)])
        return _percentile(means, alpha)
    return (lo, hi)


def bootstrap_statistic_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    vectorized: bool = False,
) -> tuple[float, float]:
    """BCa bootstrap CI of any statistic of ``n`` items (e.g. macro-F1, AUROC, PPV).

    ``statistic(idx)`` computes the statistic on the items at positions ``idx``; scipy
    resamples the positions (and leaves one out for the jackknife acceleration). With
    ``vectorized``, ``idx`` is a 2-D array of such rows and ``statistic`` returns one value
    per row (the same interval, far fewer Python calls). Where BCa is undefined (see the
    module docstring) the percentile interval of the finite resampled statistics is
    returned instead (NaN draws, e.g. AUROC of a one-class resample, dropped).

    Returns:
        ``(low, high)``; ``(s, s)`` with ``s = statistic(arange(n))`` for ``n == 1``,
        ``(nan, nan)`` for ``n == 0`` or when every resample is NaN.
    """
    one = _first_row(statistic) if vectorized else statistic
    if n < 2:
        value = one(np.arange(n)) if n else _NAN
        return value, value
    lo, hi = _NAN, _NAN
    if n >= 3:
        scipy_form = _with_axis(statistic) if vectorized else statistic
        lo, hi = _bca(np.arange(n), scipy_form, vectorized, n_boot, seed, alpha)
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    blocks = resample_indices(n, n_boot, seed)
    if vectorized:
        draws = np.concatenate([np.asarray(statistic(b), dtype=float) for b in blocks])
    else:
        draws = np.array([statistic(idx) for block in blocks for idx in block], dtype=float)
    return _percentile(draws, alpha)


def _first_row(rows: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], float]:
    """A statistic of 2-D rows of positions applied to one 1-D row."""
    return lambda idx: float(np.asarray(rows(idx[None]))[0])


def _with_axis(rows: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    """A statistic of 2-D rows in the form scipy calls a vectorized one: ``(idx, axis=-1)``
    with ``idx`` 1-D (one value back) or 2-D (one value per row)."""

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(rows(np.atleast_2d(idx)), dtype=float).reshape(np.shape(idx)[:-1])

    return statistic


def aggregate(values: Values, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Summary of per-image scores, NaN values ignored.

    Returns:
        ``{"mean", "std", "median", "n", "n_nan", "ci_low", "ci_high"}``: ``std`` is the
        sample standard deviation (ddof=1; 0.0 for one value), ``n`` the number of non-NaN
        values, ``n_nan`` the number ignored, ``ci_*`` the 95% BCa bootstrap CI of the mean
        (:func:`bootstrap_ci`). With no values, the floats are NaN and ``n`` is 0.
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

    With 3-10 folds the CI of the mean is rough (BCa needs more than a handful of values
    to be accurate); it is shown as a description of the spread, not as a test.

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
