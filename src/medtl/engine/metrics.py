"""In-loop torch metrics: Dice/IoU per image on a batch, and the classification collection.

:func:`dice_per_image_torch` and :func:`iou_per_image_torch` compute the Dice and IoU of
:mod:`medtl.metrics.segmentation` vectorised on a batch, without gradient, so the
LightningModule can average them with ``torchmetrics.MeanMetric(nan_strategy="ignore")``;
they follow the same empty-mask rule (:data:`medtl.metrics.EMPTY_RULE_TEXT`).
The exact per-image scores and every statistic live in :mod:`medtl.metrics`.

Example:
    >>> import torch
    >>> logits = torch.tensor([[[[5.0, -5.0], [-5.0, -5.0]]]])
    >>> target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    >>> round(float(dice_per_image_torch(logits, target)[0]), 3)
    0.667
"""

from __future__ import annotations

from typing import Any

import torch

from medtl.metrics.segmentation import both_empty_scores, check_empty_rule

__all__ = [
    "classification_metric_collection",
    "dice_per_image_torch",
    "iou_per_image_torch",
]


def _overlap_counts(
    logits: torch.Tensor, target: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} != target {tuple(target.shape)}")
    pred = (torch.sigmoid(logits.detach()) > threshold).flatten(1)
    truth = (target.detach() > 0.5).flatten(1)
    tp = (pred & truth).sum(1).float()
    return tp, pred.sum(1).float(), truth.sum(1).float()


def _apply_empty(
    score: torch.Tensor, both_empty: torch.Tensor, empty: str, metric: str
) -> torch.Tensor:
    fill = both_empty_scores(empty)[metric]
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
        empty: empty-mask rule as in :func:`medtl.metrics.seg_scores` (``"skip"`` gives NaN).

    Returns:
        (N,) float tensor on the input's device; equals ``seg_scores(...)["dice"]``.
    """
    check_empty_rule(empty)
    tp, n_p, n_t = _overlap_counts(logits, target, threshold)
    den = n_p + n_t
    score = 2 * tp / den.clamp_min(1)
    return _apply_empty(score, den == 0, empty, "dice")


def iou_per_image_torch(
    logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, empty: str = "one"
) -> torch.Tensor:
    """IoU of every image in a batch, vectorised; see :func:`dice_per_image_torch`.

    Returns:
        (N,) float tensor; equals ``seg_scores(...)["iou"]``.
    """
    check_empty_rule(empty)
    tp, n_p, n_t = _overlap_counts(logits, target, threshold)
    union = n_p + n_t - tp
    score = tp / union.clamp_min(1)
    return _apply_empty(score, union == 0, empty, "iou")


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
