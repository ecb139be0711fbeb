"""The probability threshold of a binary segmentation head, chosen on the validation split:
``medtl evaluate RUN --seg-threshold auto`` (or a number).

A pixel is foreground when its sigmoid probability is above the threshold
(:func:`medtl.inference.engine.mask_at_size`); the default is :data:`DEFAULT_THRESHOLD` (0.5).
With ``auto`` the threshold of :data:`GRID` (0.30, 0.35, ..., 0.70) with the highest mean
validation Dice is chosen (each image scored at its original size by
:func:`medtl.metrics.seg_scores` under the run's empty-mask rule, before any
``--postprocess`` rule; ties go to the value nearest 0.5). A number is stored as given
(its validation Dice is recorded beside the grid's). The decision is kept as
``"seg_threshold"`` in ``RUN/calibration.json`` (:mod:`medtl.evaluation.calibrate`), and evaluate,
``medtl predict`` (``--onnx`` too) and ``medtl.load(RUN).predict`` apply it from then on.

One sigmoid channel per structure (``data.mask_mode=multilabel``): a number applies to every
structure; ``auto`` chooses one threshold per structure the same way, each on that
structure's own validation Dice (stored as ``seg_threshold.per_structure``, ``value`` their
mean). A label map (softmax over the labels) is the argmax, which has no threshold.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from medtl.inference.decisions import DEFAULT_THRESHOLD
from medtl.runs.records import EvalSummary, as_summary
from medtl.utils.errors import ConfigError

log = logging.getLogger("medtl")
GRID = tuple(round(0.3 + 0.05 * i, 2) for i in range(9))  # 0.30 .. 0.70
__all__ = [
    "GRID",
    "check_binary",
    "choose_seg_threshold",
    "dice_at",
    "fit_seg_threshold",
    "parse_seg_threshold",
    "threshold_lines",
    "threshold_summary",
]


def parse_seg_threshold(value: Any) -> str | float | None:
    """``"auto"``, a probability in (0, 1), or None (not asked); else a one-line ConfigError."""
    if value is None:
        return None
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0 < t < 1:
        raise ConfigError(
            f"--seg-threshold {value!r}: give 'auto' (chosen on val) or a probability in (0, 1)"
        )
    return t


def check_binary(cfg: Any, scheme: Any) -> None:
    """ConfigError unless the run's masks come from sigmoids (binary, or one channel per
    structure: the ones with a threshold; ``scheme``: the run's
    :class:`~medtl.data.masks.scheme.MaskScheme`)."""
    if cfg.task == "classification":
        raise ConfigError(
            "--seg-threshold needs a segmentation head (task=segmentation or multitask)"
        )
    if scheme.multi and not scheme.multilabel:
        raise ConfigError(
            f"--seg-threshold: this run's masks have {scheme.n_labels} labels; a label map is "
            "the argmax over the labels' scores and has no threshold (binary masks only)"
        )


def _key(t: float) -> str:
    """A threshold as the key of ``val_dice`` (``0.35`` -> ``"0.35"``)."""
    return f"{t:.4g}"


def dice_at(
    logits: Any, truth: np.ndarray, thresholds: tuple[float, ...] = GRID, empty: str = "one"
) -> np.ndarray:
    """One image's Dice at each threshold: its ``(1, S, S)`` seg logits made a mask at the
    truth's size (:func:`medtl.inference.engine.mask_at_size`) and scored by
    :func:`medtl.metrics.seg_scores` (NaN where the empty rule ``skip`` leaves it out)."""
    from medtl.inference.engine import mask_at_size
    from medtl.metrics import seg_scores

    h, w = truth.shape
    return np.array(
        [seg_scores(mask_at_size(logits, h, w, t), truth, empty)["dice"] for t in thresholds]
    )


def choose_seg_threshold(dice: np.ndarray, thresholds: tuple[float, ...] = GRID) -> dict[str, Any]:
    """The threshold with the highest mean Dice over the images (rows of ``dice``, one
    column per threshold; NaN left out), ties to the one nearest 0.5. Returns
    ``{"value", "val_dice": {threshold: mean Dice}}``; ``value`` 0.5 when no Dice is defined."""
    dice = np.asarray(dice, dtype=np.float64).reshape(-1, len(thresholds))
    defined = ~np.isnan(dice)
    means = [
        float(dice[defined[:, j], j].mean()) if defined[:, j].any() else float("nan")
        for j in range(len(thresholds))
    ]
    ok = [j for j, m in enumerate(means) if not np.isnan(m)]
    best = max(ok, key=lambda j: (round(means[j], 12), -abs(thresholds[j] - 0.5))) if ok else None
    value = float(thresholds[best]) if best is not None else DEFAULT_THRESHOLD
    return {
        "value": value,
        "val_dice": {_key(t): m for t, m in zip(thresholds, means, strict=True)},
    }


def fit_seg_threshold(
    net, cfg, prepared, val: list[int], device, tta: bool, request: str | float
) -> dict[str, Any]:
    """The ``seg_threshold`` entry of ``RUN/calibration.json``: ``request`` (``auto`` or a
    number) decided on the validation images ``val`` of ``prepared``."""
    from medtl.data.cache.decode import read_originals
    from medtl.data.pipeline import make_loader
    from medtl.inference.engine import infer

    scheme = prepared.dataset.mask_scheme
    check_binary(cfg, scheme)
    request = parse_seg_threshold(request)
    grid = GRID if request == "auto" else tuple(sorted({*GRID, float(request)}))  # + given
    if scheme is not None and scheme.multilabel:
        from medtl.evaluation.threshold_structures import fit_structures

        return fit_structures(net, cfg, prepared, val, device, tta, request, grid)
    ds, rows_dice = prepared.dataset, []
    for x, _mask, _label, rows in make_loader(prepared, val, cfg, train=False):
        seg = infer(net, x.to(device), tta)["seg"].float().cpu()
        keep = [(j, i) for j, i in enumerate(rows.tolist()) if i >= 0]
        truths = read_originals(
            ds.samples, [i for _, i in keep], ds.window, ds.fallback_window, ds.mask_scheme
        )
        rows_dice += [dice_at(seg[j], truths[i][1], grid, cfg.train.empty_mask) for j, i in keep]
    chosen = choose_seg_threshold(np.array(rows_dice), grid)
    value = chosen["value"] if request == "auto" else float(request)
    out = {
        "value": value,
        "rule": "max mean val Dice" if request == "auto" else "given",
        "fitted_on": "val",
        "n_images": len(rows_dice),
        "empty_mask": cfg.train.empty_mask,
        "val_dice": chosen["val_dice"],
        "val_dice_at_value": chosen["val_dice"][_key(value)],
        "val_dice_at_default": chosen["val_dice"][_key(DEFAULT_THRESHOLD)],
    }
    log.info(
        "segmentation threshold %.4g (%s on %d val images)", value, out["rule"], len(rows_dice)
    )
    return out


def threshold_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The summary's ``seg_threshold`` (the stored decision), ``{}`` when none is stored."""
    entry = doc.get("seg_threshold")
    if not entry:
        return {}
    keys = ("value", "rule", "fitted_on", "n_images", "val_dice_at_value", "val_dice_at_default")
    out = {k: entry.get(k) for k in keys}
    if entry.get("per_structure"):
        out["per_structure"] = entry["per_structure"]
    return {"seg_threshold": out}


def threshold_lines(summary: EvalSummary | dict[str, Any]) -> list[str]:
    """The console line of a stored segmentation threshold (none at the default), from the
    summary's typed ``threshold`` block."""
    s = as_summary(summary).threshold
    if s is None:
        return []

    def f(v: float) -> str:
        return "–" if not np.isfinite(v) else f"{v:.4f}"

    each = ", ".join(f"{k} {v:.4g}" for k, v in s.per_structure.items())
    value = f"{s.value:.4g}" if not each else f"per structure ({each})"
    return [
        f"  mask threshold {value} ({s.rule}, chosen on {s.fitted_on}; "
        f"val Dice {f(s.val_dice_at_value)} vs {f(s.val_dice_at_default)} at 0.5)"
    ]
