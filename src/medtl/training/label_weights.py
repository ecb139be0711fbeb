"""Class weights of a several-label segmentation loss: the training split's label coverage
and ``train.label_weights`` (explicit or ``auto``), with a warning for a label no training
image shows.

One sigmoid per structure (``data.mask_mode=multilabel``): ``train.label_weights`` is one
positive weight per structure, BCE's ``pos_weight`` (a structure's foreground pixels count
``w`` times in its binary cross-entropy); ``auto`` is each structure's background / foreground
pixel ratio over the training split. It weights the BCE of ``train.loss=bce`` and
``dice_bce``; the Dice and focal losses take none."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medtl.data.masks.scheme import MaskScheme
from medtl.training.losses import BINARY_ALIASES

log = logging.getLogger("medtl")


def label_counts(
    masks: Any, indices: Sequence[int], channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and images per label index (0 = background) over the cached mask rows."""
    pixels = np.zeros(channels, np.int64)
    images = np.zeros(channels, np.int64)
    for i in indices:
        counts = torch.bincount(masks[i].flatten().long(), minlength=channels)[:channels].numpy()
        pixels += counts
        images += counts > 0
    return pixels, images


def training_label_weights(
    cfg: Any, scheme: MaskScheme, cache: Any, train: Sequence[int]
) -> torch.Tensor | None:
    """``train.label_weights`` as a ``(C + 1,)`` tensor (``auto``: ``n / (K * count)`` of the
    training split's pixels), None for binary runs (``scheme``: the data's decided mask
    scheme); warns about a label that the training split never shows (a label in no mask
    at all stopped earlier, in :mod:`medtl.data.masks.scheme`)."""
    if scheme.multilabel:
        return structure_pos_weights(cfg, scheme, cache, train)
    if not scheme.multi or cache.masks is None:
        return None
    pixels, images = label_counts(cache.masks, train, scheme.channels)
    for k, name in enumerate(scheme.names, 1):
        if images[k] == 0:
            log.warning(
                f"label {name} (value {scheme.values[k - 1]}) is in no training image; the model "
                "cannot learn it (move images with it into training or drop it from data.labels)"
            )
    text = cfg.train.label_weights
    if not text:
        return None
    if str(text).strip() == "auto":
        counts = torch.as_tensor(pixels, dtype=torch.float32)
        w = counts.sum() / (len(counts) * counts.clamp(min=1))
        return torch.where(counts > 0, w, torch.zeros_like(w))
    try:
        w = torch.tensor([float(v) for v in str(text).split(",")], dtype=torch.float32)
    except ValueError:
        w = torch.zeros(0)
    if len(w) != scheme.channels or bool((w < 0).any()):
        from medtl.utils.errors import ConfigError

        raise ConfigError(
            f"train.label_weights={text}: give {scheme.channels} weights >= 0 (background first, "
            f"then {', '.join(scheme.names)}) or 'auto'"
        )
    return w


def structure_pixels(masks: Any, indices: Sequence[int], channels: int) -> tuple[int, np.ndarray]:
    """Pixels in all and foreground pixels per structure (bit ``k`` of a ``multilabel``
    mask) over the cached mask rows ``indices``."""
    total, fg = 0, np.zeros(channels, np.int64)
    for i in indices:
        bits = masks[i].to(torch.int64).flatten()
        total += bits.numel()
        for k in range(channels):
            fg[k] += int(((bits >> k) & 1).sum())
    return total, fg


def structure_pos_weights(
    cfg: Any, scheme: MaskScheme, cache: Any, train: Sequence[int]
) -> torch.Tensor | None:
    """``train.label_weights`` of a multilabel run as a ``(C,)`` tensor of positive weights
    (``auto``: background / foreground pixels of each structure over the training split; 1
    for a structure no training pixel shows or one covering every pixel), None when not set."""
    from medtl.utils.errors import ConfigError

    text = str(getattr(cfg.train, "label_weights", None) or "none").strip()
    if text == "none":
        return None
    if BINARY_ALIASES.get(cfg.train.loss, cfg.train.loss) not in WEIGHTED_LOSSES:
        raise ConfigError(
            f"train.label_weights with train.loss={cfg.train.loss}: one sigmoid per structure "
            "weights only the BCE of train.loss=bce or dice_bce; set one of those or remove the key"
        )
    n = scheme.channels
    if text == "auto":
        if cache.masks is None:
            return None
        total, fg = structure_pixels(cache.masks, train, n)
        w = [(total - f) / f if 0 < f < total else 1.0 for f in fg]
        return torch.tensor(w, dtype=torch.float32)
    try:
        w = torch.tensor([float(v) for v in text.split(",")], dtype=torch.float32)
    except ValueError:
        w = torch.zeros(0)
    if len(w) != n or not bool((w > 0).all()):
        raise ConfigError(
            f"train.label_weights={text}: give {n} positive weights > 0, one per structure "
            f"({', '.join(scheme.names)}), or 'auto'"
        )
    return w


#: the multilabel losses with a BCE term ``train.label_weights`` weights
WEIGHTED_LOSSES = ("bce", "dice_bce")


def weighted_structure_loss(name: str, pos_weight: torch.Tensor):
    """``train.loss`` (``bce`` or ``dice_bce``, ``ce``/``dice_ce`` taken as those) of one
    sigmoid per structure with each structure's BCE positives weighted by ``pos_weight``."""
    import torch.nn.functional as F

    from medtl.training.losses import multilabel_dice_loss, structure_targets

    name = BINARY_ALIASES.get(name, name)

    def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = pos_weight.to(logits).view(1, -1, 1, 1)
        planes = structure_targets(target, logits.shape[1]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, planes, pos_weight=w)

    if name == "bce":
        return bce
    return lambda logits, target: multilabel_dice_loss(logits, target) + bce(logits, target)
