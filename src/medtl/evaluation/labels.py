"""Masks with several labels in evaluation: per-label scores of an evaluated image, the per-label summary and its
lines (predicted masks are written in the masks' own encoding by
:func:`medtl.inference.engine.save_mask`).

The scheme (what each stored mask value means) is :class:`medtl.data.masks.scheme.MaskScheme`,
decided once per data set and recorded in the config; binary runs pass through unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from medtl.data.masks.scheme import MaskScheme
from medtl.metrics import aggregate, seg_scores
from medtl.metrics.segmentation import both_empty_scores, label_scores
from medtl.metrics.surface import hd95_distance
from medtl.runs.records import EvalSummary, as_summary

log = logging.getLogger("medtl")
SEG_KEYS = ("dice", "iou", "precision", "recall", "hd95")


def image_scores(
    pred: np.ndarray, truth: np.ndarray, scheme: MaskScheme, empty: str, spacing: float = 1.0
) -> dict[str, float]:
    """One image's row of scores: binary :func:`seg_scores`, or for label maps the mean over
    foreground labels plus ``<metric>_<label>`` columns."""
    if not scheme.multi:
        return seg_scores(pred, truth, empty=empty, spacing=spacing)
    if scheme.multilabel:  # structure k in bit k: each one scored as a binary mask
        return structure_scores(pred, truth, scheme, empty, spacing)
    return label_scores(pred, truth, scheme.names, empty=empty, spacing=spacing)


def structure_scores(
    pred: np.ndarray, truth: np.ndarray, scheme: MaskScheme, empty: str, spacing: float = 1.0
) -> dict[str, float]:
    """Per-structure scores of one ``multilabel`` image (``<metric>_<structure>``, each
    structure a binary mask by :func:`seg_scores`) and their means over the structures whose
    score is defined (``<metric>``), as :func:`label_scores` does for label maps."""
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {k: [] for k in SEG_KEYS}
    for k, name in enumerate(scheme.names, 1):
        scores = seg_scores(
            scheme.structure(pred, k), scheme.structure(truth, k), empty=empty, spacing=spacing
        )
        for metric, value in scores.items():
            out[f"{metric}_{name}"] = value
            per.setdefault(metric, []).append(value)
    for metric, values in per.items():
        ok = [v for v in values if not np.isnan(v)]
        out[metric] = float(np.mean(ok)) if ok else float("nan")
    return out


def label_summary(rows: list[dict[str, Any]], scheme: MaskScheme) -> dict[str, Any]:
    """``segmentation_per_label``: every metric's aggregate (mean, CI) per foreground label."""
    if not scheme.multi:
        return {}
    per = {
        name: {k: aggregate([r[f"{k}_{name}"] for r in rows]) for k in SEG_KEYS}
        for name in scheme.names
    }
    return {"segmentation_per_label": per, "labels": scheme.describe()}


def label_lines(summary: EvalSummary | dict[str, Any]) -> list[str]:
    """Lines of the per-label results for :func:`medtl.evaluation.evaluate.format_summary`
    (the summary's typed ``segmentation_per_label``)."""
    per = as_summary(summary).segmentation_per_label
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


def label_hd95(
    scorer: Any, idx: int, pred: np.ndarray, truth: np.ndarray, names: list[str] | tuple[str, ...]
) -> dict[str, float]:
    """``hd95_<label>`` per foreground label and ``hd95`` (their mean, NaN left out) by the
    ``scorer``'s definition (``--hd95``), spacing (mm when known) and empty-mask rule."""
    sp = scorer.spacing.get(idx) or 1.0
    out: dict[str, float] = {}
    for k, name in enumerate(names, 1):
        p, t = pred == k, truth == k
        if not p.any() and not t.any():
            out[f"hd95_{name}"] = both_empty_scores(scorer.empty)["hd95"]
        else:
            out[f"hd95_{name}"] = hd95_distance(p, t, sp, scorer.hd95)
    ok = [v for v in out.values() if np.isfinite(v)]
    out["hd95"] = float(np.mean(ok)) if ok else float("nan")
    return out


def score_row(
    scorer: Any, idx: int, pred: np.ndarray, truth: np.ndarray, scheme: MaskScheme, empty: str
) -> dict[str, Any]:
    """An evaluated image's score columns: :func:`image_scores` and the ``scorer``'s lesion,
    area and surface columns (:class:`medtl.evaluation.segmentation.SegScorer`). Label maps:
    the scorer sees all foreground labels together for area and surface (lesion counts: only
    the lesion labels, ``data.lesion_labels``); ``dice`` .. ``recall`` are the means over
    labels, and ``hd95`` (with ``hd95_<label>``) is :func:`label_hd95`, in the scorer's unit
    and definition like a binary run's."""
    if not scheme.multi:
        return {**_rounded(image_scores(pred, truth, scheme, empty)), **scorer(idx, pred, truth)}
    scores = image_scores(pred, truth, scheme, empty)
    scores.update(label_hd95(scorer, idx, pred, truth, scheme.names))
    return {**scorer(idx, pred, truth), **_rounded(scores)}


def histogram_groups(
    rows: list[dict[str, Any]], summary: dict[str, Any], by_class: dict[str, list[float]]
) -> dict[str, list[float]]:
    """The Dice histogram's groups: per label for label maps, else ``by_class``."""
    names = summary.get("segmentation_per_label") or {}
    return {f"label {n}": [r[f"dice_{n}"] for r in rows] for n in names} or by_class


def legend(summary: dict[str, Any]) -> list[tuple[str, tuple[float, float, float]]] | None:
    """``(label name, RGB 0..1)`` of every label for the overlay grid's legend (None: binary)."""
    from medtl.inference.engine import label_colour

    names = list(summary.get("segmentation_per_label") or {})
    return [(n, tuple(label_colour(k) / 255)) for k, n in enumerate(names, 1)] or None
