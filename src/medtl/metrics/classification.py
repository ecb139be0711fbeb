"""Classification metrics from true labels and predicted class probabilities.

Definitions (``TP``, ``FP``, ``FN`` per class from the confusion matrix; a zero division
counts as 0, like scikit-learn's ``zero_division=0``):

* precision = ``TP / (TP + FP)``, recall = ``TP / (TP + FN)``,
  F1 = ``2 TP / (2 TP + FP + FN)`` (:func:`per_class_prf`);
  macro averages over **all** classes (:func:`macro_f1`), weighted ones by support.
* accuracy = correct / N; balanced accuracy = mean recall over the classes present.
* AUROC (:func:`auroc_binary`): one-vs-rest, by the rank (Mann-Whitney U) formula with
  ties averaged.
* one-vs-rest sensitivity, specificity, PPV, NPV with Wilson CIs
  (:mod:`medtl.metrics.diagnostic`) and the top-label expected calibration error
  (:mod:`medtl.metrics.calibration`).
* NaN or Inf probabilities are an error (:func:`check_finite_output` names the image).

:func:`classification_report_text` formats them like scikit-learn's
``classification_report`` (scikit-learn is not a dependency).

Example:
    >>> import numpy as np
    >>> s = classification_scores([0, 1, 1], np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]), ["a", "b"])
    >>> s["accuracy"], s["confusion_matrix"]
    (0.6666666666666666, [[1, 0], [1, 1]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from medtl.metrics.calibration import ECE_BINS, expected_calibration_error
from medtl.metrics.diagnostic import one_vs_rest
from medtl.utils.errors import MedtlError

__all__ = [
    "auroc_binary",
    "check_finite_output",
    "classification_report_rows",
    "classification_report_text",
    "classification_scores",
    "confusion_matrix",
    "macro_auroc",
    "macro_f1",
    "per_class_prf",
]

_NAN = float("nan")


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


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (C, C) of integer labels: rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of every class of a confusion matrix (zero division -> 0).

    F1 = ``2 TP / (2 TP + FP + FN)``, one division of counts: the harmonic mean
    ``2 P R / (P + R)`` equals it in exact arithmetic but can round differently in the last
    bit (F1 0.7499999999999999 instead of 0.75, printed 0.37 instead of 0.38 with two
    digits). scikit-learn computes it from counts too.
    """
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    c = cm.shape[0]
    prec, rec = np.zeros(c), np.zeros(c)
    for i in range(c):
        prec[i] = _div(tp[i], predicted[i])
        rec[i] = _div(tp[i], support[i])
    denom = support + predicted  # 2 TP + FP + FN
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(c), where=denom > 0)
    return prec, rec, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 (:func:`per_class_prf`) over all ``n_classes``.

    A class absent from both truth and prediction counts with F1 = 0 (like scikit-learn
    with ``labels=range(C)``). Equals ``classification_scores(...)["macro_avg"]["f1"]``
    for the argmax predictions, bit for bit; training monitors the same function.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    return float(per_class_prf(cm)[2].mean())


def check_finite_output(values: np.ndarray, image: str, what: str = "class probabilities") -> None:
    """Raise :class:`MedtlError` naming ``image`` when ``values`` hold NaN or Inf.

    ``np.argmax`` takes NaN as the maximum and a threshold treats it as background, so a
    model that outputs NaN would otherwise score silently (accuracy 1.0, empty masks).
    """
    v = np.asarray(values)
    if not np.all(np.isfinite(v)):
        bad = "NaN" if np.isnan(v).any() else "Inf"
        raise MedtlError(
            f"the model output {bad} {what} for {image}; the weights or the input are broken "
            "(retrain, or check the image)"
        )


def _checked(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, c: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 (N,) and probabilities as (N, C), or ValueError."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1 and c == 2:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] != c or p.shape[0] != y.size:
        raise ValueError(
            f"probs must be (N, C) = ({y.size}, {c}) for {c} classes; got {tuple(p.shape)}"
        )
    bad_rows = np.flatnonzero(~np.isfinite(p).all(axis=1))
    if bad_rows.size:
        raise ValueError(f"probs hold NaN or Inf in row(s) {bad_rows[:5].tolist()}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= c):
        raise ValueError(f"y_true must hold integer labels in [0, {c}); got {np.unique(y)}")
    return y.astype(np.int64), p


def _averages(
    prec: np.ndarray, rec: np.ndarray, f1: np.ndarray, support: np.ndarray, n: int
) -> dict[str, dict[str, float]]:
    w = support / n if n else np.zeros(len(support))
    return {
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
    }


def _per_class_auroc(y: np.ndarray, p: np.ndarray, c: int) -> np.ndarray:
    """One-vs-rest :func:`auroc_binary` of each of the ``c`` classes (NaN where undefined)."""
    return np.array([auroc_binary(y == i, p[:, i]) for i in range(c)], dtype=float)


def macro_auroc(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, n_classes: int) -> float:
    """``classification_scores(...)["auroc_macro"]`` alone: the mean one-vs-rest AUROC over
    the classes where it is defined (NaN if none is), without the per-class CIs and ECE that
    make the full scores too slow as a bootstrap statistic (``compare.collect``)."""
    y, p = _checked(y_true, probs, n_classes)
    auc = _per_class_auroc(y, p, n_classes)
    return _auroc_averages(auc, np.bincount(y, minlength=n_classes))["auroc_macro"]


def _auroc_averages(auc: np.ndarray, support: np.ndarray) -> dict[str, float]:
    defined = ~np.isnan(auc)
    if not defined.any():
        return {"auroc_macro": _NAN, "auroc_weighted": _NAN}
    return {
        "auroc_macro": float(auc[defined].mean()),
        "auroc_weighted": _div((auc[defined] * support[defined]).sum(), support[defined].sum()),
    }


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
             "per_class": {name: {"precision", "recall", "f1", "support", "auroc",
                                  "sensitivity", "specificity", "ppv", "npv",
                                  "<each of those four>_ci": [low, high]}},
             "macro_avg": {"precision", "recall", "f1"},
             "weighted_avg": {"precision", "recall", "f1"},
             "auroc_macro", "auroc_weighted",
             "confusion_matrix": [[int]],   # rows = true, columns = predicted
             "ece", "ece_bins"}

    Raises:
        ValueError: inconsistent shapes, labels out of range, NaN or Inf probabilities.
    """
    c = len(classes)
    y, p = _checked(y_true, probs, c)
    y_pred = p.argmax(axis=1) if y.size else np.zeros(0, np.int64)
    cm = confusion_matrix(y, y_pred, c)
    support = cm.sum(axis=1)
    prec, rec, f1 = per_class_prf(cm)
    auc = _per_class_auroc(y, p, c)
    diag = one_vs_rest(cm)
    per_class = {
        name: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "auroc": float(auc[i]),
            **{k: v for k, v in diag[i].items() if k not in ("tp", "fp", "fn", "tn")},
        }
        for i, name in enumerate(classes)
    }
    out = _summary(classes, cm, per_class, (prec, rec, f1), auc)
    out["ece"] = expected_calibration_error(y, p) if y.size else _NAN
    out["ece_bins"] = ECE_BINS
    return out


def _summary(
    classes: list[str],
    cm: np.ndarray,
    per_class: dict[str, dict[str, Any]],
    prf: tuple[np.ndarray, np.ndarray, np.ndarray],
    auc: np.ndarray,
) -> dict[str, Any]:
    """The :func:`classification_scores` dict from its per-class parts."""
    prec, rec, f1 = prf
    support = cm.sum(axis=1)
    n = int(cm.sum())
    present = support > 0
    return {
        "classes": list(classes),
        "n": n,
        "accuracy": _div(np.diag(cm).sum(), n),
        "balanced_accuracy": float(rec[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        **_averages(prec, rec, f1, support, n),
        **_auroc_averages(auc, support),
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
