"""Loss registry: segmentation (bce, dice, dice_bce, focal) and classification (ce, focal).

Segmentation losses take logits ``(N, 1, H, W)`` and float targets in {0, 1}; the soft Dice
is computed per image and averaged, with a smoothing term so that an empty mask predicted
empty costs ~0 (normal images in multitask training).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

SMOOTH = 1.0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per image (smoothed), averaged over the batch."""
    prob = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (prob * t).sum(1)
    denom = prob.sum(1) + t.sum(1)
    return (1.0 - (2.0 * inter + SMOOTH) / (denom + SMOOTH)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target)


def binary_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> torch.Tensor:
    """Focal loss (Lin et al.) on pixels, mean over pixels."""
    from torchvision.ops import sigmoid_focal_loss

    return sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="mean")


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return soft_dice_loss(logits, target) + bce_loss(logits, target)


SEG_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bce": bce_loss,
    "dice": soft_dice_loss,
    "dice_bce": dice_bce_loss,
    "focal": binary_focal_loss,
}


class FocalCE(nn.Module):
    """Multi-class focal loss: CE weighted by (1 - p_true)^gamma, with optional class weights."""

    def __init__(
        self, weight: torch.Tensor | None = None, gamma: float = 2.0, label_smoothing: float = 0.0
    ):
        super().__init__()
        self.register_buffer("weight", weight if weight is not None else None)
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        p_true = torch.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
        return ((1 - p_true) ** self.gamma * ce).mean()


def make_cls_loss(name: str, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    """``ce`` or ``focal`` classification loss with optional class weights."""
    if name == "focal":
        return FocalCE(weight, label_smoothing=label_smoothing)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def balanced_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """``n / (C * count_c)`` per class (sklearn's 'balanced'); absent classes get weight 0."""
    counts = counts.float()
    w = counts.sum() / (len(counts) * counts.clamp(min=1))
    return torch.where(counts > 0, w, torch.zeros_like(w))


def image_losses(
    out: dict[str, torch.Tensor],
    mask: torch.Tensor,
    label: torch.Tensor,
    seg_loss: str,
    cls_loss: str,
    weights: tuple[float, float] = (1.0, 1.0),
    label_smoothing: float = 0.0,
) -> list[float]:
    """Each image's training loss (``train.loss`` / ``train.cls_loss``; multitask: the
    ``(seg_weight, cls_weight)`` sum), as evaluate reports a split's loss. Without class
    weights (they come from the training split's counts); an image whose label is unknown
    (-1, another data set's class) gets the segmentation part only, or NaN."""
    seg = SEG_LOSSES[seg_loss] if "seg" in out else None
    cls = make_cls_loss(cls_loss, None, label_smoothing) if "cls" in out else None
    both = seg is not None and cls is not None
    losses = []
    for j in range(len(label)):
        total, known = 0.0, False
        if seg is not None:
            part = float(seg(out["seg"][j : j + 1].float(), mask[j : j + 1].float()))
            total, known = total + (weights[0] if both else 1.0) * part, True
        if cls is not None and int(label[j]) >= 0:
            part = float(cls(out["cls"][j : j + 1].float(), label[j : j + 1].long()))
            total, known = total + (weights[1] if both else 1.0) * part, True
        losses.append(total if known else float("nan"))
    return losses
