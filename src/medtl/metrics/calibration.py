"""Calibration of predicted class probabilities: reliability bins and the expected
calibration error (ECE).

Definition (top-label, Guo et al. 2017): each image's confidence is its largest class
probability and it is correct when that class is the true one. The confidences are cut
into ``n_bins`` equal-width bins over [0, 1] (right-closed, a confidence of exactly 0
falls in the first); for bin ``b`` with ``n_b`` images, ``acc_b`` is the share correct and
``conf_b`` the mean confidence, and

    ECE = sum_b (n_b / N) |acc_b - conf_b|.

0 means the probabilities say what they mean (of images predicted with 80% confidence,
80% are right). Default 15 bins, as in Guo et al.

Temperature scaling (Guo et al. 2017, :func:`fit_temperature`): one scalar ``T > 0``
divides the logits before the softmax, ``softmax(z / T)``; it is fitted by minimising the
mean negative log-likelihood (NLL) of the true classes over ``log T`` (bounded scalar
search, ``scipy.optimize.minimize_scalar``), so ``T`` stays positive. The search spans
``T`` in [0.001, 1000] (:data:`T_BOUNDS`); a fit that ends on a bound is logged as a
warning (the logits then carry almost no class information, or are all right with huge
margins), never clipped silently inside a narrower range. Where the NLL is flat in ``T``
(constant logits: every row the same number) ``T = 1`` is returned. Dividing by ``T``
never changes the argmax, hence neither accuracy nor the confusion matrix.

Example:
    >>> import numpy as np
    >>> round(expected_calibration_error([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]])), 6)
    0.15
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ECE_BINS",
    "T_BOUNDS",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "reliability_bins",
    "scaled_probabilities",
    "softmax",
]

log = logging.getLogger("medtl")

ECE_BINS = 15
T_BOUNDS = (1e-3, 1e3)
LOG_T_BOUNDS = (float(np.log(T_BOUNDS[0])), float(np.log(T_BOUNDS[1])))
_FLAT = 1e-9  # an NLL gain below this (nats per image) is no gain


def reliability_bins(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> dict[str, Any]:
    """Per bin: its edges, image count, accuracy and mean confidence (NaN when empty).

    Returns:
        ``{"edges": (n_bins + 1,), "count", "accuracy", "confidence": (n_bins,)}`` arrays.
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(probs, dtype=float)
    conf = p.max(axis=1) if p.size else np.zeros(0)
    correct = (p.argmax(axis=1) == y).astype(float) if p.size else np.zeros(0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
    return {"edges": edges, "count": count, "accuracy": acc, "confidence": mean_conf}


def expected_calibration_error(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Top-label ECE over ``n_bins`` equal-width confidence bins (module docstring); NaN
    with no images."""
    b = reliability_bins(y_true, probs, n_bins)
    n = int(b["count"].sum())
    if n == 0:
        return float("nan")
    used = b["count"] > 0
    gaps = np.abs(b["accuracy"][used] - b["confidence"][used])
    return float((b["count"][used] / n * gaps).sum())


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` of ``(N, C)`` logits (numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def scaled_probabilities(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(z / T)`` from the probabilities ``softmax(z)`` alone: ``log p`` equals ``z``
    up to a per-row constant, which the softmax cancels, so ``p ** (1 / T)`` renormalised per
    row is exact (a probability of 0 stays 0).

    Example:
        >>> z = np.array([[2.0, 0.0, -1.0]])
        >>> bool(np.allclose(scaled_probabilities(softmax(z), 2.0), softmax(z, 2.0)))
        True
    """
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return softmax(np.log(p), temperature)


def nll(logits: np.ndarray, y_true: Sequence[int] | np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under ``softmax(logits / T)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    y = np.asarray(y_true, dtype=np.int64).ravel()
    log_norm = np.logaddexp.reduce(z, axis=1)
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y_true: Sequence[int] | np.ndarray) -> float:
    """The temperature ``T`` minimising :func:`nll` (module docstring), searched over
    ``log T`` within :data:`T_BOUNDS`; ``1.0`` with no images or a flat NLL (constant
    logits); a warning when the minimum lies on a bound.

    Example:
        >>> z = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [4.0, 0.0]])
        >>> t = fit_temperature(z, [0, 1, 1, 0])  # over-confident: one of four is wrong
        >>> t > 1, nll(z, [0, 1, 1, 0], t) < nll(z, [0, 1, 1, 0])
        (True, True)
        >>> fit_temperature(np.zeros((3, 2)), [0, 1, 1])  # constant logits: nothing to fit
        1.0
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    if z.size == 0:
        return 1.0
    res = minimize_scalar(
        lambda log_t: nll(z, y_true, float(np.exp(log_t))),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    t = float(np.exp(res.x))
    if nll(z, y_true, 1.0) - nll(z, y_true, t) <= _FLAT:  # flat or no better than T = 1
        return 1.0
    if min(abs(res.x - b) for b in LOG_T_BOUNDS) < 1e-3:
        log.warning(
            "temperature fit ended on its bound T=%.4g (searched %g..%g): the logits carry "
            "almost no class information or no error; T is that bound, not a fitted optimum",
            t,
            *T_BOUNDS,
        )
    return t
