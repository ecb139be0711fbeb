"""Tests for medtl.metrics and medtl.training.metrics: every expected number is worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medtl.metrics import (
    EMPTY_RULE_TEXT,
    aggregate,
    auroc_binary,
    bootstrap_ci,
    classification_report_rows,
    classification_report_text,
    classification_scores,
    fold_summary,
    hd95,
    macro_f1,
    paired_bootstrap_pvalue,
    paired_test,
    seg_scores,
    wilcoxon_pvalue,
)
from medtl.metrics.statistics import bootstrap_statistic_ci, resample_indices
from medtl.training.metrics import (
    classification_metric_collection,
    dice_per_image_torch,
    iou_per_image_torch,
)
from medtl.utils.errors import ConfigError

NAN = float("nan")


def _mask(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


# ---------------------------------------------------------------- segmentation


def test_seg_scores_4x4_by_hand():
    # truth: 2x2 top-left (4 px); pred: rows 0-2, cols 1-2 (6 px); overlap (0,1),(1,1) = 2 px
    truth = _mask((4, 4), slice(0, 2), slice(0, 2))
    pred = _mask((4, 4), slice(0, 3), slice(1, 3))
    s = seg_scores(pred, truth)
    assert s["dice"] == pytest.approx(2 * 2 / (6 + 4))  # 0.4
    assert s["iou"] == pytest.approx(2 / 8)  # union 6 + 4 - 2
    assert s["precision"] == pytest.approx(2 / 6)
    assert s["recall"] == pytest.approx(2 / 4)
    assert set(s) == {"dice", "iou", "precision", "recall", "hd95"}


def test_seg_scores_accepts_uint8_masks():
    truth = _mask((4, 4), slice(0, 2), slice(0, 2)).astype(np.uint8) * 255
    assert seg_scores(truth, truth)["dice"] == 1.0


@pytest.mark.parametrize(
    "rule, overlap, dist",
    [("one", 1.0, 0.0), ("zero", 0.0, NAN), ("skip", NAN, NAN)],
)
def test_both_empty_rules(rule, overlap, dist):
    z = np.zeros((4, 4), bool)
    s = seg_scores(z, z, empty=rule)
    for k in ("dice", "iou", "precision", "recall"):
        assert s[k] == overlap or (math.isnan(overlap) and math.isnan(s[k]))
    assert s["hd95"] == dist or (math.isnan(dist) and math.isnan(s["hd95"]))


@pytest.mark.parametrize("rule", ["one", "zero", "skip"])
def test_one_empty_is_zero_and_hd_nan_under_every_rule(rule):
    z = np.zeros((4, 4), bool)
    m = _mask((4, 4), slice(1, 3), slice(1, 3))
    for pred, truth in ((z, m), (m, z)):
        s = seg_scores(pred, truth, empty=rule)
        assert s["dice"] == s["iou"] == s["precision"] == s["recall"] == 0.0
        assert math.isnan(s["hd95"])


def test_empty_rule_text_and_unknown_rule():
    assert set(EMPTY_RULE_TEXT) == {"one", "zero", "skip"}
    assert all(isinstance(t, str) and t.endswith(".") for t in EMPTY_RULE_TEXT.values())
    with pytest.raises(ConfigError, match="one, zero, skip"):
        seg_scores(np.zeros((2, 2)), np.zeros((2, 2)), empty="ignore")
    with pytest.raises(ValueError):
        seg_scores(np.zeros((2, 2)), np.zeros((2, 3)))


def test_hd95_squares_offset_by_two_pixels():
    # Two 4x4 squares, the second shifted 2 px right. Boundary distances (12 per side,
    # same multiset both ways): eight 0s, eight 1s, eight 2s -> 95th percentile = 2.
    truth = _mask((12, 12), slice(2, 6), slice(2, 6))
    pred = _mask((12, 12), slice(2, 6), slice(4, 8))
    assert hd95(pred, truth) == pytest.approx(2.0)
    assert seg_scores(pred, truth)["hd95"] == pytest.approx(2.0)
    assert seg_scores(pred, truth, spacing=0.5)["hd95"] == pytest.approx(1.0)
    # and the overlap numbers of the same pair: 8 px in common out of 16 + 16
    assert seg_scores(pred, truth)["dice"] == pytest.approx(0.5)


def test_hd95_ignores_one_outlier_pixel():
    # pred = truth (5x5 square, 16 boundary px) + 1 far pixel: 33 pooled distances, 32 of
    # them 0; percentile position 0.95 * 32 = 30.4 falls between two zeros -> 0.
    truth = _mask((12, 12), slice(1, 6), slice(1, 6))
    pred = truth.copy()
    pred[10, 10] = True
    assert hd95(pred, truth) == 0.0


def test_torch_dice_iou_match_seg_scores():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 1, 8, 8, generator=g)
    target = (torch.rand(6, 1, 8, 8, generator=g) > 0.6).float()
    logits[0] = -5.0  # both empty
    target[0] = 0.0
    logits[1] = -5.0  # prediction empty, truth not
    target[1, 0, 2:4, 2:4] = 1.0
    pred_np = (torch.sigmoid(logits) > 0.5).numpy()[:, 0]
    truth_np = target.numpy()[:, 0] > 0.5
    for rule in ("one", "zero", "skip"):
        dice = dice_per_image_torch(logits, target, empty=rule)
        iou = iou_per_image_torch(logits, target, empty=rule)
        assert dice.shape == iou.shape == (6,)
        want = [seg_scores(p, t, empty=rule) for p, t in zip(pred_np, truth_np, strict=True)]
        np.testing.assert_allclose(dice.numpy(), [w["dice"] for w in want], rtol=1e-6)
        np.testing.assert_allclose(iou.numpy(), [w["iou"] for w in want], rtol=1e-6)
    assert dice_per_image_torch(logits, target, empty="one")[0] == 1.0
    assert torch.isnan(dice_per_image_torch(logits, target, empty="skip")[0])
    assert dice_per_image_torch(logits, target)[1] == 0.0


def test_torch_dice_threshold_and_no_grad():
    logits = torch.tensor([[[[0.0, 2.0]]]], requires_grad=True)  # probs 0.5, 0.88
    target = torch.tensor([[[[1.0, 1.0]]]])
    # 0.5 is not > 0.5: one predicted px, tp 1 -> dice 2 / 3
    d = dice_per_image_torch(logits, target)
    assert d.item() == pytest.approx(2 / 3)
    assert not d.requires_grad
    assert dice_per_image_torch(logits, target, threshold=0.4).item() == 1.0


# ---------------------------------------------------------------- statistics


def test_aggregate_ignores_nan():
    a = aggregate([1.0, 2.0, 3.0, NAN])
    assert a["mean"] == 2.0 and a["median"] == 2.0
    assert a["std"] == pytest.approx(1.0)  # sample std of 1, 2, 3
    assert a["n"] == 3 and a["n_nan"] == 1
    assert a["ci_low"] <= 2.0 <= a["ci_high"]
    one = aggregate(np.array([0.7]))
    assert (one["std"], one["ci_low"], one["ci_high"]) == (0.0, 0.7, 0.7)
    none = aggregate([NAN])
    assert none["n"] == 0 and math.isnan(none["mean"])


def test_bootstrap_ci_contains_mean_and_is_seeded():
    v = [0.1, 0.5, 0.6, 0.8, 0.9, 0.95]
    lo, hi = bootstrap_ci(v, seed=3)
    assert lo < np.mean(v) < hi
    assert 0.1 <= lo and hi <= 0.95
    assert bootstrap_ci(v, seed=3) == (lo, hi)
    assert bootstrap_ci(v, seed=4) != (lo, hi)
    # NaN dropped before drawing, so the draws are the same
    assert bootstrap_ci([*v, NAN], seed=3) == (lo, hi)
    assert bootstrap_ci([0.42]) == (0.42, 0.42)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_paired_pvalues():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.6, 0.9, 20)
    b = a - 0.1 + rng.normal(0, 0.01, 20)  # a is clearly better
    p = paired_bootstrap_pvalue(a, b)
    assert p == pytest.approx(1 / 5001)  # no null resample reaches a 0.1 mean shift
    assert paired_bootstrap_pvalue(a, b) == p  # seeded
    assert paired_bootstrap_pvalue(a, a) == 1.0
    assert paired_bootstrap_pvalue(a, a + rng.normal(0, 0.01, 20)) > 0.05
    # all 20 differences positive, no ties: exact two-sided p = 2 / 2**20
    assert wilcoxon_pvalue(a, b) == pytest.approx(2 / 2**20)
    assert wilcoxon_pvalue(a, a) == 1.0
    assert math.isnan(wilcoxon_pvalue([1.0, NAN], [0.0, 0.5]))  # one pair left
    assert math.isnan(paired_bootstrap_pvalue([1.0], [0.0]))


def test_bootstrap_statistic_ci_draws_the_resamples_of_bootstrap_ci():
    rng = np.random.default_rng(3)
    for n in (2, 7, 1001):  # 1001: the resamples come in several blocks
        v = rng.random(n)
        # one stream: row r of the blocks is the r-th draw of rng.integers(0, n, n)
        ref = np.random.default_rng(5)
        blocks = np.concatenate(list(resample_indices(n, 2000, 5)))
        assert np.array_equal(blocks, [ref.integers(0, n, n) for _ in range(2000)])
        assert bootstrap_statistic_ci(n, lambda i, v=v: float(v[i].mean()), seed=5) == (
            bootstrap_ci(v, seed=5)
        )
    assert bootstrap_statistic_ci(1, lambda i: 0.25) == (0.25, 0.25)
    assert all(math.isnan(x) for x in bootstrap_statistic_ci(0, lambda i: 0.25))
    assert all(math.isnan(x) for x in bootstrap_statistic_ci(5, lambda i: NAN))


def test_fold_summary_and_paired_test():
    s = fold_summary([0.5, NAN, 0.7])
    assert s["values"][0] == 0.5 and math.isnan(s["values"][1]) and s["n"] == 2
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(math.sqrt(0.02))
    assert set(s) == {"values", "mean", "std", "n", "ci_low", "ci_high"}
    t = paired_test([0.9, 0.8, NAN, 0.6], [0.7, 0.7, 0.5, 0.5])
    assert t["n"] == 3 and t["mean_diff"] == pytest.approx((0.2 + 0.1 + 0.1) / 3)
    assert math.isnan(t["p_bootstrap"])  # 3 pairs: no bootstrap p below 20 pairs
    assert t["p_permutation"] == pytest.approx(0.25)  # 3 positive differences: 2 / 2**3
    assert t["p_wilcoxon"] == wilcoxon_pvalue([0.9, 0.8, 0.6], [0.7, 0.7, 0.5])
    assert t["ci_low"] <= t["mean_diff"] <= t["ci_high"]


# ---------------------------------------------------------------- classification


def test_auroc_rank_formula_with_ties():
    # positives 0.8, 0.5; negatives 0.5, 0.2, 0.5. 0.8 beats all 3; 0.5 beats 0.2 and
    # ties twice (1/2 each) -> (3 + 2) / 6
    assert auroc_binary([1, 1, 0, 0, 0], [0.8, 0.5, 0.5, 0.2, 0.5]) == pytest.approx(5 / 6)
    assert auroc_binary([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == 0.5
    assert math.isnan(auroc_binary([0, 0], [0.1, 0.2]))


Y3 = np.array([0, 0, 0, 1, 1])  # class "c" never occurs
P3 = np.array(
    [
        [0.7, 0.2, 0.1],  # -> a
        [0.4, 0.5, 0.1],  # -> b
        [0.3, 0.3, 0.4],  # -> c
        [0.2, 0.7, 0.1],  # -> b
        [0.6, 0.3, 0.1],  # -> a
    ]
)
C3 = ["a", "b", "c"]


def test_classification_three_classes_one_absent():
    s = classification_scores(Y3, P3, C3)
    assert s["confusion_matrix"] == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert s["accuracy"] == pytest.approx(2 / 5)
    assert s["balanced_accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2)  # present classes
    a, b, c = (s["per_class"][k] for k in C3)
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx(
        (0.5, 1 / 3, 0.4, 3)
    )
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    # zero division: "c" predicted once, never true -> precision 0, recall 0/0 -> 0, f1 0
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 0)
    assert s["macro_avg"] == pytest.approx({"precision": 1 / 3, "recall": 5 / 18, "f1": 0.3})
    assert s["weighted_avg"] == pytest.approx({"precision": 0.5, "recall": 0.4, "f1": 0.44})
    # AUROC a: pos 0.7 0.4 0.3 vs neg 0.2 0.6 -> 4/6; b: pos 0.7 0.3 vs neg 0.2 0.5 0.3
    # -> (3 + 1 + 0.5) / 6 with a tie; c absent -> nan, macro over a and b
    assert a["auroc"] == pytest.approx(2 / 3)
    assert b["auroc"] == pytest.approx(0.75)
    assert math.isnan(c["auroc"])
    assert s["auroc_macro"] == pytest.approx((2 / 3 + 0.75) / 2)
    assert s["auroc_weighted"] == pytest.approx((3 * 2 / 3 + 2 * 0.75) / 5)
    assert s["n"] == 5 and s["classes"] == C3


def test_report_text_matches_sklearn_docs_example():
    # scikit-learn's classification_report docstring: y_true=[0,1,2,2,2], y_pred=[0,0,2,2,1]
    names = ["class 0", "class 1", "class 2"]
    probs = np.eye(3)[[0, 0, 2, 2, 1]]
    s = classification_scores([0, 1, 2, 2, 2], probs, names)
    expected = (
        "              precision    recall  f1-score   support\n"
        "\n"
        "     class 0       0.50      1.00      0.67         1\n"
        "     class 1       0.00      0.00      0.00         1\n"
        "     class 2       1.00      0.67      0.80         3\n"
        "\n"
        "    accuracy                           0.60         5\n"
        "   macro avg       0.50      0.56      0.49         5\n"
        "weighted avg       0.70      0.60      0.61         5\n"
    )
    assert classification_report_text(s, names) == expected


def test_report_text_and_rows_three_classes():
    s = classification_scores(Y3, P3, C3)
    text = classification_report_text(s, C3, digits=3)
    assert "           a      0.500     0.333     0.400         3" in text
    assert "    accuracy                          0.400         5" in text
    rows = classification_report_rows(s, C3)
    assert [r["class"] for r in rows] == [*C3, "accuracy", "macro avg", "weighted avg"]
    assert rows[3]["f1"] == pytest.approx(0.4) and rows[3]["precision"] is None
    assert rows[4]["auroc"] == pytest.approx(17 / 24)
    assert rows[0]["support"] == 3 and rows[5]["f1"] == pytest.approx(0.44)


def test_classification_binary_1d_probs_and_bad_input():
    s = classification_scores([0, 1, 1, 0], np.array([0.2, 0.9, 0.4, 0.6]), ["neg", "pos"])
    assert s["confusion_matrix"] == [[1, 1], [1, 1]]
    # pos scores 0.9, 0.4 vs neg 0.2, 0.6 -> (2 + 1) / 4
    assert s["per_class"]["pos"]["auroc"] == pytest.approx(0.75)
    assert s["per_class"]["neg"]["auroc"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        classification_scores([0, 3], np.ones((2, 3)) / 3, C3)
    with pytest.raises(ValueError):
        classification_scores([0, 1], np.ones((2, 2)), C3)


def test_macro_f1_equals_classification_scores_from_counts():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = int(rng.integers(2, 5))
        y = rng.integers(0, c, 30)
        probs = rng.random((30, c))
        s = classification_scores(y, probs, [str(i) for i in range(c)])
        pred = probs.argmax(1)
        assert macro_f1(y, pred, c) == s["macro_avg"]["f1"]  # bit for bit
        cm = np.array(s["confusion_matrix"], float)
        denom = cm.sum(0) + cm.sum(1)
        counts = np.divide(2 * np.diag(cm), denom, out=np.zeros(c), where=denom > 0)
        assert macro_f1(y, pred, c) == float(counts.mean())  # F1 = 2TP / (2TP + FP + FN)


def test_torchmetrics_collection():
    mc = classification_metric_collection(3, prefix="val_")
    out = mc(torch.tensor(P3, dtype=torch.float32), torch.tensor([0, 0, 0, 1, 2]))
    assert set(out) == {"val_acc", "val_auroc"}
    assert out["val_acc"].item() == pytest.approx(2 / 5)
