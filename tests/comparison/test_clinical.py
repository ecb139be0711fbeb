"""compare's table with the clinical segmentation numbers (lesion-level detection, MSD and
area error with their unit) and the leak-free test column, on
comparison folders built by hand: tiny run folders holding per_image.csv / summary.json as
evaluate writes them, so nothing is trained."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from medtl.comparison import collect
from medtl.comparison.tables import results_csv, table_rows

CRITERION = (
    "a true lesion (8-connected component) is detected when a predicted component overlaps "
    "it with IoU >= 0.1; a predicted component with IoU >= 0.1 on no true lesion is a false "
    "positive"
)
# per configuration and fold: (lesions, detected, false positives, msd, area error) per image
VAL = {
    "good": [
        [(2, 2, 0, 1.5, -4.0), (1, 1, 1, 2.5, 6.0), (0, 0, 0, math.nan, 0.0)],
        [(1, 1, 0, 0.5, 2.0), (3, 2, 0, 3.0, -8.0), (1, 0, 2, 7.0, 10.0)],
    ],
    "bad": [
        [(2, 1, 1, 4.0, -6.0), (1, 0, 2, 9.0, 12.0), (0, 0, 1, 5.0, 9.0)],
        [(1, 0, 0, 6.0, -3.0), (3, 1, 3, 8.0, -14.0), (1, 1, 0, 2.0, 1.0)],
    ],
}
DICE = {"good": 0.8, "bad": 0.4}
TEST_IMAGES = [f"/d/test/t{i}.png" for i in range(6)]
TEST_DICE = {  # per configuration: fold 0, fold 1 and the ensemble, per test image
    "good": ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.95, 0.85, 0.6, 0.7, 0.4, 0.5], [0.92] * 6),
    "bad": ([0.5, 0.4, 0.3, 0.2, 0.3, 0.4], [0.6, 0.5, 0.2, 0.3, 0.2, 0.5], [0.5] * 6),
}
LEAKED = {0: ["/d/test/t0.png"], 1: ["/d/test/t1.png"]}  # each fold's leaks.json "test"


def _write_eval(run: Path, split: str, rows: list[dict], summary: dict) -> None:
    ev = run / "eval" / split
    ev.mkdir(parents=True)
    (ev / "summary.json").write_text(json.dumps({"split": split, **summary}))
    with (ev / "per_image.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _row(image: str, dice: float, lesion: tuple | None = None) -> dict:
    row = {"image": image, "class": "", "dice": dice, "iou": dice / (2 - dice), "hd95": 3.0}
    if lesion is not None:
        les, det, fp, msd, area = lesion
        row.update(lesions=les, lesions_detected=det, pred_components=det + fp)
        row.update(false_positives=fp, area_error=area, msd=msd)
    return row


def _build(root: Path, units: dict[tuple[str, int], str], leaks: bool = True) -> Path:
    """A finished 2-fold comparison of two configurations, with a test split no fold saw."""
    cells = [{"id": "good", "overrides": ["x=1"]}, {"id": "bad", "overrides": ["x=2"]}]
    design = {
        "format": "medtl-compare-1",
        "base_overrides": [],
        "grid": ["x=1,2"],
        "folds": 2,
        "eval_split": "val",
        "seed": 0,
        "task": "segmentation",
        "cells": cells,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "compare.json").write_text(json.dumps(design))
    for cell in ("good", "bad"):
        for f in range(2):
            run = root / "cells" / cell / f"fold{f}"
            run.mkdir(parents=True)
            (run / "model.pt").write_bytes(b"")
            rows = [
                _row(f"/d/f{f}_{i}.png", DICE[cell] + 0.01 * i, les)
                for i, les in enumerate(VAL[cell][f])
            ]
            facts = {"distance_unit": units[(cell, f)], "lesion_criterion": CRITERION}
            _write_eval(run, "val", rows, facts)
            test = [_row(im, d) for im, d in zip(TEST_IMAGES, TEST_DICE[cell][f], strict=True)]
            _write_eval(run, "test", test, {})
            leaked = {"format": "medtl-leaks-1", "val": [], "test": LEAKED[f] if leaks else []}
            (run / "leaks.json").write_text(json.dumps(leaked))
        ens = root / "cells" / cell / "ensemble"
        test = [_row(im, d) for im, d in zip(TEST_IMAGES, TEST_DICE[cell][2], strict=True)]
        _write_eval(ens, "test", test, {})
    return root


def _expected(cell: str) -> dict:
    rows = [r for fold in VAL[cell] for r in fold]
    les, det, fp, msd, area = (np.array(v, dtype=float) for v in zip(*rows, strict=True))
    ci = stats.binomtest(int(det.sum()), int(les.sum())).proportion_ci(method="wilson")
    return {
        "sensitivity": det.sum() / les.sum(),
        "ci": (ci.low, ci.high),
        "fp": fp.mean(),
        "msd": np.nanmean(msd),
        "area": np.abs(area).mean(),
        "detected": int(det.sum()),
        "n_lesions": int(les.sum()),
    }


ALL_MM = {(c, f): "mm" for c in ("good", "bad") for f in range(2)}


def test_clinical_columns_in_mm(tmp_path):
    out = _build(tmp_path / "cmp", ALL_MM)
    res = collect(out, quiet=True)
    assert [c["cell"] for c in res["configs"]] == ["good", "bad"]
    for c in res["configs"]:
        want, got = _expected(c["cell"]), c["clinical"]
        assert got["distance_unit"] == "mm" and got["lesion_criterion"] == CRITERION
        assert got["lesions"]["mean"] == pytest.approx(want["sensitivity"])
        assert (got["lesions"]["ci_low"], got["lesions"]["ci_high"]) == pytest.approx(want["ci"])
        assert got["lesions"]["detected"] == want["detected"]
        assert got["false_positives_per_image"]["mean"] == pytest.approx(want["fp"])
        assert got["msd"]["mean"] == pytest.approx(want["msd"])
        assert got["msd"]["n_nan"] == (1 if c["cell"] == "good" else 0)  # two empty masks
        assert got["abs_area_error"]["mean"] == pytest.approx(want["area"])
    good = _expected("good")
    assert (good["detected"], good["n_lesions"]) == (6, 8)  # 0.75 by hand
    head, rows = table_rows(res)
    for title in (
        "lesion sensitivity [95% CI]",
        "FP per image",
        "MSD (mm)",
        "abs area error (mm²)",
    ):
        assert title in head
    cells = dict(zip(head, rows[0], strict=True))
    lo, hi = good["ci"]
    assert cells["lesion sensitivity [95% CI]"] == f"0.750 (6/8) [{lo:.3f}, {hi:.3f}]"
    assert cells["MSD (mm)"].startswith(f"{good['msd']:.3f} ± ")
    assert cells["abs area error (mm²)"].startswith(f"{good['area']:.3f} ± ")
    assert cells["abs area error (mm²)"].endswith("]") and cells["MSD (mm)"].endswith("]")
    # the same numbers in results.md / .csv / .json and the HTML comparison page
    md = (out / "results.md").read_text()
    assert "| MSD (mm) |" in md and "0.750 (6/8)" in md and "one unit for the whole table" in md
    assert CRITERION in md
    csv_rows = list(csv.DictReader((out / "results.csv").open()))
    assert csv_rows[0]["distance_unit"] == "mm"
    assert float(csv_rows[0]["lesion_sensitivity_mean"]) == pytest.approx(0.75)
    assert float(csv_rows[0]["msd_mean"]) == pytest.approx(good["msd"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["configs"][0]["clinical"]["lesions"]["detected"] == 6

    from medtl.reporting import write_report

    text = write_report(out).read_text()
    assert "MSD (mm)" in text and "abs area error (mm²)" in text and "0.750 (6/8)" in text
    assert "one unit for the whole table" in text and "Holm step-down" in text


def test_units_are_never_mixed_in_one_number(tmp_path):
    units = {**ALL_MM, ("bad", 1): "px", ("good", 0): "px", ("good", 1): "px"}
    res = collect(_build(tmp_path / "cmp", units), quiet=True)
    good, bad = res["configs"]
    assert good["clinical"]["distance_unit"] == "px"
    # bad's folds were scored in mm and px: its distances are left out, detection kept
    assert bad["clinical"]["distance_unit"] == "mixed"
    assert bad["clinical"]["msd"] is None and bad["clinical"]["abs_area_error"] is None
    assert bad["clinical"]["lesions"]["mean"] == pytest.approx(_expected("bad")["sensitivity"])
    head, rows = table_rows(res)
    assert "MSD (unit in each cell)" in head and "MSD (mm)" not in head
    cells = [dict(zip(head, r, strict=True)) for r in rows]
    assert cells[0]["MSD (unit in each cell)"].endswith(" px")
    assert cells[0]["abs area error (unit² in each cell)"].endswith(" px²")
    assert cells[1]["MSD (unit in each cell)"] == "–"
    md = results_csv(res)
    assert "mixed" in md
    text = (Path(tmp_path / "cmp") / "results.md").read_text()
    assert "The distances are not in one unit" in text and "x=2" in text.split("MSD and")[1]


def test_leak_free_test_column(tmp_path):
    res = collect(_build(tmp_path / "cmp", ALL_MM), quiet=True)
    clean = slice(2, 6)  # t0 leaked in fold 0, t1 in fold 1: the union is left out
    for c in res["configs"]:
        lf = c["test"]["leak_free"]
        f0, f1, ens = TEST_DICE[c["cell"]]
        assert (lf["n_images"], lf["n_leaked"], lf["metric"]) == (4, 2, "dice")
        assert lf["folds"]["values"] == pytest.approx([np.mean(f0[clean]), np.mean(f1[clean])])
        assert lf["ensemble"]["mean"] == pytest.approx(np.mean(ens[clean]))
        full = c["test"]["folds"]["dice"]["values"]
        assert full == pytest.approx([np.mean(f0), np.mean(f1)])  # the full split beside it
    head, rows = table_rows(res)
    i = head.index("Dice test leak-free, fold models")
    assert head[i - 4 : i - 2] == ["Dice test, fold models", "Dice test, ensemble"]
    good = dict(zip(head, rows[0], strict=True))
    want = np.mean([np.mean(TEST_DICE["good"][0][clean]), np.mean(TEST_DICE["good"][1][clean])])
    assert good["Dice test leak-free, fold models"].startswith(f"{want:.3f} ± ")
    assert good["Dice test leak-free, ensemble"].startswith("0.920")
    assert good["leak-free test images"] == "4 of 6"
    md = (tmp_path / "cmp" / "results.md").read_text()
    assert "Leak-free: the pre-made test split holds 2 image(s)" in md

    from medtl.reporting import write_report

    text = write_report(tmp_path / "cmp").read_text()
    assert "Dice test leak-free, ensemble" in text and "4 of 6" in text
    assert "Leak-free: the pre-made test split holds 2 image(s)" in text
    row = next(csv.DictReader((tmp_path / "cmp" / "results.csv").open()))
    assert float(row["test_leak_free_folds_mean"]) == pytest.approx(want)
    assert (row["test_leak_free_n_images"], row["test_n_leaked"]) == ("4", "2")


def test_no_leak_no_column(tmp_path):
    res = collect(_build(tmp_path / "cmp", ALL_MM, leaks=False), quiet=True)
    assert all(c["test"]["leak_free"] is None for c in res["configs"])
    head, _ = table_rows(res)
    assert not any("leak-free" in h for h in head)
    assert "Leak-free" not in (tmp_path / "cmp" / "results.md").read_text()
