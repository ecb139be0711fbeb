"""Post-processing and report cases of a multilabel run (structure ``k`` in bit ``k``, one
saved 0/255 mask per structure): each structure processed and read on its own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medtl.data.masks.scheme import MaskScheme
from medtl.evaluation.postprocess import _read_pred, choose_rule, dice_function, scored
from medtl.inference.postprocess import apply_rule

SCHEME = MaskScheme("multilabel", (1, 2), ("a", "b"))


def _bits() -> np.ndarray:
    """Structure a (bit 0): a 2x2 blob and a stray pixel; structure b (bit 1): one pixel,
    overlapping a's blob."""
    m = np.zeros((6, 6), np.uint8)
    m[0:2, 0:2] |= 1
    m[5, 5] |= 1
    m[1, 1] |= 2
    return m


def test_largest_keeps_each_structures_own_largest_component():
    got = apply_rule(_bits(), "largest", multilabel=True)
    want = _bits()
    want[5, 5] = 0  # a's stray pixel goes; b's single pixel is b's largest and stays
    assert np.array_equal(got, want)
    # read as a label map instead, value 3 (the overlap) would be a label of its own and the
    # pixel at (1, 1) would survive only as that: the per-structure rule keeps both bits
    assert got[1, 1] == 3


def test_choose_rule_scores_the_structures_after_the_rule_by_hand():
    pred, truth = _bits(), _bits()
    truth[5, 5] = 0  # the stray pixel is a false positive of a
    dice_of = dice_function(SCHEME, "one")
    row: dict = {}
    after = scored(pred, truth, "largest", row, SCHEME, "one")
    # before: a 2*4/(5+4) = 8/9, b 1 -> mean 17/18; after: both 1
    assert row["dice_raw"] == pytest.approx(round(17 / 18, 6))
    assert dice_of(after, truth) == pytest.approx(1.0)
    doc = choose_rule([(pred, truth)], dice_of, candidates=("largest",), multilabel=True)
    assert doc["rule"] == "largest"
    assert (doc["dice_before"], doc["dice_after"]) == pytest.approx((17 / 18, 1.0))


def test_saved_structure_masks_are_read_back_as_bits(tmp_path):
    from medtl.reporting.cases import _structures_png

    m = _bits()
    for k, name in enumerate(SCHEME.names):
        Image.fromarray((((m >> k) & 1) * 255).astype(np.uint8)).save(tmp_path / f"x_{name}.png")
    assert np.array_equal(_read_pred(tmp_path / "x_pred.png", SCHEME), m)
    shown = _structures_png(tmp_path / "x_pred.png", SCHEME)  # index k + 1, b drawn over a
    assert shown[0, 0] == 1 and shown[1, 1] == 2 and shown[5, 5] == 1 and shown[3, 3] == 0
    (tmp_path / "x_b.png").unlink()
    assert _read_pred(tmp_path / "x_pred.png", SCHEME) is None
    assert _structures_png(tmp_path / "x_pred.png", SCHEME) is None
