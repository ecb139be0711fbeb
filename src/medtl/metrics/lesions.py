"""Lesion-level detection from connected components, and the area error.

A lesion is an 8-connected component of a mask (``scipy.ndimage.label`` with a 3x3
structure). Criterion (:data:`LESION_CRITERION`, ``iou >= 0.1`` by default): a true lesion
is *detected* when at least one predicted component has IoU >= ``min_iou`` with it (IoU of
the two components alone, ``|A ∩ B| / |A ∪ B|``); a predicted component that reaches
``min_iou`` with no true lesion is a *false positive*. A merely touching prediction (one
shared pixel on a large lesion) does not count, and a predicted blob covering two lesions
detects each it overlaps well enough.

Over a split: lesion sensitivity = detected / true lesions, pooled over the images (with a
Wilson CI), and false positives per image = mean of the per-image counts.

Area error: predicted minus true foreground area (signed), in pixels or in mm² when the
pixel spacing is known (``area x row_spacing x column_spacing``).

Example:
    >>> import numpy as np
    >>> t = np.zeros((10, 10), bool); t[1:3, 1:3] = True; t[6:9, 6:9] = True
    >>> p = np.zeros((10, 10), bool); p[1:3, 1:4] = True; p[0, 8] = True
    >>> lesion_counts(p, t)
    {'lesions': 2, 'lesions_detected': 1, 'pred_components': 2, 'false_positives': 1}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["LESION_CRITERION", "MIN_IOU", "area_error", "lesion_counts"]

MIN_IOU = 0.1
LESION_CRITERION = (
    "a true lesion (8-connected component) is detected when a predicted component overlaps "
    "it with IoU >= {min_iou:g}; a predicted component with IoU >= {min_iou:g} on no true "
    "lesion is a false positive"
)
_EIGHT = np.ones((3, 3), dtype=bool)


def _component_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of every (true component, predicted component) pair, shape ``(n_true, n_pred)``."""
    lt, nt = ndimage.label(truth, structure=_EIGHT)
    lp, n_p = ndimage.label(pred, structure=_EIGHT)
    if nt == 0 or n_p == 0:
        return np.zeros((nt, n_p))
    inter = np.zeros((nt + 1, n_p + 1), dtype=np.int64)
    np.add.at(inter, (lt.ravel(), lp.ravel()), 1)
    area_t = np.bincount(lt.ravel(), minlength=nt + 1)[1:]
    area_p = np.bincount(lp.ravel(), minlength=n_p + 1)[1:]
    both = inter[1:, 1:]
    return both / (area_t[:, None] + area_p[None, :] - both)


def lesion_counts(pred: np.ndarray, truth: np.ndarray, min_iou: float = MIN_IOU) -> dict[str, int]:
    """True lesions, those detected, predicted components and false positives of one image
    (module docstring)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} != truth shape {truth.shape}")
    hit = _component_iou(pred, truth) >= min_iou
    return {
        "lesions": int(hit.shape[0]),
        "lesions_detected": int(hit.any(axis=1).sum()),
        "pred_components": int(hit.shape[1]),
        "false_positives": int((~hit.any(axis=0)).sum()),
    }


def area_error(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None
) -> float:
    """Predicted minus true area: pixels, or mm² with ``spacing = (row, column)`` in mm."""
    diff = float(np.count_nonzero(pred)) - float(np.count_nonzero(truth))
    return diff if spacing is None else diff * float(spacing[0]) * float(spacing[1])
