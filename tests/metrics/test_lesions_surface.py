"""Lesion-level detection, area error and surface distances on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.evaluation.segmentation import SegScorer, parse_spacing, seg_extra_summary
from medtl.metrics.lesions import area_error, lesion_counts
from medtl.metrics.segmentation import hd95
from medtl.metrics.surface import (
    HD95_DEFINITIONS,
    directed_distances,
    hd95_distance,
    mean_surface_distance,
)
from medtl.utils.errors import ConfigError


def _mask(shape=(20, 20), *boxes):
    m = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


def test_two_lesions_one_found_one_false_positive():
    truth = _mask((20, 20), (1, 5, 1, 5), (10, 14, 10, 14))
    pred = _mask((20, 20), (1, 5, 2, 6), (17, 19, 0, 2))
    assert lesion_counts(pred, truth) == {
        "lesions": 2,
        "lesions_detected": 1,
        "pred_components": 2,
        "false_positives": 1,
    }


def test_touching_is_not_detection_iou_criterion():
    truth = _mask((20, 20), (2, 12, 2, 12))  # 100 px
    pred = _mask((20, 20), (11, 15, 11, 15))  # overlaps 1 px: IoU 1/115 < 0.1
    c = lesion_counts(pred, truth)
    assert c["lesions_detected"] == 0 and c["false_positives"] == 1
    assert lesion_counts(pred, truth, min_iou=0.0)["lesions_detected"] == 1  # 'any overlap'


def test_diagonal_pixels_are_one_lesion_and_a_blob_detects_both():
    truth = np.zeros((6, 6), bool)
    truth[1, 1] = truth[2, 2] = True  # 8-connected: one lesion
    assert lesion_counts(truth, truth)["lesions"] == 1
    two = _mask((10, 10), (0, 2, 0, 2), (0, 2, 3, 5))
    blob = _mask((10, 10), (0, 2, 0, 5))  # IoU 4/10 with each
    assert lesion_counts(blob, two) == {
        "lesions": 2,
        "lesions_detected": 2,
        "pred_components": 1,
        "false_positives": 0,
    }


def test_empty_masks():
    e = np.zeros((8, 8), bool)
    assert lesion_counts(e, e) == dict.fromkeys(
        ("lesions", "lesions_detected", "pred_components", "false_positives"), 0
    )
    assert lesion_counts(e, _mask((8, 8), (0, 2, 0, 2)))["lesions_detected"] == 0
    assert hd95_distance(e, e) == 0.0 and np.isnan(hd95_distance(e, _mask((8, 8), (0, 1, 0, 1))))
    assert mean_surface_distance(e, e) == 0.0


def test_area_error_pixels_and_mm2():
    t, p = _mask((10, 10), (0, 4, 0, 4)), _mask((10, 10), (0, 5, 0, 4))
    assert area_error(p, t) == 4.0
    assert area_error(p, t, (0.5, 2.0)) == pytest.approx(4.0)
    assert area_error(t, p, (0.5, 0.5)) == pytest.approx(-1.0)


def test_pooled_hd95_is_medtls_existing_one_and_max_directed_is_not_smaller():
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = rng.random((24, 24)) > 0.7
        p = rng.random((24, 24)) > 0.6
        assert hd95_distance(p, t) == pytest.approx(hd95(p, t))
        assert hd95_distance(p, t, definition="max_directed") >= hd95_distance(p, t) - 1e-12


def test_max_directed_by_hand_and_spacing_in_mm():
    truth = _mask((16, 16), (2, 10, 2, 10))
    pred = truth.copy()
    pred[5:7, 10:14] = True
    d_pt, d_tp = directed_distances(pred, truth)
    assert hd95_distance(pred, truth, definition="max_directed") == pytest.approx(
        max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    )
    assert hd95_distance(pred, truth, definition="max_directed") > hd95_distance(pred, truth)
    # a 4-pixel horizontal protrusion: 0.5 mm columns halve the column distances
    assert hd95_distance(pred, truth, spacing=(1.0, 0.5)) < hd95_distance(pred, truth)
    assert hd95_distance(pred, truth, spacing=0.5) == pytest.approx(hd95(pred, truth) / 2)
    assert mean_surface_distance(pred, truth) == pytest.approx(np.concatenate([d_pt, d_tp]).mean())
    with pytest.raises(ConfigError, match="max_directed"):
        hd95_distance(pred, truth, definition="monai")


def test_cli_hd95_is_checked_against_the_definitions():
    """--hd95 takes the definitions of medtl.metrics.surface (no copy in the parser): a
    typo is a ConfigError with a suggestion before anything is read, every definition
    passes."""
    from medtl.cli.decisions import evaluate_options
    from medtl.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(["evaluate", "RUN", "--hd95", "max-directed"])
    with pytest.raises(ConfigError, match="did you mean 'max_directed'"):
        evaluate_options(args)
    for definition in HD95_DEFINITIONS:
        args = parser.parse_args(["evaluate", "RUN", "--hd95", definition])
        decide = evaluate_options(args).get("decide")
        assert (decide.hd95 if decide else "pooled") == definition


def test_parse_spacing():
    assert parse_spacing("0.7") == (0.7, 0.7)
    assert parse_spacing("0.7x0.8") == (0.7, 0.8)
    assert parse_spacing((0.5, 0.6)) == (0.5, 0.6)
    assert parse_spacing(None) is None and parse_spacing(" ") is None
    with pytest.raises(ConfigError, match="0.7x0.8"):
        parse_spacing("abc")
    with pytest.raises(ConfigError):
        parse_spacing("-1")


class _S:
    def __init__(self, name, spacing=None):
        from pathlib import Path

        self.image = Path(name)
        self.meta = {"spacing": spacing} if spacing else {}


def test_scorer_units_mm_only_when_every_image_has_spacing():
    truth = _mask((16, 16), (2, 10, 2, 10))
    pred = truth.copy()
    pred[5:7, 10:14] = True
    both = [_S("a.png", "0.5"), _S("b.png", "0.5x0.5")]
    sc = SegScorer(both, [0, 1])
    assert sc.unit == "mm"
    assert sc(0, pred, truth)["hd95"] == pytest.approx(hd95(pred, truth) / 2, abs=1e-6)
    assert sc(0, pred, truth)["area_error"] == pytest.approx(8 * 0.25)
    mixed = SegScorer([_S("a.png", "0.5"), _S("b.png")], [0, 1])
    assert mixed.unit == "px" and mixed(0, pred, truth)["area_error"] == 8
    default = SegScorer([_S("a.png"), _S("b.png")], [0, 1], default_spacing="2")
    assert default.unit == "mm" and default.facts()["distance_unit"] == "mm"
    assert "IoU >= 0.1" in default.facts()["lesion_criterion"]


def test_seg_extra_summary_pools_lesions():
    sc = SegScorer([_S("a.png"), _S("b.png")], [0, 1])
    truth = _mask((20, 20), (1, 5, 1, 5), (10, 14, 10, 14))
    pred = _mask((20, 20), (1, 5, 2, 6), (17, 19, 0, 2))
    records = [
        {"row": sc(0, pred, truth), "seg_facts": sc.facts()},
        {"row": sc(1, truth, truth), "seg_facts": sc.facts()},
    ]
    s = seg_extra_summary(records)
    les = s["lesions"]
    assert (les["n_lesions"], les["detected"], les["false_positives"]) == (4, 3, 1)
    assert les["sensitivity"] == 0.75 and les["false_positives_per_image"]["mean"] == 0.5
    assert s["distance_unit"] == "px" and s["hd95_definition"] == "pooled"


def test_csv_manifest_spacing_column_gives_millimetres(tmp_path):
    from PIL import Image

    from medtl.data.layouts import discover_csv

    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "m.csv").write_text("image,spacing\na.png,0.5x0.25\nb.png,\n", encoding="utf-8")
    samples, problems = discover_csv(tmp_path)
    assert not problems and samples[0].meta == {"spacing": "0.5x0.25"} and samples[1].meta == {}
    assert SegScorer(samples, [0]).spacing == {0: (0.5, 0.25)}
    assert SegScorer(samples, [0, 1]).unit == "px"  # b.png has none: one unit for the split
    assert SegScorer(samples, [0, 1], default_spacing="1").unit == "mm"


def test_evaluate_segmentation_reports_lesions_and_units(seg_run):
    from medtl.api import evaluate, format_summary
    from medtl.evaluation.calibrate import Decisions

    s = evaluate(seg_run, plots=False, save_images=0, decide=Decisions(hd95="max_directed"))
    assert s["distance_unit"] == "px" and s["hd95_definition"] == "max_directed"
    assert s["lesions"]["n_lesions"] >= s["lesions"]["detected"] >= 0
    assert "IoU >= 0.1" in s["lesion_criterion"]
    text = format_summary(s)
    assert " px ±" in text and "lesions: sensitivity" in text and "max_directed" in text
    with pytest.raises(ConfigError, match="classification head"):
        evaluate(seg_run, plots=False, decide=Decisions(calibrate=True))
