"""The report's tables for evaluate's decision numbers, read from ``summary.json``:
temperature scaling (ECE before/after), the operating-point table (sensitivity,
specificity, PPV, NPV at the threshold chosen on validation) and lesion-level detection
with surface distances in their unit. Rendering only: the numbers come from
:mod:`medtl.evaluation.calibrate` and :mod:`medtl.evaluation.segmentation`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medtl.comparison import fmt

__all__ = ["decision_tables", "lesion_table"]


def _ci(r: Mapping[str, Any], key: str) -> str:
    lo, hi = (r.get(key + "_ci") or [None, None])[:2]
    return f"{fmt(r.get(key))} [{fmt(lo)}, {fmt(hi)}]"


def decision_tables(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Calibration and operating-point tables of one evaluated split (none when absent)."""
    out = []
    cal = summary.get("calibration")
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
                    [summary.get("split", "this split"), *(fmt(s.get(k)) for k in _CAL_KEYS)],
                ],
            }
        )
    op = summary.get("operating_points")
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


def lesion_table(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Lesion detection, false positives per image, MSD and area error (units named)."""
    les = summary.get("lesions")
    if not les:
        return []
    unit = summary.get("distance_unit", "px")
    fp, msd = les.get("false_positives_per_image") or {}, summary.get("msd") or {}
    area = summary.get("abs_area_error") or {}
    rows = [
        [
            "lesion sensitivity",
            f"{_ci(les, 'sensitivity')} ({les.get('detected')}/{les.get('n_lesions')})",
        ],
        ["false positives per image", fmt(fp.get("mean"))],
        [f"mean surface distance ({unit})", fmt(msd.get("mean"))],
        [f"|area error| ({unit}²)", fmt(area.get("mean"))],
        ["HD95 definition", str(summary.get("hd95_definition", "pooled"))],
        ["lesion criterion", str(summary.get("lesion_criterion", ""))],
    ]
    return [{"head": ["lesion-level", "value"], "rows": rows}]
