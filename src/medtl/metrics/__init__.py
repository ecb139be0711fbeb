"""Evaluation metrics: exact per-image numpy/scipy scores and the statistics over them.

One definition per place, written in each module's docstring:

* :mod:`medtl.metrics.segmentation`: Dice, IoU, precision, recall and HD95 on boolean
  masks, with an explicit rule for empty masks (:data:`EMPTY_RULE_TEXT`).
* :mod:`medtl.metrics.classification`: accuracy, balanced accuracy, per-class
  precision/recall/F1, macro and weighted averages, one-vs-rest AUROC and the confusion
  matrix, plus a report formatted like scikit-learn's ``classification_report``.
* :mod:`medtl.metrics.statistics`: bootstrap CIs, summaries of per-image and per-fold
  scores and paired tests, for evaluate, compare and the report alike.

The vectorised torch versions used inside the training loop live in
:mod:`medtl.engine.metrics` and equal these definitions.

Example:
    >>> from medtl.metrics import aggregate, seg_scores
    >>> import numpy as np
    >>> t = np.zeros((4, 4), bool); t[:2, :2] = True
    >>> round(seg_scores(t, t)["dice"], 3), aggregate([1.0, 0.5])["mean"]
    (1.0, 0.75)
"""

from __future__ import annotations

from medtl.metrics.classification import (
    auroc_binary,
    classification_report_rows,
    classification_report_text,
    classification_scores,
    confusion_matrix,
    macro_f1,
    per_class_prf,
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
    paired_bootstrap_pvalue,
    paired_test,
    resample_indices,
    wilcoxon_pvalue,
)

__all__ = [
    "EMPTY_RULES",
    "EMPTY_RULE_TEXT",
    "aggregate",
    "auroc_binary",
    "both_empty_scores",
    "bootstrap_ci",
    "bootstrap_statistic_ci",
    "check_empty_rule",
    "classification_report_rows",
    "classification_report_text",
    "classification_scores",
    "confusion_matrix",
    "fold_summary",
    "hd95",
    "macro_f1",
    "paired_bootstrap_pvalue",
    "paired_test",
    "per_class_prf",
    "resample_indices",
    "seg_scores",
    "wilcoxon_pvalue",
]
