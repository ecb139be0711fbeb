"""Typed records of the optional blocks of ``summary.json`` that the console summary reads:
the stored mask threshold, post-processing, the leak-free subset and the surface/lesion
facts of a segmentation.

Each block's :meth:`of` reads it from the summary document with the file's
:class:`~medtl.utils.records.Shape`: a block that is absent gives None, a block missing a
key its line needs (or holding text where a number belongs) is one
:class:`~medtl.utils.errors.DataError` line naming the file. Keys that older files lack are
optional with the value those files meant. The JSON format is the writers' own
(:mod:`medtl.evaluation.threshold`, :mod:`medtl.evaluation.postprocess`, ...); these records
only read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from medtl.utils.records import Shape

__all__ = ["LeakFreeBlock", "LesionBlock", "PostprocessBlock", "SurfaceBlock", "ThresholdBlock"]


def _num(shape: Shape, value: Any, where: str) -> float:
    """A number that may be NaN (stored as null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    got = shape.number(value, where)
    return math.nan if got is None else got


def _block(shape: Shape, doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    return shape.mapping(doc.get(key), key, optional=True) or None


@dataclass(frozen=True)
class ThresholdBlock:
    """``seg_threshold``: the stored mask threshold and how it was chosen."""

    value: float
    rule: str
    fitted_on: str
    n_images: int | None
    val_dice_at_value: float
    val_dice_at_default: float
    per_structure: dict[str, float]  # a multilabel run's threshold per structure ({}: one)

    @classmethod
    def of(cls, doc: dict[str, Any], shape: Shape) -> ThresholdBlock | None:
        """The block of ``doc`` (None when absent or empty)."""
        b = _block(shape, doc, "seg_threshold")
        if b is None:
            return None
        w = "seg_threshold."
        return cls(
            value=float(shape.number(shape.get(b, "value", "seg_threshold"), w + "value", 0, 1)),
            rule=shape.text(b.get("rule"), w + "rule", optional=True) or "fixed",
            fitted_on=shape.text(b.get("fitted_on"), w + "fitted_on", optional=True) or "–",
            n_images=shape.integer(b.get("n_images"), w + "n_images", optional=True),
            val_dice_at_value=_num(shape, b.get("val_dice_at_value"), w + "val_dice_at_value"),
            val_dice_at_default=_num(
                shape, b.get("val_dice_at_default"), w + "val_dice_at_default"
            ),
            per_structure={
                str(k): float(shape.number(v, f"{w}per_structure.{k}", 0, 1))
                for k, v in shape.mapping(b.get("per_structure"), w + "per_structure", True).items()
            },
        )


@dataclass(frozen=True)
class PostprocessBlock:
    """``postprocess``: the mask rule and the mean Dice before and after it."""

    rule: str
    dice_before: float
    dice_after: float

    @classmethod
    def of(cls, doc: dict[str, Any], shape: Shape) -> PostprocessBlock | None:
        """The block of ``doc`` (None when absent or empty)."""
        b = _block(shape, doc, "postprocess")
        if b is None:
            return None
        return cls(
            rule=shape.text(shape.get(b, "rule", "postprocess"), "postprocess.rule"),
            dice_before=_num(shape, b.get("dice_before"), "postprocess.dice_before"),
            dice_after=_num(shape, b.get("dice_after"), "postprocess.dice_after"),
        )


def _mean_of(shape: Shape, block: Any, where: str) -> float:
    """The ``mean`` of an aggregate block (NaN when absent)."""
    got = shape.mapping(block, where, optional=True)
    return _num(shape, got.get("mean"), where + ".mean")


@dataclass(frozen=True)
class LeakFreeBlock:
    """``leak_free``: the images without a duplicate in train, scored on their own."""

    n_images: int
    n_leaked: int
    means: dict[str, float]  # dice / iou / accuracy present in the block, in that order

    @classmethod
    def of(cls, doc: dict[str, Any], shape: Shape) -> LeakFreeBlock | None:
        """The block of ``doc`` (None when absent or empty)."""
        b = _block(shape, doc, "leak_free")
        if b is None:
            return None
        w = "leak_free."
        return cls(
            n_images=shape.integer(shape.get(b, "n_images", "leak_free"), w + "n_images"),
            n_leaked=shape.integer(shape.get(b, "n_leaked", "leak_free"), w + "n_leaked"),
            means={k: _mean_of(shape, b[k], w + k) for k in ("dice", "iou", "accuracy") if k in b},
        )


@dataclass(frozen=True)
class LesionBlock:
    """``lesions``: lesion-level detection over a split."""

    n_lesions: int
    detected: int
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    false_positives_per_image: float  # mean over the images

    @classmethod
    def of(cls, doc: dict[str, Any], shape: Shape) -> LesionBlock | None:
        """The block of ``doc`` (None when absent or empty)."""
        b = _block(shape, doc, "lesions")
        if b is None:
            return None
        w = "lesions."
        ci = shape.listing(b.get("sensitivity_ci"), w + "sensitivity_ci", optional=True)
        lo, hi = (ci + [None, None])[:2]
        return cls(
            n_lesions=shape.integer(shape.get(b, "n_lesions", "lesions"), w + "n_lesions"),
            detected=shape.integer(shape.get(b, "detected", "lesions"), w + "detected"),
            sensitivity=_num(shape, b.get("sensitivity"), w + "sensitivity"),
            sensitivity_ci=(
                _num(shape, lo, w + "sensitivity_ci"),
                _num(shape, hi, w + "sensitivity_ci"),
            ),
            false_positives_per_image=_mean_of(
                shape, b.get("false_positives_per_image"), w + "false_positives_per_image"
            ),
        )


@dataclass(frozen=True)
class SurfaceBlock:
    """A segmentation's surface and area facts (``msd``, ``abs_area_error``, the HD95
    definition and lesion criterion), with its :class:`LesionBlock` when lesions were
    counted."""

    msd_mean: float
    msd_std: float
    msd_n: int | None
    abs_area_error_mean: float
    hd95_definition: str | None
    lesion_criterion: str
    lesions: LesionBlock | None

    @classmethod
    def of(cls, doc: dict[str, Any], shape: Shape) -> SurfaceBlock | None:
        """The facts of ``doc`` (None without an ``msd`` block)."""
        msd = _block(shape, doc, "msd")
        if msd is None:
            return None
        return cls(
            msd_mean=_num(shape, msd.get("mean"), "msd.mean"),
            msd_std=_num(shape, msd.get("std"), "msd.std"),
            msd_n=shape.integer(msd.get("n"), "msd.n", optional=True),
            abs_area_error_mean=_mean_of(shape, doc.get("abs_area_error"), "abs_area_error"),
            hd95_definition=shape.text(
                doc.get("hd95_definition"), "hd95_definition", optional=True
            ),
            lesion_criterion=shape.text(
                doc.get("lesion_criterion"), "lesion_criterion", optional=True
            )
            or "",
            lesions=LesionBlock.of(doc, shape),
        )
