"""Segmentation scores beyond the overlap ones, per image and per split: lesion-level
detection (:mod:`medtl.metrics.lesions`), area error, HD95 and the mean surface distance
(:mod:`medtl.metrics.surface`) in millimetres when the pixel spacing is known.

Pixel spacing of an image, first found of:

1. the sample's own ``spacing`` (a ``spacing`` column of a CSV manifest, ``"0.7"`` or
   ``"0.7x0.8"`` as row x column mm; a NIfTI slice's in-plane zooms);
2. the file's header (DICOM ``PixelSpacing`` / ``ImagerPixelSpacing``, via
   :func:`medtl.data.readers.io.pixel_spacing`);
3. ``data.spacing`` of the run's config.

Distances are in mm only when every image of the split has a spacing; otherwise all are in
pixels (one unit per table, never a mix), and a log line says how many images lacked one.
The unit is stored beside every number (``summary["distance_unit"]``) and printed with it.

Lesion-level detection is only for structures that are lesions (:func:`lesion_indices`):
binary masks by default (binary lesion masks; ``data.lesion_labels=none`` for an organ),
and for label maps the labels named in ``data.lesion_labels`` (names or stored values,
e.g. ``tumour,cyst``). Other structures (organs) get Dice/IoU/HD95/MSD and area error only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from medtl.metrics import aggregate, both_empty_scores, proportion_ci
from medtl.metrics.lesions import LESION_CRITERION, MIN_IOU, area_error, lesion_counts
from medtl.metrics.surface import check_hd95_definition, hd95_distance, mean_surface_distance
from medtl.runs.records import EvalSummary, as_summary
from medtl.utils.errors import ConfigError

log = logging.getLogger("medtl")
__all__ = ["SegScorer", "parse_spacing", "seg_extra_lines", "seg_extra_summary"]
LESION_KEYS = ("lesions", "lesions_detected", "pred_components", "false_positives")


def parse_spacing(value: Any, where: str = "data.spacing") -> tuple[float, float] | None:
    """``"0.7"`` / ``"0.7x0.8"`` / ``0.7`` / ``(0.7, 0.8)`` -> ``(row, column)`` mm; None for
    empty. Raises :class:`ConfigError` naming ``where`` for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = (
        [float(v) for v in value]
        if isinstance(value, (tuple, list))
        else str(value).lower().replace("×", "x").split("x")
    )
    try:
        nums = [float(v) for v in parts]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums *= 2
    if len(nums) != 2 or not all(np.isfinite(n) and n > 0 for n in nums):
        raise ConfigError(
            f"{where}: pixel spacing {value!r} is not a size in mm; give e.g. 0.7 or 0.7x0.8 "
            "(row x column)"
        )
    return (nums[0], nums[1])


def lesion_indices(data_cfg: Any, scheme: Any) -> tuple[int, ...]:
    """The label indices (1-based, as :meth:`MaskScheme.to_index` gives them) of ``scheme``
    (the run's :class:`~medtl.data.masks.scheme.MaskScheme`) whose structures are lesions:
    ``(1,)`` for binary masks unless ``data.lesion_labels=none``; for label maps the labels
    ``data.lesion_labels`` names (none when unset). An unknown name is a ConfigError naming
    the labels."""
    given = getattr(data_cfg, "lesion_labels", None)
    if given is not None and str(given).strip().lower() == "none":
        return ()
    if not scheme.values:
        return (1,)
    if given is None:
        return ()
    out = []
    for part in (p.strip() for p in str(given).split(",") if p.strip()):
        for k, (value, name) in enumerate(zip(scheme.values, scheme.names, strict=True), 1):
            if part == name or part == str(value):
                out.append(k)
                break
        else:
            raise ConfigError(
                f"data.lesion_labels: '{part}' is not a mask label; choose among "
                f"{', '.join(scheme.names)} (names or values)"
            )
    return tuple(sorted(set(out)))


def _sample_spacing(sample: Any, default: tuple[float, float] | None):
    from medtl.data.readers.io import pixel_spacing

    own = sample.meta.get("spacing") if getattr(sample, "meta", None) else None
    if own is not None:
        return parse_spacing(own, f"{sample.image}: spacing")
    try:
        found = pixel_spacing(sample.image)
    except Exception:  # an unreadable header: the image's decoder reports it, not this
        found = None
    return found if found else default


class SegScorer:
    """Per-image lesion, area and surface scores for one evaluated split.

    Args:
        samples: the data set's samples; ``indices`` those evaluated (their spacing is
            resolved up front so the unit is the same for the whole split).
        default_spacing: ``data.spacing`` (string or None).
        hd95: HD95 definition, ``pooled`` (default) or ``max_directed``.
        empty: the empty-mask rule (HD95 and MSD of two empty masks follow it).
    """

    def __init__(
        self,
        samples: Sequence[Any],
        indices: Sequence[int],
        default_spacing: Any = None,
        hd95: str = "pooled",
        empty: str = "one",
        min_iou: float = MIN_IOU,
        lesions: Sequence[int] = (1,),
    ) -> None:
        check_hd95_definition(hd95)
        self.hd95, self.empty, self.min_iou = hd95, empty, min_iou
        self.lesions = tuple(lesions)
        default = parse_spacing(default_spacing)
        found = {i: _sample_spacing(samples[i], default) for i in indices}
        missing = sum(v is None for v in found.values())
        if missing and missing < len(found):
            log.warning(
                "%d of %d images have no pixel spacing: distances in pixels for all "
                "(set data.spacing or a spacing column)",
                missing,
                len(found),
            )
        self.unit = "mm" if found and not missing else "px"
        self.spacing = found if self.unit == "mm" else {}

    @classmethod
    def of(
        cls,
        cfg: Any,
        scheme: Any,
        samples: Sequence[Any],
        indices: Sequence[int],
        decide: Any = None,
    ) -> SegScorer:
        """The scorer of an evaluation: ``data.spacing``, ``train.empty_mask`` of ``cfg``,
        the lesion labels of ``scheme`` (the run's mask scheme) and the HD95 definition of
        ``decide`` (:class:`medtl.evaluation.calibrate.Decisions`; None: pooled)."""
        hd95 = getattr(decide, "hd95", "pooled")
        lesions = lesion_indices(cfg.data, scheme)
        return cls(samples, indices, cfg.data.spacing, hd95, cfg.train.empty_mask, lesions=lesions)

    def __call__(self, idx: int, pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
        """The image's ``lesions``, ``lesions_detected``, ``pred_components``,
        ``false_positives`` (lesion structures only, :attr:`lesions`), ``area_error`` and
        ``hd95``/``msd`` (in :attr:`unit`) of the foreground. ``pred``/``truth`` are binary
        masks or label index maps."""
        sp = self.spacing.get(idx)
        row: dict[str, Any] = {}
        if self.lesions:
            les_pred, les_truth = np.isin(pred, self.lesions), np.isin(truth, self.lesions)
            row.update(lesion_counts(les_pred, les_truth, self.min_iou))
        pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
        row["area_error"] = round(area_error(pred, truth, sp), 6)
        if not pred.any() and not truth.any():
            hd = msd = both_empty_scores(self.empty)["hd95"]
        else:
            hd = hd95_distance(pred, truth, sp or 1.0, self.hd95)
            msd = mean_surface_distance(pred, truth, sp or 1.0)
        row["hd95"] = round(hd, 6) if np.isfinite(hd) else float("nan")
        row["msd"] = round(msd, 6) if np.isfinite(msd) else float("nan")
        return row

    def facts(self) -> dict[str, Any]:
        """What the summary records about these numbers."""
        facts = {"distance_unit": self.unit, "hd95_definition": self.hd95}
        if self.lesions:
            facts["lesion_criterion"] = LESION_CRITERION.format(min_iou=self.min_iou)
        return facts


def seg_extra_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Lesion sensitivity (pooled, Wilson CI), false positives per image, MSD and area error
    over a split's per-image records (``rec["row"]`` with the :class:`SegScorer` columns,
    ``rec["seg_facts"]`` its :meth:`SegScorer.facts`)."""
    rows = [r["row"] for r in records if "msd" in r["row"]]
    if not rows:
        return {}
    facts = next(r["seg_facts"] for r in records if "seg_facts" in r)
    out = {
        **facts,
        "msd": aggregate([float(r["msd"]) for r in rows]),
        "area_error": aggregate([float(r["area_error"]) for r in rows]),
        "abs_area_error": aggregate([abs(float(r["area_error"])) for r in rows]),
    }
    rows = [r for r in rows if "lesions" in r]
    if not rows:
        return out
    n_les = sum(int(r["lesions"]) for r in rows)
    hit = sum(int(r["lesions_detected"]) for r in rows)
    return {
        **out,
        "lesions": {
            "n_lesions": n_les,
            "detected": hit,
            "sensitivity": hit / n_les if n_les else float("nan"),
            "sensitivity_ci": list(proportion_ci(hit, n_les)),
            "false_positives": int(sum(int(r["false_positives"]) for r in rows)),
            "false_positives_per_image": aggregate([float(r["false_positives"]) for r in rows]),
        },
    }


def seg_extra_lines(summary: EvalSummary | dict[str, Any]) -> list[str]:
    """Console lines: lesion detection, MSD and area error, with their units (the
    summary's typed ``surface`` block)."""
    record = as_summary(summary)
    s, unit = record.surface, record.distance_unit
    if s is None:
        return []
    lines = []
    les = s.lesions
    if les is not None:
        lo, hi = les.sensitivity_ci
        lines = [
            f"  lesions: sensitivity {les.sensitivity:.3f} [{lo:.3f}, {hi:.3f}] ({les.detected}/"
            f"{les.n_lesions}), false positives per image {les.false_positives_per_image:.3f}",
            f"    ({s.lesion_criterion})",
        ]
    return lines + [
        f"  msd   {s.msd_mean:.4f} {unit} ± {s.msd_std:.4f}  (n={s.msd_n})  "
        f"|area error| {s.abs_area_error_mean:.1f} {unit}²  (HD95: {s.hd95_definition})",
    ]
