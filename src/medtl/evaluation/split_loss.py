"""The loss ``medtl evaluate`` reports for a split: each image's training loss as the run's
config defines it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medtl.configuration.loading import Config
from medtl.training.losses import image_losses


def split_losses(
    cfg: Config,
    out: dict[str, torch.Tensor],
    mask: torch.Tensor,
    label: torch.Tensor,
    multilabel: bool = False,
) -> list[float]:
    """Each image's training loss as the run's config defines it (:func:`image_losses`);
    ``multilabel``: the run's masks are one per structure (one sigmoid each)."""
    m, t = cfg.model, cfg.train
    weights = (m.seg_weight, m.cls_weight)
    return image_losses(
        out, mask, label, t.loss, t.cls_loss, weights, t.label_smoothing, multilabel
    )


def mean_loss(records: list[dict[str, Any]]) -> float | None:
    """The mean of the records' finite ``loss`` values (None when there is none)."""
    values = [r["loss"] for r in records if np.isfinite(r.get("loss", float("nan")))]
    return round(float(np.mean(values)), 6) if values else None
