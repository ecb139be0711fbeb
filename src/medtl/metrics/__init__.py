"""Evaluation metrics: exact per-image numpy/scipy scores and the statistics over them.

One definition per place, written in each module's docstring:

* :mod:`medtl.metrics.segmentation`: Dice, IoU, precision, recall and HD95 on boolean
  masks, with an explicit rule for empty masks (:data:`EMPTY_RULE_TEXT`).
* :mod:`medtl.metrics.classification`: accuracy, balanced accuracy, per-class
  precision/recall/F1, macro and weighted averages, one-vs-rest AUROC and the confusion
  matrix, plus a report formatted like scikit-learn's ``classification_report``;
  :mod:`medtl.metrics.diagnostic` (one-vs-rest sensitivity, specificity, PPV, NPV with
  Wilson CIs) and :mod:`medtl.metrics.calibration` (ECE, reliability bins, temperature
  scaling); :mod:`medtl.metrics.operating_point` (thresholds chosen by Youden's J or a
  target sensitivity/specificity, and the diagnostic numbers at a threshold).
* :mod:`medtl.metrics.surface` (HD95 ``pooled`` / ``max_directed`` and the mean surface
  distance, with anisotropic pixel spacing) and :mod:`medtl.metrics.lesions`
  (lesion-level detection from connected components, area error).
* :mod:`medtl.metrics.statistics`: BCa bootstrap CIs and summaries of per-image and
  per-fold scores, for evaluate, compare and the report alike.
* :mod:`medtl.metrics.paired`: paired tests (exact sign-flip permutation, Wilcoxon, and
  the bootstrap p only with >= 20 pairs) and the Holm correction.

The vectorised torch versions used inside the training loop live in
:mod:`medtl.training.metrics` and equal these definitions.

Example:
    >>> from medtl.metrics import aggregate, seg_scores
    >>> import numpy as np
    >>> t = np.zeros((4, 4), bool); t[:2, :2] = True
    >>> round(seg_scores(t, t)["dice"], 3), aggregate([1.0, 0.5])["mean"]
    (1.0, 0.75)
"""

from __future__ import annotations

from medtl.metrics.calibration import (
    ECE_BINS,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    softmax,
)
from medtl.metrics.classification import (
    auroc_binary,
    check_finite_output,
    classification_report_rows,
    classification_report_text,
    classification_scores,
    confusion_matrix,
    macro_f1,
    per_class_prf,
)
from medtl.metrics.diagnostic import (
    DIAGNOSTIC_KEYS,
    decision_lines,
    diagnostic_lines,
    one_vs_rest,
    proportion_ci,
)
from medtl.metrics.lesions import LESION_CRITERION, area_error, lesion_counts
from medtl.metrics.operating_point import at_threshold, choose_threshold
from medtl.metrics.paired import (
    holm,
    paired_bootstrap_pvalue,
    paired_test,
    sign_flip_pvalue,
    wilcoxon_pvalue,
)
from medtl.metrics.segmentation import (
    EMPTY_RULE_TEXT,
    EMPTY_RULES,
    both_empty_scores,
    check_empty_rule,
    hd95,
    seg_scores,
)
from medtl.metrics.statistics import (
    aggregate,
    bootstrap_ci,
    bootstrap_statistic_ci,
    fold_summary,
    resample_indices,
)
from medtl.metrics.surface import HD95_DEFINITIONS, hd95_distance, mean_surface_distance

__all__ = [
    "DIAGNOSTIC_KEYS",
    "HD95_DEFINITIONS",
    "LESION_CRITERION",
    "area_error",
    "at_threshold",
    "choose_threshold",
    "fit_temperature",
    "hd95_distance",
    "lesion_counts",
    "mean_surface_distance",
    "softmax",
    "ECE_BINS",
    "EMPTY_RULES",
    "EMPTY_RULE_TEXT",
    "aggregate",
    "auroc_binary",
    "both_empty_scores",
    "check_finite_output",
    "bootstrap_ci",
    "bootstrap_statistic_ci",
    "check_empty_rule",
    "classification_report_rows",
    "classification_report_text",
    "classification_scores",
    "confusion_matrix",
    "decision_lines",
    "diagnostic_lines",
    "expected_calibration_error",
    "fold_summary",
    "hd95",
    "holm",
    "macro_f1",
    "one_vs_rest",
    "paired_bootstrap_pvalue",
    "paired_test",
    "per_class_prf",
    "proportion_ci",
    "reliability_bins",
    "resample_indices",
    "seg_scores",
    "sign_flip_pvalue",
    "wilcoxon_pvalue",
]
