"""The mask thresholds of a multilabel run (one sigmoid channel per structure), chosen on
the validation split: ``--seg-threshold auto`` picks each structure's threshold of
:data:`~medtl.evaluation.threshold.GRID` on that structure's own mean validation Dice (ties
to the value nearest 0.5, as for a binary head); a number applies to every structure.

The decision is the ``seg_threshold`` entry of ``RUN/calibration.json``: ``value`` (the
number given, or the mean of the structures' thresholds), ``per_structure`` (``auto`` only:
``{structure: threshold}`` in the run's structure order) and ``val_dice`` per structure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from medtl.evaluation.threshold import _key, choose_seg_threshold
from medtl.inference.decisions import DEFAULT_THRESHOLD

log = logging.getLogger("medtl")
__all__ = ["choose_per_structure", "fit_structures", "structure_dice_at"]


def structure_dice_at(
    logits: Any, truth: np.ndarray, thresholds: Sequence[float], empty: str = "one"
) -> np.ndarray:
    """One image's Dice per structure and threshold, ``(C, T)``: its ``(C, S, S)`` logits,
    channel ``k`` cut at each threshold at the truth's size and scored against bit ``k`` of
    the ``uint8`` truth (:func:`medtl.metrics.seg_scores`, NaN where ``skip`` leaves it out)."""
    from medtl.inference.engine import mask_at_size
    from medtl.metrics import seg_scores

    h, w = truth.shape
    out = np.empty((logits.shape[0], len(thresholds)))
    for k in range(logits.shape[0]):
        planes = ((np.asarray(truth) >> k) & 1).astype(bool)
        for j, t in enumerate(thresholds):
            out[k, j] = seg_scores(mask_at_size(logits[k : k + 1], h, w, t), planes, empty)["dice"]
    return out


def choose_per_structure(
    dice: np.ndarray, names: Sequence[str], thresholds: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """``{structure: {"value", "val_dice"}}``: :func:`choose_seg_threshold` on each
    structure's column of ``dice`` (``(images, C, T)``)."""
    dice = np.asarray(dice, dtype=np.float64).reshape(-1, len(names), len(thresholds))
    return {
        name: choose_seg_threshold(dice[:, k, :], tuple(thresholds)) for k, name in enumerate(names)
    }


def _mean(values: list[float]) -> float | None:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def fit_structures(
    net, cfg, prepared, val: list[int], device, tta: bool, request: str | float, grid
) -> dict[str, Any]:
    """The ``seg_threshold`` entry of a multilabel run's ``calibration.json`` for
    ``request`` (``auto`` or a number), decided on the validation images ``val``."""
    from medtl.data.cache.decode import read_originals
    from medtl.data.pipeline import make_loader
    from medtl.inference.engine import infer

    ds, rows = prepared.dataset, []
    names = ds.mask_scheme.names
    for x, _mask, _label, idx in make_loader(prepared, val, cfg, train=False):
        seg = infer(net, x.to(device), tta)["seg"].float().cpu()
        keep = [(j, i) for j, i in enumerate(idx.tolist()) if i >= 0]
        truths = read_originals(
            ds.samples, [i for _, i in keep], ds.window, ds.fallback_window, ds.mask_scheme
        )
        rows += [
            structure_dice_at(seg[j], truths[i][1], grid, cfg.train.empty_mask) for j, i in keep
        ]
    chosen = choose_per_structure(np.array(rows), names, grid)
    auto = request == "auto"
    per = {n: (c["value"] if auto else float(request)) for n, c in chosen.items()}
    out: dict[str, Any] = {
        "value": float(np.mean(list(per.values()))),
        "rule": "max mean val Dice per structure" if auto else "given",
        "fitted_on": "val",
        "n_images": len(rows),
        "empty_mask": cfg.train.empty_mask,
    }
    if auto:
        out["per_structure"] = per
    out["val_dice"] = {n: c["val_dice"] for n, c in chosen.items()}
    out["val_dice_at_value"] = _mean([c["val_dice"][_key(per[n])] for n, c in chosen.items()])
    out["val_dice_at_default"] = _mean(
        [c["val_dice"][_key(DEFAULT_THRESHOLD)] for c in chosen.values()]
    )
    log.info("segmentation thresholds %s (%s on %d val images)", per, out["rule"], len(rows))
    return out
