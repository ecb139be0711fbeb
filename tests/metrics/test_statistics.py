"""Tests for medtl.metrics.paired, the BCa intervals, calibration, one-vs-rest diagnostics,
the NaN-output check and the training-time classification metric."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from medtl.metrics import (
    bootstrap_ci,
    bootstrap_statistic_ci,
    check_finite_output,
    classification_scores,
    diagnostic_lines,
    expected_calibration_error,
    holm,
    one_vs_rest,
    paired_bootstrap_pvalue,
    paired_test,
    proportion_ci,
    reliability_bins,
    sign_flip_pvalue,
    wilcoxon_pvalue,
)
from medtl.metrics.paired import EXACT_MAX_N, MIN_BOOTSTRAP_N
from medtl.utils.errors import MedtlError

NAN = float("nan")


# ---------------------------------------------------------------- paired tests
def _brute_force_sign_flip(d):
    d = np.asarray(d, float)
    obs = abs(d.mean())
    flips = np.array(list(itertools.product([1, -1], repeat=d.size)))
    return float(np.mean(np.abs((flips * d).mean(axis=1)) >= obs - 1e-12))


def test_sign_flip_is_exact_for_small_n():
    rng = np.random.default_rng(0)
    for n in (3, 5, 8, 10):
        a, b = rng.random(n), rng.random(n)
        assert sign_flip_pvalue(a, b) == pytest.approx(_brute_force_sign_flip(a - b))
    # three equal differences: both exact tests give 0.25; no bootstrap p below 20 pairs
    assert sign_flip_pvalue([1, 2, 3], [0, 1, 2]) == pytest.approx(0.25)
    assert wilcoxon_pvalue([1, 2, 3], [0, 1, 2]) == pytest.approx(0.25)
    assert math.isnan(paired_bootstrap_pvalue([1, 2, 3], [0, 1, 2]))
    # the smallest attainable p with 5 pairs: 2 / 2**5
    assert sign_flip_pvalue(np.arange(1, 6), np.zeros(5)) == pytest.approx(0.0625)
    assert wilcoxon_pvalue(np.arange(1, 6), np.zeros(5)) == pytest.approx(0.0625)


def test_sign_flip_edge_cases_and_monte_carlo():
    assert sign_flip_pvalue([0.5, 0.5], [0.5, 0.5]) == 1.0
    assert math.isnan(sign_flip_pvalue([1.0, NAN], [0.0, 0.0]))  # one pair left
    rng = np.random.default_rng(1)
    a = rng.normal(0.3, 1, 200)
    p = sign_flip_pvalue(a, np.zeros(200), seed=3)
    assert p == sign_flip_pvalue(a, np.zeros(200), seed=3)  # seeded
    t = stats.ttest_1samp(a, 0).pvalue
    assert abs(p - t) < 0.01  # large n: the permutation p agrees with the t-test
    assert EXACT_MAX_N == 16


def test_wilcoxon_exact_with_ties_and_zeros():
    d = np.array([0.1, 0.1, 0.2, 0.0, -0.05])
    assert wilcoxon_pvalue(d, np.zeros(5)) == pytest.approx(
        stats.wilcoxon(d, method=stats.PermutationMethod(n_resamples=np.inf)).pvalue
    )


@pytest.mark.parametrize("n", [3, 5, 10])
def test_fold_tests_hold_their_level_on_null_data(n):
    """On null data (no difference) p < 0.05 at most ~5% of the time; the old bootstrap p
    fell below 0.05 in 30% of cases at n = 3 and 15% at n = 5."""
    rng = np.random.default_rng(n)
    cases = 400
    hits = {"perm": 0, "wilcoxon": 0}
    for _ in range(cases):
        a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
        hits["perm"] += sign_flip_pvalue(a, b) < 0.05
        hits["wilcoxon"] += wilcoxon_pvalue(a, b) < 0.05
    for rate in hits.values():
        assert rate / cases <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / cases)


def test_bootstrap_p_only_from_20_pairs():
    rng = np.random.default_rng(0)
    a = rng.random(MIN_BOOTSTRAP_N)
    assert math.isnan(paired_bootstrap_pvalue(a[:-1], a[:-1] - 0.1))
    assert 0 < paired_bootstrap_pvalue(a, a - 0.1) < 0.01


def test_paired_test_keys_and_ci():
    t = paired_test([0.9, 0.8, 0.7, 0.75], [0.8, 0.8, 0.6, 0.7])
    assert set(t) == {
        "n",
        "mean_diff",
        "ci_low",
        "ci_high",
        "p_permutation",
        "p_wilcoxon",
        "p_bootstrap",
    }
    assert t["ci_low"] <= t["mean_diff"] <= t["ci_high"]


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    adj = holm([0.02, None, NAN, 0.6])
    assert adj[0] == pytest.approx(0.04) and adj[3] == pytest.approx(0.6)
    assert math.isnan(adj[1]) and math.isnan(adj[2])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 capped at 1, then monotone
    assert holm([]) == []


# ---------------------------------------------------------------- BCa intervals
def test_bca_equals_scipy_and_degenerate_fallbacks():
    rng = np.random.default_rng(0)
    v = rng.random(30)
    ref = stats.bootstrap(
        (v,), np.mean, method="BCa", n_resamples=2000, rng=np.random.default_rng(4)
    ).confidence_interval
    assert bootstrap_ci(v, seed=4) == pytest.approx((ref.low, ref.high))
    assert bootstrap_ci([0.7, 0.7, 0.7, 0.7]) == (0.7, 0.7)  # all equal: the point
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    lo, hi = bootstrap_ci([0.2, 0.6])  # n = 2: percentile interval
    assert 0.2 <= lo <= hi <= 0.6
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    # a statistic NaN on some resamples (AUROC of a one-class resample): percentile fallback
    y = np.array([0, 0, 0, 1])
    lo, hi = bootstrap_statistic_ci(
        4, lambda i: float(y[i].mean()) if len(set(y[i])) > 1 else NAN, seed=0
    )
    assert 0 < lo <= hi <= 0.75


# ---------------------------------------------------------------- diagnostics, calibration
def test_one_vs_rest_and_wilson():
    d = one_vs_rest(np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]]))
    assert (d[0]["tp"], d[0]["fp"], d[0]["fn"], d[0]["tn"]) == (8, 1, 2, 9)
    assert d[0]["sensitivity"] == 0.8 and d[0]["specificity"] == 0.9
    assert d[0]["ppv"] == pytest.approx(8 / 9) and d[0]["npv"] == pytest.approx(9 / 11)
    assert math.isnan(d[2]["sensitivity"]) and math.isnan(d[2]["ppv_ci"][0])
    lo, hi = proportion_ci(8, 10)
    assert (lo, hi) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)  # Wilson 95%
    lo, hi = proportion_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + 1.959963985**2))


def test_classification_scores_carry_diagnostics_and_ece():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    s = classification_scores(y, p, ["neg", "pos"])
    pos = s["per_class"]["pos"]
    assert pos["sensitivity"] == pos["recall"] == pytest.approx(2 / 3)
    assert pos["ppv"] == pos["precision"]
    assert pos["specificity"] == 0.5 and pos["sensitivity_ci"][0] < 2 / 3 < pos["sensitivity_ci"][1]
    assert s["ece"] == pytest.approx(expected_calibration_error(y, p))
    text = "\n".join(diagnostic_lines(s))
    assert "pos" in text and "sens 0.667" in text and "ECE" in text


def test_ece_by_hand():
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.55, 0.45]])
    # confidences 0.9 (right), 0.8 (right), 0.6 (wrong), 0.55 (right); 10 bins
    b = reliability_bins(y, p, n_bins=10)
    assert b["count"].tolist() == [0, 0, 0, 0, 0, 2, 0, 1, 1, 0]
    ece = (2 * abs(0.5 - 0.575) + abs(1 - 0.8) + abs(1 - 0.9)) / 4
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(ece)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error([0, 1], perfect) == 0.0


def test_nan_outputs_are_an_error_naming_the_image():
    with pytest.raises(ValueError, match="NaN or Inf"):
        classification_scores([0, 1], np.array([[NAN, 0.5], [0.2, 0.8]]), ["a", "b"])
    with pytest.raises(MedtlError, match="img7.png"):
        check_finite_output(np.array([0.1, np.inf]), "/data/img7.png")
    check_finite_output(np.array([0.1, 0.9]), "ok.png")


def test_reliability_figure(tmp_path):
    from medtl.plots import reliability_figure, reliability_plot

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 50)
    y = rng.integers(0, 3, 50)
    fig = reliability_figure(y, p)
    assert "ECE" in fig.axes[0].get_title()
    assert sum(b.get_height() for b in fig.axes[1].patches) == 50
    assert reliability_plot(y, p, tmp_path / "reliability.png").stat().st_size > 0


def test_training_metric_is_the_evaluation_definition():
    from medtl.training.task import ValClassification

    # class 2 absent from truth and prediction: torchmetrics' macro-F1 drops it (0.733),
    # evaluation keeps it with F1 0 (0.489); training now monitors the evaluation's number
    p = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0]])
    y = torch.tensor([0, 1, 1, 1])
    m = ValClassification(3)
    m.update(p[:2], y[:2])
    m.update(p[2:], y[2:])
    out = m.compute()
    s = classification_scores(y.numpy(), p.double().numpy(), ["0", "1", "2"])
    assert out["val_macro_f1"].item() == pytest.approx(s["macro_avg"]["f1"])
    assert out["val_auroc"].item() == pytest.approx(s["auroc_macro"])
    assert out["val_acc"].item() == pytest.approx(0.75)
    m.reset()
    m.update(torch.full((2, 3), NAN), torch.tensor([0, 1]))
    assert math.isnan(m.compute()["val_macro_f1"].item())


def test_evaluate_stops_on_nan_output_naming_the_image():
    from types import SimpleNamespace

    from medtl.evaluation.evaluate import _check_finite

    samples = [SimpleNamespace(image=f"/data/img{i}.png") for i in range(3)]
    ok = {"cls": torch.zeros(2, 3), "seg": torch.zeros(2, 1, 4, 4)}
    _check_finite(ok, [0, 1], samples)
    bad = {"cls": torch.zeros(2, 3), "seg": torch.zeros(2, 1, 4, 4)}
    bad["seg"][1, 0, 2, 2] = float("nan")
    with pytest.raises(MedtlError, match=r"NaN mask probabilities for /data/img2\.png"):
        _check_finite(bad, [0, 2], samples)
    _check_finite(bad, [0, -1], samples)  # padding rows are not images
