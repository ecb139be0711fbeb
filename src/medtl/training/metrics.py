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

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from medtl.metrics.segmentation import both_empty_scores, check_empty_rule

__all__ = [
    "LabelScores",
    "classification_metric_collection",
    "dice_per_image_torch",
    "iou_per_image_torch",
    "label_dice_iou_torch",
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


def label_dice_iou_torch(
    logits: torch.Tensor, target: torch.Tensor, empty: str = "one", multilabel: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU of every image and foreground label, ``(N, C)`` each, for ``C + 1``
    softmax channels: the predicted label is the argmax, the target holds label indices;
    the empty-mask rule applies per label (NaN for ``"skip"``). Equals
    :func:`medtl.metrics.segmentation.label_scores` per label. ``multilabel``: ``C``
    sigmoid channels (a structure is predicted where its sigmoid > 0.5), the target holds
    structure ``k`` in bit ``k``.

    Example:
        >>> logits = torch.tensor([[[[9.0, 0.0]], [[0.0, 9.0]], [[0.0, 0.0]]]])  # (1,3,1,2)
        >>> dice, iou = label_dice_iou_torch(logits, torch.tensor([[[[0.0, 1.0]]]]))
        >>> dice.tolist()  # label 1 found, label 2 absent from both: the rule "one"
        [[1.0, 1.0]]
    """
    check_empty_rule(empty)
    if multilabel:  # one sigmoid per structure, target bit k = structure k
        p = (torch.sigmoid(logits.detach().float()) > 0.5).flatten(2)
        shifts = torch.arange(logits.shape[1], device=p.device)[None, :, None]
        t = ((target.detach()[:, :1].long().flatten(2) >> shifts) & 1) > 0
    else:
        k = logits.shape[1]
        pred = logits.detach().argmax(1).flatten(1)
        truth = target.detach()[:, 0].long().flatten(1)
        labels = torch.arange(1, k, device=pred.device)[None, :, None]
        p, t = pred[:, None] == labels, truth[:, None] == labels  # (N, C, P)
    tp = (p & t).sum(2).float()
    n_p, n_t = p.sum(2).float(), t.sum(2).float()
    den, union = n_p + n_t, n_p + n_t - tp
    dice = _apply_empty(2 * tp / den.clamp_min(1), den == 0, empty, "dice")
    iou = _apply_empty(tp / union.clamp_min(1), union == 0, empty, "iou")
    return dice, iou


class LabelScores(Metric):
    """Validation Dice and IoU per foreground label (mean over images, NaN left out) and their
    mean over labels (``dice``, ``iou``: the monitored ``val_dice``). Sums and counts are
    ``sum`` states: exact under DDP (no mean of means over ranks)."""

    full_state_update = False

    def __init__(self, names: Sequence[str], empty: str = "one", multilabel: bool = False) -> None:
        super().__init__()
        self.names, self.empty, self.multilabel = list(names), empty, multilabel
        for key in ("dice_sum", "dice_n", "iou_sum", "iou_n"):
            self.add_state(
                key, default=torch.zeros(len(self.names), dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        dice, iou = label_dice_iou_torch(logits, target, self.empty, self.multilabel)
        for name, v in (("dice", dice.double()), ("iou", iou.double())):
            ok = ~torch.isnan(v)
            getattr(self, f"{name}_sum").add_(torch.where(ok, v, 0).sum(0).to(self.dice_sum))
            getattr(self, f"{name}_n").add_(ok.sum(0).to(self.dice_sum))

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"dice", "iou", "dice_<name>", "iou_<name>"}`` as float32 scalars."""
        out: dict[str, torch.Tensor] = {}
        for metric in ("dice", "iou"):
            total, n = getattr(self, f"{metric}_sum"), getattr(self, f"{metric}_n")
            per = torch.where(n > 0, total / n.clamp_min(1), torch.nan)
            for name, v in zip(self.names, per, strict=True):
                out[f"{metric}_{name}"] = v.float()
            out[metric] = (
                per[~torch.isnan(per)].mean().float()
                if (~torch.isnan(per)).any()
                else torch.tensor(float("nan"))
            )
        return out
