"""Class weights of a several-label segmentation loss: the training split's label coverage
and ``train.label_weights`` (explicit or ``auto``), with a warning for a label no training
image shows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medtl.data.masks.scheme import MaskScheme

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
    if scheme.multilabel and str(getattr(cfg.train, "label_weights", None) or "none") != "none":
        from medtl.utils.errors import ConfigError

        raise ConfigError(
            "train.label_weights: one sigmoid per structure (data.mask_mode=multilabel) takes "
            "no label weights; remove the key"
        )
    if not scheme.multi or scheme.multilabel or cache.masks is None:
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
        raise ConfigError(
            f"train.label_weights={text}: give {scheme.channels} weights >= 0 (background first, "
            f"then {', '.join(scheme.names)}) or 'auto'"
        )
    return w
