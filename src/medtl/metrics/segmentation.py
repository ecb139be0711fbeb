"""Segmentation metrics per image: Dice, IoU, precision, recall and HD95 on boolean masks.

Definitions (``P`` the predicted foreground, ``T`` the ground truth, ``|.|`` pixel counts):

* Dice = ``2 |P ∩ T| / (|P| + |T|)``; IoU = ``|P ∩ T| / |P ∪ T|``;
  precision = ``|P ∩ T| / |P|``; recall = ``|P ∩ T| / |T|`` (a zero division counts as 0).
* HD95 (:func:`hd95`): the 95th percentile of the pooled boundary-to-boundary distances.
* Label maps (several foreground labels): :func:`label_scores` scores every label as its own
  binary mask and reports their mean over labels (the empty rule applies per label).
* Empty masks follow one explicit rule, ``"one"``, ``"zero"`` or ``"skip"``
  (:data:`EMPTY_RULE_TEXT` says each in words, :func:`both_empty_scores` in numbers).

Example:
    >>> import numpy as np
    >>> t = np.zeros((4, 4), bool); t[:2, :2] = True
    >>> p = np.zeros((4, 4), bool); p[:3, 1:3] = True
    >>> s = seg_scores(p, t)
    >>> round(s["dice"], 3), round(s["iou"], 3)
    (0.4, 0.25)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medtl.utils.errors import ConfigError

__all__ = [
    "EMPTY_RULES",
    "EMPTY_RULE_TEXT",
    "both_empty_scores",
    "check_empty_rule",
    "hd95",
    "label_scores",
    "seg_scores",
]

EMPTY_RULES = ("one", "zero", "skip")

EMPTY_RULE_TEXT: dict[str, str] = {
    "one": (
        "An image whose prediction and ground truth are both empty counts as a perfect match "
        "(Dice = IoU = precision = recall = 1, HD95 = 0); if only one of them is empty, "
        "Dice = IoU = precision = recall = 0 and HD95 is undefined (NaN, left out of its mean)."
    ),
    "zero": (
        "An image whose prediction and ground truth are both empty counts as a miss "
        "(Dice = IoU = precision = recall = 0, HD95 undefined); if only one of them is empty, "
        "Dice = IoU = precision = recall = 0 and HD95 is undefined (NaN, left out of its mean)."
    ),
    "skip": (
        "An image whose prediction and ground truth are both empty is left out of every "
        "average (all its scores are NaN); if only one of them is empty, "
        "Dice = IoU = precision = recall = 0 and HD95 is undefined (NaN, left out of its mean)."
    ),
}

_NAN = float("nan")


def check_empty_rule(empty: str) -> None:
    """Raise :class:`ConfigError` unless ``empty`` is one of :data:`EMPTY_RULES`."""
    if empty not in EMPTY_RULES:
        raise ConfigError(
            f"unknown empty-mask rule {empty!r}; known rules: {', '.join(EMPTY_RULES)}"
        )


def both_empty_scores(empty: str) -> dict[str, float]:
    """The scores of an image whose prediction and ground truth are both empty.

    ``"one"``: a perfect match (1, and HD95 0); ``"zero"``: a miss (0, HD95 NaN);
    ``"skip"``: every score NaN, so averages leave the image out.
    """
    if empty == "one":
        return {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "hd95": 0.0}
    if empty == "zero":
        return {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "hd95": _NAN}
    return dict.fromkeys(("dice", "iou", "precision", "recall", "hd95"), _NAN)


def _boundary(mask: np.ndarray) -> np.ndarray:
    # border_value=0: mask pixels on the image edge belong to the boundary.
    return mask ^ ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: float = 1.0) -> float:
    """95th percentile of the symmetric boundary-to-boundary distances between two masks.

    The boundary of a mask is ``mask XOR binary_erosion(mask)`` (4-connected erosion,
    pixels on the image edge are boundary). The distances from every boundary pixel of
    ``pred`` to the nearest boundary pixel of ``truth`` and vice versa are pooled, and their
    95th percentile (linear interpolation, ``np.percentile``) is returned, in units of
    ``spacing`` (the pixel size, e.g. mm).

    Returns:
        The HD95; ``0.0`` when both masks are empty, NaN when exactly one is empty.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} != truth shape {truth.shape}")
    p_any, t_any = bool(pred.any()), bool(truth.any())
    if not p_any and not t_any:
        return 0.0
    if not p_any or not t_any:
        return _NAN
    bp, bt = _boundary(pred), _boundary(truth)
    # distance_transform_edt measures to the nearest zero, so invert the boundaries.
    dist_to_t = ndimage.distance_transform_edt(~bt, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~bp, sampling=spacing)
    dists = np.concatenate([dist_to_t[bp], dist_to_p[bt]])
    return float(np.percentile(dists, 95))


def seg_scores(
    pred: np.ndarray, truth: np.ndarray, empty: str = "one", spacing: float = 1.0
) -> dict[str, float]:
    """Dice, IoU, precision, recall and HD95 of one predicted mask against its ground truth.

    Args:
        pred: predicted mask (H, W); anything non-zero is foreground.
        truth: ground-truth mask (H, W), same shape.
        empty: rule for empty masks (see :data:`EMPTY_RULE_TEXT`):

            * ``"one"``: both empty -> dice = iou = precision = recall = 1, hd95 = 0.
            * ``"zero"``: both empty -> dice = iou = precision = recall = 0, hd95 = NaN.
            * ``"skip"``: both empty -> every score NaN, so
              :func:`medtl.metrics.statistics.aggregate` skips the image.

            Under every rule, exactly one empty mask gives dice = iou = precision =
            recall = 0 (zero division counts as 0) and hd95 = NaN.
        spacing: pixel size used for HD95 (isotropic).

    Returns:
        ``{"dice", "iou", "precision", "recall", "hd95"}`` as Python floats.

    Raises:
        ConfigError: unknown ``empty`` rule.
        ValueError: the shapes differ.
    """
    check_empty_rule(empty)
    pred = np.asarray(pred).astype(bool, copy=False)
    truth = np.asarray(truth).astype(bool, copy=False)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} != truth shape {truth.shape}")
    n_p, n_t = int(pred.sum()), int(truth.sum())
    if n_p == 0 and n_t == 0:
        return both_empty_scores(empty)
    tp = int(np.logical_and(pred, truth).sum())
    return {
        "dice": 2.0 * tp / (n_p + n_t),
        "iou": tp / (n_p + n_t - tp),
        "precision": tp / n_p if n_p else 0.0,
        "recall": tp / n_t if n_t else 0.0,
        "hd95": hd95(pred, truth, spacing) if (n_p and n_t) else _NAN,
    }


def label_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    names: Sequence[str],
    empty: str = "one",
    spacing: float = 1.0,
) -> dict[str, float]:
    """Scores of one predicted label map against its ground truth, per foreground label.

    ``pred`` and ``truth`` hold label indices (0 background, ``k`` = ``names[k - 1]``).
    Every label is scored as a binary mask by :func:`seg_scores` (so the empty-mask rule
    applies per label: a label absent from both is "both empty"). Returns
    ``<metric>_<name>`` for every label and metric, and ``<metric>`` = the mean over the
    labels whose score is defined (NaN left out; all NaN gives NaN).

    Example:
        >>> t = np.array([[0, 1], [2, 2]]); p = np.array([[0, 1], [2, 0]])
        >>> s = label_scores(p, t, ["a", "b"])
        >>> s["dice_a"], round(s["dice_b"], 3), round(s["dice"], 3)
        (1.0, 0.667, 0.833)
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {k: [] for k in ("dice", "iou", "precision", "recall", "hd95")}
    for k, name in enumerate(names, 1):
        scores = seg_scores(pred == k, truth == k, empty=empty, spacing=spacing)
        for metric, value in scores.items():
            out[f"{metric}_{name}"] = value
            per[metric].append(value)
    for metric, values in per.items():
        ok = [v for v in values if not np.isnan(v)]
        out[metric] = float(np.mean(ok)) if ok else _NAN
    return out
