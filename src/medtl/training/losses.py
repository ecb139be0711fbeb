"""Loss registry: segmentation (:data:`SEG_LOSSES` bce, dice, dice_bce, focal, dice_focal,
and the multi-label names ce, dice_ce) and classification (:data:`CLS_LOSSES` ce, focal). The names
``train.loss`` and ``train.cls_loss`` accept are :mod:`medtl.configuration.names`'; the
registries are checked against them on import.

Segmentation losses take logits ``(N, 1, H, W)`` and float targets in {0, 1}; the soft Dice
is computed per image and averaged, with a smoothing term so that an empty mask predicted
empty costs ~0 (normal images in multitask training). ``ce`` and ``dice_ce`` are the same
as ``bce`` and ``dice_bce`` for one label.

Masks with several labels (``C + 1`` logit channels, background first, targets
``(N, 1, H, W)`` holding label indices 0..C): :data:`LABEL_LOSSES` ``ce`` (pixel
cross-entropy), ``dice`` (soft Dice of the softmax per image and channel, smoothed like the
binary one, weighted mean over the channels), ``dice_ce`` (their sum), ``focal``
(CE x (1 - p_true)^2, mean over pixels) and ``dice_focal`` (Dice + focal); each takes optional per-label weights ``(C + 1,)``
(:func:`seg_loss_for`, ``train.label_weights``).

One binary mask per structure (mask scheme ``multilabel``, ``C`` sigmoid channels, targets
``(N, 1, H, W)`` holding structure ``k`` in bit ``k``): :data:`MULTILABEL_LOSSES`, smp's
``DiceLoss``/``FocalLoss`` in ``mode="multilabel"`` and a per-channel BCE.

``dice_focal`` (every head): the soft Dice plus the focal loss. The focal term
down-weights the many easy background pixels, so a tiny object's pixels still carry the
per-pixel gradient that Dice alone gives only through the image's overlap ratio.

Example (a hand computation: one pixel, background certain, the truth is label 1):
    >>> import torch
    >>> logits = torch.tensor([[[[0.0]], [[0.0]]]])  # softmax 0.5 / 0.5
    >>> target = torch.tensor([[[[1.0]]]])
    >>> round(float(LABEL_LOSSES["ce"](logits, target)), 4)  # -log 0.5
    0.6931
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from medtl.configuration import names

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


def dice_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice (per image) + sigmoid focal loss (alpha 0.25, gamma 2): the Dice+focal mix
    a plan chooses for tiny objects."""
    return soft_dice_loss(logits, target) + binary_focal_loss(logits, target)


SEG_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bce": bce_loss,
    "dice": soft_dice_loss,
    "dice_bce": dice_bce_loss,
    "focal": binary_focal_loss,
    "dice_focal": dice_focal_loss,
}
#: the multi-label names on a one-label (sigmoid) head
BINARY_ALIASES = {"ce": "bce", "dice_ce": "dice_bce"}


def label_ce_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Pixel cross-entropy over ``C + 1`` channels (weighted mean when ``weight``)."""
    w = weight.to(logits) if weight is not None else None
    return F.cross_entropy(logits, target[:, 0].long(), weight=w)


def label_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - soft Dice per image and channel (smoothed), weighted mean over channels, mean
    over the batch."""
    k = logits.shape[1]
    prob = torch.softmax(logits, 1).flatten(2)
    onehot = F.one_hot(target[:, 0].long(), k).permute(0, 3, 1, 2).flatten(2).to(prob)
    inter = (prob * onehot).sum(2)
    denom = prob.sum(2) + onehot.sum(2)
    loss = 1.0 - (2.0 * inter + SMOOTH) / (denom + SMOOTH)  # (N, K)
    w = weight.to(loss) if weight is not None else torch.ones(k, dtype=loss.dtype)
    return ((loss * w).sum(1) / w.sum()).mean()


def label_dice_ce_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    return label_dice_loss(logits, target, weight) + label_ce_loss(logits, target, weight)


def label_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-class focal loss on pixels (:class:`FocalCE`, gamma 2)."""
    w = weight.to(logits) if weight is not None else None
    return FocalCE(w)(logits, target[:, 0].long())


def label_dice_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`label_dice_loss` + :func:`label_focal_loss` (same per-label weights)."""
    return label_dice_loss(logits, target, weight) + label_focal_loss(logits, target, weight)


LABEL_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": label_ce_loss,
    "dice": label_dice_loss,
    "dice_ce": label_dice_ce_loss,
    "focal": label_focal_loss,
    "dice_focal": label_dice_focal_loss,
    "bce": label_ce_loss,
    "dice_bce": label_dice_ce_loss,
}
names.check_registry("train.loss", names.SEG_LOSSES, LABEL_LOSSES)
names.check_registry("train.loss", names.SEG_LOSSES, [*SEG_LOSSES, *BINARY_ALIASES])


def structure_targets(target: torch.Tensor, channels: int) -> torch.Tensor:
    """A ``multilabel`` target ``(N, 1, H, W)`` (structure ``k`` in bit ``k``) -> float
    ``(N, channels, H, W)`` in {0, 1}, one plane per structure (overlaps kept)."""
    bits = target[:, :1].to(torch.int64)
    shifts = torch.arange(channels, device=target.device).view(1, -1, 1, 1)
    return ((bits >> shifts) & 1).float()


def multilabel_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel binary cross-entropy of every structure's sigmoid, mean over pixels and channels."""
    return F.binary_cross_entropy_with_logits(
        logits, structure_targets(target, logits.shape[1]).to(logits)
    )


def multilabel_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """smp's ``DiceLoss(mode="multilabel")``: 1 - soft Dice of each structure's sigmoid over
    the whole batch, mean over the structures (one absent from the batch's targets counts 0)."""
    from segmentation_models_pytorch.losses import DiceLoss

    fn = DiceLoss(mode="multilabel", from_logits=True)
    return fn(logits, structure_targets(target, logits.shape[1]).to(logits))


def multilabel_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """smp's ``FocalLoss(mode="multilabel")``: ``(1 - p_true)^2 x BCE`` of every structure's
    sigmoid, mean over pixels and structures."""
    from segmentation_models_pytorch.losses import FocalLoss

    fn = FocalLoss(mode="multilabel")
    return fn(logits, structure_targets(target, logits.shape[1]).to(logits))


def multilabel_dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return multilabel_dice_loss(logits, target) + multilabel_bce_loss(logits, target)


def multilabel_dice_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """smp's multilabel ``DiceLoss`` + ``FocalLoss`` (:func:`multilabel_dice_loss`,
    :func:`multilabel_focal_loss`)."""
    return multilabel_dice_loss(logits, target) + multilabel_focal_loss(logits, target)


#: one sigmoid channel per structure (mask scheme ``multilabel``); ``ce``/``dice_ce`` are
#: taken as ``bce``/``dice_bce``
MULTILABEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bce": multilabel_bce_loss,
    "dice": multilabel_dice_loss,
    "dice_bce": multilabel_dice_bce_loss,
    "focal": multilabel_focal_loss,
    "dice_focal": multilabel_dice_focal_loss,
}


def seg_loss_for(
    name: str, channels: int = 1, weight: torch.Tensor | None = None, multilabel: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``train.loss`` for a head of ``channels``: the binary losses for 1 channel (exactly
    as before), else the multi-label form (``bce``/``dice_bce`` mean ``ce``/``dice_ce``).
    ``multilabel``: one sigmoid per structure (:data:`MULTILABEL_LOSSES`, no weights)."""
    if multilabel:
        return MULTILABEL_LOSSES[BINARY_ALIASES.get(name, name)]
    if channels == 1:
        return SEG_LOSSES[BINARY_ALIASES.get(name, name)]
    fn = LABEL_LOSSES[name]
    return lambda logits, target: fn(logits, target, weight)


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


#: ``train.cls_loss`` -> ``(class weights or None, label smoothing) -> loss module``
CLS_LOSSES: dict[str, Callable[[torch.Tensor | None, float], nn.Module]] = {
    "ce": lambda weight, smoothing: nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing),
    "focal": lambda weight, smoothing: FocalCE(weight, label_smoothing=smoothing),
}
names.check_registry("train.cls_loss", names.CLS_LOSSES, CLS_LOSSES)


def make_cls_loss(name: str, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    """``ce`` or ``focal`` classification loss with optional class weights."""
    return CLS_LOSSES[name](weight, label_smoothing)


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
    multilabel: bool = False,
) -> list[float]:
    """Each image's training loss (``train.loss`` / ``train.cls_loss``; multitask: the
    ``(seg_weight, cls_weight)`` sum), as evaluate reports a split's loss. Without class
    weights (they come from the training split's counts); an image whose label is unknown
    (-1, another data set's class) gets the segmentation part only, or NaN."""
    seg = seg_loss_for(seg_loss, out["seg"].shape[1], None, multilabel) if "seg" in out else None
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
