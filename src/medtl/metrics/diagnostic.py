"""One-vs-rest diagnostic accuracy per class: sensitivity, specificity, PPV and NPV with CIs.

For class ``c`` of a confusion matrix (rows true, columns predicted), the images of class
``c`` are the positives and every other image a negative; at the argmax decision:

* sensitivity = ``TP / (TP + FN)`` (recall), specificity = ``TN / (TN + FP)``,
* PPV = ``TP / (TP + FP)`` (precision), NPV = ``TN / (TN + FN)``.

Each is a proportion ``k / n``; its 95% CI is the Wilson score interval
(``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``). A proportion has a
closed-form interval, and Wilson keeps its coverage near 95% at small ``n`` and at 0% or
100%, where a bootstrap of a 100% sensitivity collapses to the point [1, 1]. A proportion
with ``n = 0`` (e.g. PPV of a class never predicted) is NaN with a NaN interval.

Example:
    >>> import numpy as np
    >>> d = one_vs_rest(np.array([[8, 2], [1, 9]]))[1]
    >>> d["sensitivity"], d["specificity"], round(d["ppv"], 3)
    (0.9, 0.8, 0.818)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "DIAGNOSTIC_KEYS",
    "decision_lines",
    "diagnostic_lines",
    "one_vs_rest",
    "proportion_ci",
]

DIAGNOSTIC_KEYS = ("sensitivity", "specificity", "ppv", "npv")
_NAN = float("nan")


def proportion_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n``; ``(nan, nan)`` when ``n == 0``."""
    if n <= 0:
        return (_NAN, _NAN)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(1 - alpha, method="wilson")
    return (float(ci.low), float(ci.high))


def one_vs_rest(cm: np.ndarray) -> list[dict[str, Any]]:
    """Sensitivity, specificity, PPV, NPV (and ``<key>_ci`` Wilson intervals) per class.

    Args:
        cm: confusion matrix (C, C), rows = true class, columns = predicted class.

    Returns:
        One dict per class: ``{"tp", "fp", "fn", "tn", "sensitivity", "sensitivity_ci",
        "specificity", "specificity_ci", "ppv", "ppv_ci", "npv", "npv_ci"}`` (CIs as
        ``[low, high]`` lists).
    """
    cm = np.asarray(cm, dtype=np.int64)
    total = int(cm.sum())
    out = []
    for c in range(cm.shape[0]):
        tp = int(cm[c, c])
        fn = int(cm[c].sum()) - tp
        fp = int(cm[:, c].sum()) - tp
        tn = total - tp - fn - fp
        row: dict[str, Any] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
        for key, k, n in (
            ("sensitivity", tp, tp + fn),
            ("specificity", tn, tn + fp),
            ("ppv", tp, tp + fp),
            ("npv", tn, tn + fn),
        ):
            row[key] = k / n if n else _NAN
            row[f"{key}_ci"] = list(proportion_ci(k, n))
        out.append(row)
    return out


def _pct(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.3f}"


def diagnostic_lines(scores: dict[str, Any]) -> list[str]:
    """Console lines: per class (one-vs-rest) sensitivity/specificity/PPV/NPV with CIs.

    Args:
        scores: the dict of :func:`medtl.metrics.classification_scores`.
    """
    lines = []
    width = max(len(n) for n in scores["classes"])
    for name in scores["classes"]:
        r = scores["per_class"][name]
        cells = [
            f"{label} {_pct(r[key])} [{_pct(r[key + '_ci'][0])}, {_pct(r[key + '_ci'][1])}]"
            for key, label in zip(DIAGNOSTIC_KEYS, ("sens", "spec", "PPV", "NPV"), strict=True)
        ]
        lines.append(f"  {name:{width}s}  " + "  ".join(cells))
    if "ece" in scores:
        lines.append(f"  ECE {_pct(scores['ece'])} ({scores['ece_bins']} equal-width bins)")
    return lines


def _f(v: Any) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


def decision_lines(summary: dict[str, Any]) -> list[str]:
    """Console lines: ECE before/after temperature scaling and the operating-point table."""
    lines = []
    cal = summary.get("calibration")
    if cal:
        v, s = cal["val"], cal["split"]
        how = "fitted on val, min NLL" if cal.get("kept", True) else cal.get("reason", "")
        lines.append(f"  temperature scaling T = {cal['temperature']:.4f} ({how}):")
        lines.append(
            f"    ECE val {_f(v['ece_before'])} -> {_f(v['ece_after'])}  "
            f"{summary.get('split', 'this split')} {_f(s['ece_before'])} -> {_f(s['ece_after'])}"
            f"  ({cal['ece_bins']} bins; NLL val {_f(v['nll_before'])} -> {_f(v['nll_after'])})"
        )
    op = summary.get("operating_points")
    if op:
        lines.append(
            f"  operating point ({op['name']}, chosen on val; positive if p >= threshold):"
        )
        for c, r in op["per_class"].items():
            cells = "  ".join(
                f"{k} {_f(r[key])} [{_f(r[key + '_ci'][0])}, {_f(r[key + '_ci'][1])}]"
                for key, k in (
                    ("sensitivity", "sens"),
                    ("specificity", "spec"),
                    ("ppv", "PPV"),
                    ("npv", "NPV"),
                )
            )
            lines.append(f"    {c}  threshold {r['threshold']:.4f}  {cells}")
    return lines
