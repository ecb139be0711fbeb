"""The clinical numbers of a segmentation comparison, read from its runs' evaluations:
lesion-level detection, mean surface distance and area error per configuration, and the
test score on the leak-free subset of a pre-made test split.

**Detection and distances.** Each fold's ``per_image.csv`` holds the columns
:class:`medtl.evaluation.segmentation.SegScorer` wrote (``lesions``, ``lesions_detected``,
``false_positives``, ``msd``, ``area_error``) and its ``summary.json`` their
``distance_unit``. The rows of every fold are pooled and summarised by
:func:`medtl.evaluation.segmentation.seg_extra_summary`, the function evaluate uses for one split: lesion
sensitivity (detected / true lesions, Wilson CI), false positives per image, MSD and
|area error| (mean, BCa CI). Distances are in mm only when every fold's evaluation was in
mm; when a configuration's folds disagree its MSD and area error are left out (unit
``mixed``): pooled pixels and millimetres mean nothing.

**Leak-free test.** A pre-made ``test/`` folder can hold images with an exact or near
duplicate on the training side (:mod:`medtl.data.leaks`; every fold run lists them in
``RUN/leaks.json``). The leak-free subset of a configuration is the test images that no
fold lists, i.e. without a duplicate in any fold's training images (the union of the
folds' lists, so the fold models and the ensemble are scored on the same images); its
score is the test metric over those images, per fold model (summarised over the K
models) and for the fold ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medtl.data.leaks import read_leaks
from medtl.evaluation.segmentation import seg_extra_summary
from medtl.metrics.statistics import fold_summary
from medtl.utils.files import read_csv, to_float
from medtl.utils.formatting import fmt, fmt_stat

__all__ = [
    "clinical_cells",
    "clinical_csv",
    "clinical_head",
    "clinical_note",
    "clinical_result",
    "leak_free_note",
    "leak_free_test",
    "leaked_test_images",
    "table_unit",
]

Rows = list[dict[str, str]]


def clinical_result(rows: Rows, facts: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Lesion detection, false positives per image, MSD and |area error| pooled over
    ``rows`` (every fold's per-image rows); ``facts`` holds each fold's summary.json
    ``distance_unit`` and ``lesion_criterion``. None when the rows hold no lesion columns
    (classification, or runs evaluated without lesion scoring)."""
    scored = [r for r in rows if str(r.get("lesions", "")).strip() not in ("", "nan")]
    if not scored:
        return None
    known = {f.get("distance_unit") for f in facts if f.get("distance_unit")}
    unit = known.pop() if len(known) == 1 else ("mixed" if known else "px")
    s = seg_extra_summary([{"row": r, "seg_facts": {}} for r in scored])
    les = s["lesions"]
    out: dict[str, Any] = {
        "distance_unit": unit,
        "lesion_criterion": next(
            (f["lesion_criterion"] for f in facts if f.get("lesion_criterion")), None
        ),
        "n_images": len(scored),
        "lesions": {k: les[k] for k in ("n_lesions", "detected", "false_positives")},
        "false_positives_per_image": les["false_positives_per_image"],
        "msd": s["msd"] if unit != "mixed" else None,
        "abs_area_error": s["abs_area_error"] if unit != "mixed" else None,
    }
    lo, hi = les["sensitivity_ci"]
    out["lesions"].update(
        {"mean": les["sensitivity"], "ci_low": lo, "ci_high": hi, "n": les["n_lesions"]}
    )
    return out


def table_unit(configs: Sequence[dict[str, Any]]) -> str | None:
    """The one distance unit of every configuration's clinical numbers, ``mixed`` when they
    differ, None when no configuration has them."""
    units = {(c.get("clinical") or {}).get("distance_unit") for c in configs if c.get("clinical")}
    if not units:
        return None
    return units.pop() if len(units) == 1 else "mixed"


def leaked_test_images(runs: Sequence[Path]) -> set[str]:
    """Test images any of ``runs`` lists in its ``leaks.json`` (empty without one)."""
    leaked: set[str] = set()
    for run in runs:
        leaked.update(read_leaks(Path(run)).get("test") or [])
    return leaked


def leak_free_test(
    runs: Sequence[Path],
    ensemble: Path | None,
    metric: str,
    score: Callable[[Rows], dict[str, Any]],
) -> dict[str, Any] | None:
    """The test ``metric`` on the leak-free subset (module docstring) of the fold models
    ``runs`` and of the ``ensemble`` folder (None: not evaluated). ``score(rows)`` gives
    the metric's summary over rows (``mean``, CI), the same one the full test columns use.
    None when no run lists a leaked test image."""
    leaked = leaked_test_images(runs)
    if not leaked:
        return None
    per_fold, n_clean, n_test = [], 0, 0
    for run in runs:
        rows = read_csv(Path(run) / "eval" / "test" / "per_image.csv")
        clean = [r for r in rows if r["image"] not in leaked]
        n_clean, n_test = len(clean), len(rows)  # the same test images in every fold
        per_fold.append(score(clean)["mean"] if clean else math.nan)
    out: dict[str, Any] = {
        "metric": metric,
        "n_images": n_clean,
        "n_leaked": n_test - n_clean,
        "folds": fold_summary(per_fold),
        "ensemble": None,
    }
    if ensemble is not None:
        rows = read_csv(ensemble / "eval" / "test" / "per_image.csv")
        clean = [r for r in rows if r["image"] not in leaked]
        out["ensemble"] = score(clean) if clean else None
    return out


# ----------------------------------------------------------------------------- table cells
def clinical_head(unit: str | None) -> list[str]:
    """The results table's clinical column titles for the table's ``unit`` (none when no
    configuration has the numbers; ``mixed``: each cell names its own unit)."""
    if unit is None:
        return []
    u = "unit in each cell" if unit == "mixed" else unit
    area = "unit² in each cell" if unit == "mixed" else f"{unit}²"
    return ["lesion sensitivity [95% CI]", "FP per image", f"MSD ({u})", f"abs area error ({area})"]


def clinical_cells(c: dict[str, Any] | None, unit: str | None) -> list[str]:
    """One configuration's clinical cells (:func:`clinical_head`); ``–`` where missing."""
    if unit is None:
        return []
    if not c:
        return ["–"] * 4
    les = c["lesions"]
    sens = f"{fmt(les.get('mean'))} ({les['detected']}/{les['n_lesions']})"
    if math.isfinite(to_float(les.get("ci_low"))):
        sens += f" [{fmt(les['ci_low'])}, {fmt(les['ci_high'])}]"
    dist = []
    for key, power in (("msd", ""), ("abs_area_error", "²")):
        own = f" {c['distance_unit']}{power}" if unit == "mixed" and c.get(key) else ""
        dist.append(fmt_stat(c.get(key)) + own)  # the unit in the cell only when mixed
    return [sens, fmt_stat(c.get("false_positives_per_image")), *dist]


def clinical_csv(c: dict[str, Any]) -> dict[str, Any]:
    """``distance_unit``, ``lesion_*``, ``fp_per_image_*``, ``msd_*``, ``abs_area_error_*``
    columns of one configuration (none without clinical numbers)."""
    cl = c.get("clinical")
    if not cl:
        return {}
    les = cl["lesions"]
    row: dict[str, Any] = {"distance_unit": cl["distance_unit"]}
    row.update({f"lesion_{k}": les.get(k) for k in ("n_lesions", "detected", "false_positives")})
    for stat in ("mean", "ci_low", "ci_high"):
        row[f"lesion_sensitivity_{stat}"] = les.get(stat)
    for key, name in (("false_positives_per_image", "fp_per_image"), ("msd", "msd")):
        for stat in ("mean", "std", "ci_low", "ci_high"):
            row[f"{name}_{stat}"] = (cl.get(key) or {}).get(stat)
    for stat in ("mean", "std", "ci_low", "ci_high"):
        row[f"abs_area_error_{stat}"] = (cl.get("abs_area_error") or {}).get(stat)
    return row


def clinical_note(results: dict[str, Any]) -> str | None:
    """The table footer on the clinical columns (None without them)."""
    unit = table_unit(results["configs"])
    if unit is None:
        return None
    crit = {_c(c).get("lesion_criterion") for c in results["configs"]} - {None}
    text = (
        "Lesion-level detection pooled over every held-out image: lesion sensitivity = true "
        "lesions detected / true lesions, (detected/true) and the Wilson 95% CI; FP per "
        "image = false-positive predicted components per image; MSD = mean surface distance "
        "per image (the boundary distances of both directions pooled, medtl.metrics.surface); "
        "abs area error = |predicted - true area| per image (mean ± std [BCa CI]). "
        f"Criterion ({', '.join(sorted(crit)) or 'see medtl.metrics.lesions'})."
    )
    if unit == "mixed":
        text += (
            " **The distances are not in one unit** (mm where every image of a run had a "
            "pixel spacing, px otherwise): each cell names its unit; compare distances only "
            "within one unit."
        )
    else:
        text += f" Distances in {unit}, areas in {unit}² (one unit for the whole table)."
    mixed = [c["configuration"] for c in results["configs"] if _unit(c) == "mixed"]
    if mixed:
        text += " Folds evaluated in different units (MSD and area left out): " + ", ".join(mixed)
    return text


def _c(c: dict[str, Any]) -> dict[str, Any]:
    return c.get("clinical") or {}


def _unit(c: dict[str, Any]) -> str | None:
    return _c(c).get("distance_unit")


def leak_free_note(results: dict[str, Any]) -> str | None:
    """The table footer on the leak-free test columns (None without leaked test images)."""
    got = [(c.get("test") or {}).get("leak_free") for c in results["configs"]]
    got = [g for g in got if g]
    if not got:
        return None
    return (
        f"Leak-free: the pre-made test split holds {got[0]['n_leaked']} image(s) with an "
        "exact or near duplicate among the training images of some fold (RUN/leaks.json); "
        "the leak-free columns score the test metric on the other "
        f"{got[0]['n_images']} test images (fold models: mean ± std [CI] over the K models; "
        "ensemble: [CI] over those images), beside the full test split's numbers."
    )
