"""summary.json's optional blocks read as typed records; the console lines read them."""

from __future__ import annotations

import json
import math

import pytest

from medtl.api import format_summary
from medtl.runs.records import EvalSummary
from medtl.utils.errors import DataError

AGG = {"mean": 0.5, "std": 0.1, "ci_low": 0.4, "ci_high": 0.6, "n": 4}
DOC = {
    "run": "r",
    "split": "val",
    "n_images": 4,
    "distance_unit": "mm",
    "empty_mask_rule": "both empty = 1",
    "segmentation": {"dice": AGG, "iou": AGG, "hd95": AGG},
    "msd": {"mean": 1.25, "std": 0.5, "n": 4},
    "abs_area_error": {"mean": 3.0},
    "hd95_definition": "pooled",
    "lesion_criterion": "IoU >= 0.1",
    "lesions": {
        "n_lesions": 5,
        "detected": 4,
        "sensitivity": 0.8,
        "sensitivity_ci": [0.5, 0.9],
        "false_positives_per_image": {"mean": 0.25},
    },
    "seg_threshold": {
        "value": 0.35,
        "rule": "max val Dice",
        "fitted_on": "val",
        "n_images": 4,
        "val_dice_at_value": 0.7,
        "val_dice_at_default": None,
    },
    "postprocess": {"rule": "largest", "dice_before": 0.5, "dice_after": 0.625},
    "leak_free": {"n_images": 3, "n_leaked": 1, "dice": {"mean": 0.75}, "iou": {"mean": 0.5}},
}


def _write(tmp_path, doc) -> str:
    path = tmp_path / "eval" / "val" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return str(path)


def test_blocks_are_typed_and_the_lines_read_them(tmp_path):
    s = EvalSummary.read(_write(tmp_path, DOC))
    assert s.threshold.value == 0.35 and math.isnan(s.threshold.val_dice_at_default)
    assert (s.postprocess.rule, s.postprocess.dice_after) == ("largest", 0.625)
    assert (s.leak_free.n_images, s.leak_free.means) == (3, {"dice": 0.75, "iou": 0.5})
    assert s.surface.lesions.sensitivity_ci == (0.5, 0.9)
    assert s.doc == DOC  # the file's document is kept as read
    lines = format_summary(s).splitlines()
    assert (
        "  lesions: sensitivity 0.800 [0.500, 0.900] (4/5), false positives per image 0.250"
        in lines
    )
    assert "    (IoU >= 0.1)" in lines
    assert "  msd   1.2500 mm ± 0.5000  (n=4)  |area error| 3.0 mm²  (HD95: pooled)" in lines
    assert (
        "  mask threshold 0.35 (max val Dice, chosen on val; val Dice 0.7000 vs – at 0.5)" in lines
    )
    assert "  post-processing largest: Dice 0.5000 before, 0.6250 after" in lines
    assert (
        "  leak-free subset: 3 images (1 with a duplicate in train left out): dice 0.7500, iou 0.5000"
        in lines
    )


def test_an_older_file_without_the_optional_keys_still_reads(tmp_path):
    old = {**DOC, "seg_threshold": {"value": 0.4}}
    for key in ("hd95_definition", "lesion_criterion"):
        old.pop(key)
    s = EvalSummary.read(_write(tmp_path, old))
    assert (s.threshold.value, s.threshold.rule, s.threshold.fitted_on) == (0.4, "fixed", "–")
    assert s.surface.hd95_definition is None and s.surface.lesion_criterion == ""
    assert "  mask threshold 0.4 (fixed, chosen on –; val Dice – vs – at 0.5)" in format_summary(s)


@pytest.mark.parametrize(
    ("block", "value", "says"),
    [
        ("postprocess", {"dice_before": 0.5}, "postprocess.rule is missing"),
        ("leak_free", {"n_images": "3", "n_leaked": 1}, "leak_free.n_images"),
        ("lesions", {"n_lesions": 2}, "lesions.detected is missing"),
        ("seg_threshold", {"rule": "fixed"}, "seg_threshold.value is missing"),
    ],
)
def test_a_damaged_block_is_one_line_naming_the_file(tmp_path, block, value, says):
    path = _write(tmp_path, {**DOC, block: value})
    with pytest.raises(DataError, match=says) as got:
        EvalSummary.read(path)
    assert path in str(got.value) and "\n" not in str(got.value)


def test_the_report_lesion_table_reads_the_typed_block(tmp_path):
    from medtl.reporting.decisions import lesion_table

    (table,) = lesion_table(EvalSummary.read(_write(tmp_path, DOC)))
    assert table["rows"] == [
        ["lesion sensitivity", "0.800 [0.500, 0.900] (4/5)"],
        ["false positives per image", "0.250"],
        ["mean surface distance (mm)", "1.250"],
        ["|area error| (mm²)", "3.000"],
        ["HD95 definition", "pooled"],
        ["lesion criterion", "IoU >= 0.1"],
    ]
