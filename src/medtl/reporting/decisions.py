"""The report's tables of an evaluation's decision numbers, read from ``summary.json``:
temperature scaling (ECE before/after), the operating-point table (sensitivity,
specificity, PPV, NPV at the threshold chosen on validation) and lesion-level detection
with surface distances in their unit. Rendering only: the numbers come from
:mod:`medtl.evaluation.calibrate` and :mod:`medtl.evaluation.segmentation`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medtl.comparison import fmt
from medtl.runs.records import EvalSummary

__all__ = ["decision_tables", "lesion_table"]


def _ci(r: Mapping[str, Any], key: str) -> str:
    lo, hi = (r.get(key + "_ci") or [None, None])[:2]
    return f"{fmt(r.get(key))} [{fmt(lo)}, {fmt(hi)}]"


def decision_tables(summary: EvalSummary) -> list[dict[str, Any]]:
    """Calibration and operating-point tables of one evaluated split (none when absent)."""
    out = []
    cal = summary.calibration
    if cal:
        v, s = cal.get("val") or {}, cal.get("split") or {}
        t = f"temperature {fmt(cal.get('temperature'))}" + (
            "" if cal.get("kept", True) else " (not applied: " + str(cal.get("reason")) + ")"
        )
        out.append(
            {
                "head": ["calibration", "ECE before", "ECE after", "NLL before", "NLL after"],
                "rows": [
                    [f"validation ({t})", *(fmt(v.get(k)) for k in _CAL_KEYS)],
                    [summary.split, *(fmt(s.get(k)) for k in _CAL_KEYS)],
                ],
            }
        )
    op = summary.operating_points
    if op:
        head = [f"class: {op.get('name')} on val", "threshold", "sensitivity", "specificity"]
        rows = [
            [
                c,
                fmt(r.get("threshold")),
                *(_ci(r, k) for k in ("sensitivity", "specificity", "ppv", "npv")),
            ]
            for c, r in (op.get("per_class") or {}).items()
        ]
        out.append({"head": [*head, "PPV", "NPV"], "rows": rows})
    return out


_CAL_KEYS = ("ece_before", "ece_after", "nll_before", "nll_after")


def lesion_table(summary: EvalSummary) -> list[dict[str, Any]]:
    """Lesion detection, false positives per image, MSD and area error (units named), from
    the summary's typed ``surface`` block (:class:`medtl.runs.summary_blocks.SurfaceBlock`)."""
    s = summary.surface
    les = s.lesions if s is not None else None
    if s is None or les is None:
        return []
    unit = summary.distance_unit
    lo, hi = les.sensitivity_ci
    sens = f"{fmt(les.sensitivity)} [{fmt(lo)}, {fmt(hi)}]"
    rows = [
        ["lesion sensitivity", f"{sens} ({les.detected}/{les.n_lesions})"],
        ["false positives per image", fmt(les.false_positives_per_image)],
        [f"mean surface distance ({unit})", fmt(s.msd_mean)],
        [f"|area error| ({unit}²)", fmt(s.abs_area_error_mean)],
        ["HD95 definition", str(s.hd95_definition or "pooled")],
        ["lesion criterion", s.lesion_criterion],
    ]
    return [{"head": ["lesion-level", "value"], "rows": rows}]
