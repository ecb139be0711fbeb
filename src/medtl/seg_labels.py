"""Masks with several labels around training and evaluation: the training split's label
coverage and weights, per-label scores of an evaluated image, the per-label summary and its
lines (predicted masks are written in the masks' own encoding by
:func:`medtl.inference.save_mask`).

The scheme (what each stored mask value means) is :class:`medtl.data.masks.MaskScheme`,
decided once per data set and recorded in the config; binary runs pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medtl.data.masks import MaskScheme, scheme_from_config
from medtl.errors import ConfigError
from medtl.metrics import aggregate, seg_scores
from medtl.metrics.segmentation import label_scores

log = logging.getLogger("medtl")
SEG_KEYS = ("dice", "iou", "precision", "recall", "hd95")


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


def training_label_weights(cfg: Any, cache: Any, train: Sequence[int]) -> torch.Tensor | None:
    """``train.label_weights`` as a ``(C + 1,)`` tensor (``auto``: ``n / (K * count)`` of the
    training split's pixels), None for binary runs; warns about a label that the training
    split never shows (a label in no mask at all stopped earlier, in :mod:`medtl.data.masks`)."""
    scheme = scheme_from_config(cfg.data)
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
        raise ConfigError(
            f"train.label_weights={text}: give {scheme.channels} weights >= 0 (background first, "
            f"then {', '.join(scheme.names)}) or 'auto'"
        )
    return w


def image_scores(
    pred: np.ndarray, truth: np.ndarray, scheme: MaskScheme, empty: str, spacing: float = 1.0
) -> dict[str, float]:
    """One image's row of scores: binary :func:`seg_scores`, or for label maps the mean over
    foreground labels plus ``<metric>_<label>`` columns."""
    if not scheme.multi:
        return seg_scores(pred, truth, empty=empty, spacing=spacing)
    return label_scores(pred, truth, scheme.names, empty=empty, spacing=spacing)


def label_summary(rows: list[dict[str, Any]], scheme: MaskScheme) -> dict[str, Any]:
    """``segmentation_per_label``: every metric's aggregate (mean, CI) per foreground label."""
    if not scheme.multi:
        return {}
    per = {
        name: {k: aggregate([r[f"{k}_{name}"] for r in rows]) for k in SEG_KEYS}
        for name in scheme.names
    }
    return {"segmentation_per_label": per, "labels": scheme.describe()}


def label_lines(summary: dict[str, Any]) -> list[str]:
    """Lines of the per-label results for :func:`medtl.evaluate.format_summary`."""
    per = summary.get("segmentation_per_label")
    if not per:
        return []
    lines = ["  per label (mean, 95% CI):"]
    for name, scores in per.items():
        parts = [
            f"{k} {a['mean']:.4f} ({a['ci_low']:.4f}-{a['ci_high']:.4f})"
            for k, a in scores.items()
            if k in ("dice", "iou", "hd95")
        ]
        lines.append(f"    {name:12s} " + "  ".join(parts))
    return lines


def per_label_dice(rows: list[dict[str, Any]], scheme: MaskScheme) -> dict[str, list[float]] | None:
    """``{label: [Dice per image]}`` for the per-label Dice histogram (None: binary)."""
    if not scheme.multi:
        return None
    return {name: [r[f"dice_{name}"] for r in rows] for name in scheme.names}


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) if np.isfinite(v) else float("nan") for k, v in scores.items()}


def score_row(
    scorer: Any, idx: int, pred: np.ndarray, truth: np.ndarray, scheme: MaskScheme, empty: str
) -> dict[str, Any]:
    """An evaluated image's score columns: :func:`image_scores` and the ``scorer``'s lesion,
    area and surface columns (:class:`medtl.seg_eval.SegScorer`, whose HD95 is the binary
    one). Label maps: the scorer sees all foreground labels together, and ``dice`` ..
    ``hd95`` are the means over labels (HD95 per label in pixels)."""
    if not scheme.multi:
        return {**_rounded(image_scores(pred, truth, scheme, empty)), **scorer(idx, pred, truth)}
    return {
        **scorer(idx, pred > 0, truth > 0),
        **_rounded(image_scores(pred, truth, scheme, empty)),
    }


def histogram_groups(
    rows: list[dict[str, Any]], summary: dict[str, Any], by_class: dict[str, list[float]]
) -> dict[str, list[float]]:
    """The Dice histogram's groups: per label for label maps, else ``by_class``."""
    names = summary.get("segmentation_per_label") or {}
    return {f"label {n}": [r[f"dice_{n}"] for r in rows] for n in names} or by_class


def legend(summary: dict[str, Any]) -> list[tuple[str, tuple[float, float, float]]] | None:
    """``(label name, RGB 0..1)`` of every label for the overlay grid's legend (None: binary)."""
    from medtl.inference import label_colour

    names = list(summary.get("segmentation_per_label") or {})
    return [(n, tuple(label_colour(k) / 255)) for k, n in enumerate(names, 1)] or None
