"""Evaluation metrics: exact per-image numpy/scipy scores, statistics, and torch helpers.

Three groups live here:

* **Segmentation, per image** (:func:`seg_scores`): Dice, IoU, precision, recall and
  HD95 on boolean masks, with an explicit rule for empty masks (:data:`EMPTY_RULE_TEXT`).
* **Classification** (:func:`classification_scores`): accuracy, balanced accuracy,
  per-class precision/recall/F1/support, macro and weighted averages, one-vs-rest AUROC
  (rank formula, ties averaged) and the confusion matrix, plus a report formatted like
  scikit-learn's ``classification_report`` (scikit-learn is not a dependency).
* **Statistics** (:func:`aggregate`, :func:`bootstrap_ci`, :func:`paired_bootstrap_pvalue`,
  :func:`wilcoxon_pvalue`) for summaries and comparison tables; NaN values are ignored
  (NaN pairs dropped), which is how the ``"skip"`` empty rule removes images.

Training-time helpers (:func:`dice_per_image_torch`, :func:`iou_per_image_torch`) compute
the same Dice/IoU vectorised on a batch so the LightningModule can average them with
``torchmetrics.MeanMetric(nan_strategy="ignore")``.

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
from typing import Any

import numpy as np
import torch
from scipy import ndimage, stats

from medtl.errors import ConfigError

__all__ = [
    "EMPTY_RULES",
    "EMPTY_RULE_TEXT",
    "aggregate",
    "auroc_binary",
    "bootstrap_ci",
    "classification_metric_collection",
    "classification_report_rows",
    "classification_report_text",
    "classification_scores",
    "dice_per_image_torch",
    "hd95",
    "iou_per_image_torch",
    "paired_bootstrap_pvalue",
    "seg_scores",
    "wilcoxon_pvalue",
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


def _check_rule(empty: str) -> None:
    if empty not in EMPTY_RULES:
        raise ConfigError(
            f"unknown empty-mask rule {empty!r}; known rules: {', '.join(EMPTY_RULES)}"
        )


def _both_empty_scores(empty: str) -> dict[str, float]:
    if empty == "one":
        return {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "hd95": 0.0}
    if empty == "zero":
        return {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0, "hd95": _NAN}
    return dict.fromkeys(("dice", "iou", "precision", "recall", "hd95"), _NAN)


# --------------------------------------------------------------------------- segmentation


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
            * ``"skip"``: both empty -> every score NaN, so :func:`aggregate` skips the image.

            Under every rule, exactly one empty mask gives dice = iou = precision =
            recall = 0 (zero division counts as 0) and hd95 = NaN.
        spacing: pixel size used for HD95 (isotropic).

    Returns:
        ``{"dice", "iou", "precision", "recall", "hd95"}`` as Python floats.

    Raises:
        ConfigError: unknown ``empty`` rule.
        ValueError: the shapes differ.
    """
    _check_rule(empty)
    pred = np.asarray(pred).astype(bool, copy=False)
    truth = np.asarray(truth).astype(bool, copy=False)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} != truth shape {truth.shape}")
    n_p, n_t = int(pred.sum()), int(truth.sum())
    if n_p == 0 and n_t == 0:
        return _both_empty_scores(empty)
    tp = int(np.logical_and(pred, truth).sum())
    return {
        "dice": 2.0 * tp / (n_p + n_t),
        "iou": tp / (n_p + n_t - tp),
        "precision": tp / n_p if n_p else 0.0,
        "recall": tp / n_t if n_t else 0.0,
        "hd95": hd95(pred, truth, spacing) if (n_p and n_t) else _NAN,
    }


# ----------------------------------------------------------------------------- statistics


def _finite_1d(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[~np.isnan(v)]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (NaN values ignored).

    Draws ``n_boot`` resamples with replacement (``np.random.default_rng(seed)``), takes
    their means and returns the ``alpha/2`` and ``1 - alpha/2`` quantiles. Deterministic
    for a given seed.

    Returns:
        ``(low, high)``; ``(v, v)`` for a single value, ``(nan, nan)`` for none.
    """
    v = _finite_1d(values)
    n = v.size
    if n == 0:
        return (_NAN, _NAN)
    if n == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Chunks keep the (resamples x n) index array around a few MB for large test sets.
    chunk = max(1, 1_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = v[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def aggregate(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
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


def _paired_diffs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired inputs differ in length: {a.size} != {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep] - b[keep]


def paired_bootstrap_pvalue(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 5000,
    seed: int = 0,
) -> float:
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
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 1_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means = centred[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
        # Tolerance so that resamples equal to the observed mean up to rounding still count.
        hits += int(np.sum(np.abs(means) >= observed - 1e-12))
    return (1 + hits) / (n_boot + 1)


def wilcoxon_pvalue(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
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


# ------------------------------------------------------------------------- classification


def auroc_binary(y_pos: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank (Mann-Whitney U) formula, ties averaged.

    ``AUROC = (sum of ranks of positives - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with
    average ranks for tied scores, i.e. a tied positive/negative pair counts 1/2.

    Returns:
        The AUROC, NaN when there are no positives or no negatives.
    """
    y_pos = np.asarray(y_pos, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=float).ravel()
    n_pos = int(y_pos.sum())
    n_neg = int(y_pos.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return _NAN
    ranks = stats.rankdata(scores)  # "average" method handles ties
    u = float(ranks[y_pos].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def _div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def classification_scores(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: list[str],
) -> dict[str, Any]:
    """Classification metrics from true labels and predicted class probabilities.

    The predicted label is ``argmax(probs, axis=1)``. Zero divisions count as 0.0 (like
    scikit-learn's ``zero_division=0``). Macro averages are taken over **all** classes in
    ``classes`` (like scikit-learn with ``labels=range(C)``), weighted averages by support;
    balanced accuracy is the mean recall over classes present in ``y_true`` (like
    ``balanced_accuracy_score``). AUROC is one-vs-rest per class on ``probs[:, c]``; NaN
    for a class absent from ``y_true`` (or present in every sample), and ``auroc_macro``
    averages the defined ones. For two classes, ``probs`` may also be (N,) = P(class 1).

    Args:
        y_true: integer labels (N,) in ``[0, C)``.
        probs: class probabilities (or any scores) (N, C).
        classes: the C class names, in label order.

    Returns:
        A JSON-friendly dict (NaN floats aside)::

            {"classes", "n", "accuracy", "balanced_accuracy",
             "per_class": {name: {"precision", "recall", "f1", "support", "auroc"}},
             "macro_avg": {"precision", "recall", "f1"},
             "weighted_avg": {"precision", "recall", "f1"},
             "auroc_macro", "auroc_weighted",
             "confusion_matrix": [[int]]}   # rows = true, columns = predicted

    Raises:
        ValueError: inconsistent shapes or labels out of range.
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(probs, dtype=float)
    c = len(classes)
    if p.ndim == 1 and c == 2:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] != c or p.shape[0] != y.size:
        raise ValueError(
            f"probs must be (N, C) = ({y.size}, {c}) for {c} classes; got {tuple(p.shape)}"
        )
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= c):
        raise ValueError(f"y_true must hold integer labels in [0, {c}); got {np.unique(y)}")
    y = y.astype(np.int64)
    y_pred = p.argmax(axis=1) if y.size else np.zeros(0, np.int64)

    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (y, y_pred), 1)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)

    per_class: dict[str, dict[str, Any]] = {}
    prec, rec, f1, auc = (np.zeros(c) for _ in range(4))
    for i, name in enumerate(classes):
        prec[i] = _div(tp[i], predicted[i])
        rec[i] = _div(tp[i], support[i])
        f1[i] = _div(2 * prec[i] * rec[i], prec[i] + rec[i])
        auc[i] = auroc_binary(y == i, p[:, i])
        per_class[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "auroc": float(auc[i]),
        }

    n = int(y.size)
    present = support > 0
    defined = ~np.isnan(auc)
    w = support / n if n else np.zeros(c)
    return {
        "classes": list(classes),
        "n": n,
        "accuracy": _div(tp.sum(), n),
        "balanced_accuracy": float(rec[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "macro_avg": {
            "precision": float(prec.mean()),
            "recall": float(rec.mean()),
            "f1": float(f1.mean()),
        },
        "weighted_avg": {
            "precision": float((prec * w).sum()),
            "recall": float((rec * w).sum()),
            "f1": float((f1 * w).sum()),
        },
        "auroc_macro": float(auc[defined].mean()) if defined.any() else _NAN,
        "auroc_weighted": (
            _div((auc[defined] * support[defined]).sum(), support[defined].sum())
            if defined.any()
            else _NAN
        ),
        "confusion_matrix": cm.tolist(),
    }


def classification_report_text(scores: dict[str, Any], classes: list[str], digits: int = 2) -> str:
    """Text report in the layout of scikit-learn's ``classification_report``.

    Columns precision, recall, f1-score, support; one row per class, then accuracy,
    macro avg and weighted avg.

    Args:
        scores: output of :func:`classification_scores`.
        classes: class names (rows, in this order).
        digits: decimals of the floats.
    """
    headers = ["precision", "recall", "f1-score", "support"]
    width = max([len(n) for n in classes] + [len("weighted avg"), digits])
    head_fmt = "{:>{width}s} " + " {:>9}" * len(headers)
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    out = head_fmt.format("", *headers, width=width) + "\n\n"
    for name in classes:
        r = scores["per_class"][name]
        out += row_fmt.format(
            name, r["precision"], r["recall"], r["f1"], r["support"], width=width, digits=digits
        )
    out += "\n"
    acc_fmt = "{:>{width}s} " + " {:>9}" * 2 + " {:>9.{digits}f}" + " {:>9}\n"
    out += acc_fmt.format(
        "accuracy", "", "", scores["accuracy"], scores["n"], width=width, digits=digits
    )
    for label, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
        a = scores[key]
        out += row_fmt.format(
            label, a["precision"], a["recall"], a["f1"], scores["n"], width=width, digits=digits
        )
    return out


def classification_report_rows(scores: dict[str, Any], classes: list[str]) -> list[dict[str, Any]]:
    """The report as rows for ``csv.DictWriter``.

    Keys ``class, precision, recall, f1, support, auroc``; rows per class, then
    ``accuracy`` (its value in ``f1``, like the text report), ``macro avg`` and
    ``weighted avg``. Cells that do not apply are ``None`` (written as empty).
    """
    rows: list[dict[str, Any]] = []
    for name in classes:
        r = scores["per_class"][name]
        rows.append(
            {
                "class": name,
                "precision": r["precision"],
                "recall": r["recall"],
                "f1": r["f1"],
                "support": r["support"],
                "auroc": r["auroc"],
            }
        )
    rows.append(
        {
            "class": "accuracy",
            "precision": None,
            "recall": None,
            "f1": scores["accuracy"],
            "support": scores["n"],
            "auroc": None,
        }
    )
    for label, key, auc_key in (
        ("macro avg", "macro_avg", "auroc_macro"),
        ("weighted avg", "weighted_avg", "auroc_weighted"),
    ):
        a = scores[key]
        rows.append({"class": label, **a, "support": scores["n"], "auroc": scores.get(auc_key)})
    return rows


# ------------------------------------------------------------------------- torch helpers


def _overlap_counts(
    logits: torch.Tensor, target: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} != target {tuple(target.shape)}")
    pred = (torch.sigmoid(logits.detach()) > threshold).flatten(1)
    truth = (target.detach() > 0.5).flatten(1)
    tp = (pred & truth).sum(1).float()
    return tp, pred.sum(1).float(), truth.sum(1).float()


def _apply_empty(score: torch.Tensor, both_empty: torch.Tensor, empty: str) -> torch.Tensor:
    fill = {"one": 1.0, "zero": 0.0, "skip": _NAN}[empty]
    return torch.where(both_empty, torch.full_like(score, fill), score)


def dice_per_image_torch(
    logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, empty: str = "one"
) -> torch.Tensor:
    """Dice of every image in a batch, vectorised, without gradient.

    A pixel is predicted foreground when ``sigmoid(logit) > threshold``; the target is
    foreground where ``target > 0.5``. All non-batch dimensions are pooled per image.

    Args:
        logits: raw model outputs (N, 1, H, W).
        target: ground truth (N, 1, H, W), float 0/1.
        threshold: probability threshold.
        empty: empty-mask rule as in :func:`seg_scores` (``"skip"`` gives NaN).

    Returns:
        (N,) float tensor on the input's device; equals ``seg_scores(...)["dice"]``.
    """
    _check_rule(empty)
    tp, n_p, n_t = _overlap_counts(logits, target, threshold)
    den = n_p + n_t
    score = 2 * tp / den.clamp_min(1)
    return _apply_empty(score, den == 0, empty)


def iou_per_image_torch(
    logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, empty: str = "one"
) -> torch.Tensor:
    """IoU of every image in a batch, vectorised; see :func:`dice_per_image_torch`.

    Returns:
        (N,) float tensor; equals ``seg_scores(...)["iou"]``.
    """
    _check_rule(empty)
    tp, n_p, n_t = _overlap_counts(logits, target, threshold)
    union = n_p + n_t - tp
    score = tp / union.clamp_min(1)
    return _apply_empty(score, union == 0, empty)


def classification_metric_collection(num_classes: int, prefix: str = "") -> Any:
    """torchmetrics collection for in-training classification logging.

    Holds ``acc`` (micro accuracy) and ``auroc`` (macro one-vs-rest) for multiclass
    probabilities (N, C) and integer targets (N,); works for ``num_classes == 2`` too.

    Returns:
        A ``torchmetrics.MetricCollection`` whose keys are ``prefix + "acc"`` and
        ``prefix + "auroc"``.
    """
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "auroc": MulticlassAUROC(num_classes=num_classes, average="macro"),
        },
        prefix=prefix,
    )
