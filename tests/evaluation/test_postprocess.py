"""Mask post-processing (largest component, minimum area) on hand-made masks, and the
choice of a rule on cross-validated Dice."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.data.masks.scheme import MaskScheme
from medtl.evaluation.postprocess import choose_rule, postprocess_lines, postprocess_summary, scored
from medtl.inference.postprocess import apply_rule, largest_component, parse_rule, remove_small
from medtl.metrics.segmentation import seg_scores
from medtl.utils.errors import ConfigError


def _dice(p, t):
    return seg_scores(p, t, empty="one")["dice"]


def _blobs() -> np.ndarray:
    m = np.zeros((20, 20), bool)
    m[2:8, 2:8] = True  # 36 px
    m[12:14, 12:14] = True  # 4 px
    m[18, 0] = True  # 1 px
    return m


def test_largest_component_keeps_the_biggest_blob():
    out = largest_component(_blobs())
    assert out.sum() == 36 and out[2:8, 2:8].all()
    assert largest_component(np.zeros((4, 4), bool)).sum() == 0
    diagonal = np.eye(4, dtype=bool)  # 8-connected: one component
    assert largest_component(diagonal).sum() == 4


def test_remove_small_in_pixels_and_percent_of_the_area():
    m = _blobs()
    assert remove_small(m, 2).sum() == 40
    assert remove_small(m, 5).sum() == 36
    assert apply_rule(m, "min_area=4").sum() == 40
    assert apply_rule(m, "min_area=1%").sum() == 40  # 1% of 400 px = 4 px: the 4 px blob stays
    assert apply_rule(m, "min_area=1.5%").sum() == 36
    assert apply_rule(m, "min_area=1.1%").sum() == 36  # 4.4 px: the 4 px blob goes
    assert apply_rule(m, "min_area=1%")[12:14, 12:14].all()
    assert apply_rule(m, "none") is m


def test_label_maps_are_processed_label_by_label():
    m = np.zeros((10, 10), np.uint8)
    m[0:4, 0:4] = 1
    m[8, 8] = 1
    m[6:9, 0:3] = 2
    m[0, 9] = 2
    out = apply_rule(m, "largest")
    assert out.dtype == np.uint8
    assert (out == 1).sum() == 16 and (out == 2).sum() == 9
    assert out[8, 8] == 0 and out[0, 9] == 0


def test_parse_rule_accepts_the_forms_and_names_them_on_error():
    assert parse_rule(None) is None and parse_rule("none") is None
    assert parse_rule("Largest") == "largest" and parse_rule("min_area=0.5%") == "min_area=0.5%"
    with pytest.raises(ConfigError, match="largest, min_area=A"):
        parse_rule("biggest")
    with pytest.raises(ConfigError):
        parse_rule("min_area=x")


def test_choose_rule_keeps_a_rule_only_when_it_raises_cv_dice():
    truth = np.zeros((20, 20), bool)
    truth[2:8, 2:8] = True
    noisy = [(_blobs(), truth)] * 3  # spurious small blobs: removing them helps
    doc = choose_rule(noisy, _dice)
    assert doc["rule"] in ("largest", "min_area=0.5%", "min_area=1%")
    assert doc["dice_after"] > doc["dice_before"] and doc["cv_dice"]["none"] == doc["dice_before"]
    two = np.zeros((20, 20), bool)
    two[2:8, 2:8] = True
    two[12:14, 12:14] = True  # the small blob is a real lesion: every rule hurts or ties
    clean = [(two.copy(), two)] * 3
    doc = choose_rule(clean, _dice)
    assert doc["rule"] is None and doc["dice_after"] == doc["dice_before"] == 1.0
    assert doc["n_images"] == 3


def test_scored_rows_and_summary_show_dice_before_and_after():
    truth = np.zeros((20, 20), bool)
    truth[2:8, 2:8] = True
    extra: dict = {}
    pred = scored(_blobs(), truth, "largest", extra, MaskScheme("binary"), "one")
    assert pred.sum() == 36 and extra["dice_raw"] == pytest.approx(_dice(_blobs(), truth))
    none: dict = {}
    assert scored(_blobs(), truth, None, none, MaskScheme("binary"), "one").sum() == 41
    assert none == {}
    rows = [{"dice": _dice(pred, truth), **extra}]
    summary = postprocess_summary(rows, "largest")
    assert summary["postprocess"]["dice_after"] == 1.0
    assert summary["postprocess"]["dice_before"] == pytest.approx(extra["dice_raw"])
    assert "Dice" in postprocess_lines(summary)[0] and "after" in postprocess_lines(summary)[0]
    assert postprocess_summary(rows, None) == {}
