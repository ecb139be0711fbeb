"""The bootstrap's macro-F1 and AUROC of many resamples at once equal one call per resample."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.metrics.classification import macro_auroc, macro_f1
from medtl.metrics.resampled import macro_auroc_resampled, macro_f1_resampled
from medtl.metrics.statistics import bootstrap_statistic_ci


@pytest.mark.parametrize("n_classes,n,ties", [(2, 9, False), (3, 14, True), (10, 40, True)])
def test_resampled_scores_equal_one_call_per_row_bit_for_bit(n_classes, n, ties):
    rng = np.random.default_rng(n)
    y = rng.integers(0, n_classes, n)
    probs = rng.dirichlet(np.ones(n_classes), n)
    if ties:  # tied scores inside and across classes: a tie counts 1/2
        probs = np.round(probs, 1)
    pred = probs.argmax(1)
    idx = rng.integers(0, n, (300, n))
    idx[:3] = idx[:3, :1]  # resamples of one item drawn n times: AUROC undefined
    f1 = macro_f1_resampled(y, pred, n_classes, idx)
    auc = macro_auroc_resampled(y, probs, n_classes, idx)
    one_f1 = [macro_f1(y[i], pred[i], n_classes) for i in idx]
    one_auc = [macro_auroc(y[i], probs[i], n_classes) for i in idx]
    assert f1.tolist() == one_f1  # == on floats: the same bits (NaN rows checked apart)
    assert np.array_equal(auc, np.array(one_auc), equal_nan=True)
    assert np.isnan(auc).any() and np.isfinite(auc).sum() > 250
    one_row = macro_auroc_resampled(y, probs, n_classes, idx[5])  # a 1-D row: one value
    assert one_row.shape == () and np.array_equal(one_row, one_auc[5], equal_nan=True)


def test_vectorized_bootstrap_ci_equals_the_one_at_a_time_ci():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 30)
    probs = np.round(rng.dirichlet(np.ones(3), 30), 2)

    def one(idx):
        return macro_auroc(y[idx], probs[idx], 3) if len(np.unique(y[idx])) > 1 else np.nan

    def rows(idx):
        return macro_auroc_resampled(y, probs, 3, idx)

    for n in (1, 2, 30):  # one value, the percentile fallback, BCa
        slow = bootstrap_statistic_ci(n, one, n_boot=500, seed=1)
        fast = bootstrap_statistic_ci(n, rows, n_boot=500, seed=1, vectorized=True)
        assert np.array_equal(slow, fast, equal_nan=True)
    assert np.isfinite(fast).all()
