"""Macro-F1 and macro AUROC of many resamples of the same items at once (e.g. the
bootstrap's), each equal bit for bit to :func:`medtl.metrics.classification.macro_f1` or
:func:`~medtl.metrics.classification.macro_auroc` of that resample, without a Python call
(and a ranking) per resample: each row becomes counts of its items, and the scores are
computed from the counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medtl.metrics.classification import _NAN, _auroc_averages, _checked

__all__ = ["macro_auroc_resampled", "macro_f1_resampled"]


def _row_blocks(idx: np.ndarray, n: int) -> list[np.ndarray]:
    """``idx`` as 2-D rows of item positions, in blocks of about a million counts each."""
    rows = np.atleast_2d(idx)
    step = max(1, 1_000_000 // max(n, 1))
    return [rows[k : k + step] for k in range(0, len(rows), step)]


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` items occurs in each row of ``idx``: ``(rows, n)`` int64."""
    offset = (n * np.arange(len(idx)))[:, None]
    return np.bincount((idx + offset).ravel(), minlength=len(idx) * n).reshape(len(idx), n)


def macro_f1_resampled(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, idx: np.ndarray
) -> np.ndarray:
    """:func:`macro_f1` of the items at each row of ``idx`` (rows of positions, e.g. bootstrap
    resamples), all rows at once and equal to one call per row bit for bit."""
    c, cell = n_classes, (np.asarray(y_true) * n_classes + np.asarray(y_pred)).astype(np.int64)
    out = []
    for rows in _row_blocks(idx, c * c):
        cm = _counts(cell[rows], c * c).reshape(len(rows), c, c)
        tp, denom = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=2) + cm.sum(axis=1)
        f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
        out.append(f1.mean(axis=1))
    return np.concatenate(out).reshape(np.shape(idx)[:-1])


def macro_auroc_resampled(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, n_classes: int, idx: np.ndarray
) -> np.ndarray:
    """:func:`macro_auroc` of the items at each row of ``idx``, all rows at once: the
    Mann-Whitney U of every row from the counts of each item in it (a positive above a
    negative counts 1, a tie 1/2), which is the rank formula's exact value, so the AUROCs
    equal one call per row bit for bit without ranking each resample."""
    y, p = _checked(y_true, probs, n_classes)
    out = []
    for rows in _row_blocks(idx, len(y)):
        w = _counts(rows, len(y))
        auc = np.full((len(rows), n_classes), _NAN)
        for i in range(n_classes):
            order = np.argsort(p[:, i], kind="stable")
            s, pos, wo = p[order, i], (y == i)[order], w[:, order]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores
            n_p = np.add.reduceat(wo * pos, starts, axis=1) if len(s) else wo
            n_n = np.add.reduceat(wo * ~pos, starts, axis=1) if len(s) else wo
            u2 = (n_p * (2 * (np.cumsum(n_n, axis=1) - n_n) + n_n)).sum(axis=1)  # 2 U
            den = n_p.sum(axis=1) * n_n.sum(axis=1)
            auc[den > 0, i] = (u2[den > 0] / 2.0) / den[den > 0]
        support = np.zeros(n_classes)  # the macro mean does not read it
        out += [_auroc_averages(a, support)["auroc_macro"] for a in auc]
    return np.array(out, dtype=float).reshape(np.shape(idx)[:-1])
