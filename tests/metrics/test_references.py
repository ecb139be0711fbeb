"""medtl's evaluation numbers against independent references, on seeded cases.

scikit-learn (the ``dev`` extra) is the reference for Dice (= binary F1 of the pixels),
IoU (= Jaccard), precision, recall, accuracy, balanced accuracy, per-class P/R/F1, AUROC
and the confusion matrix. MONAI and medpy are not installed, so HD95 is checked against
a brute-force reference written here (boundary pixels found by their 4-neighbours,
distances by ``scipy.spatial.distance.cdist``, independent of medtl's
``scipy.ndimage`` erosion + distance transform) and against numbers frozen from
``scipy.ndimage.distance_transform_edt`` by ``_frozen_hd95`` below (run it to regenerate).

medtl's HD95 pools the distances of both directions and takes one 95th percentile; MONAI's
``compute_hausdorff_distance(percentile=95)`` and medpy's ``hd95`` take the maximum of the
two directed 95th percentiles, which is >= medtl's number (:func:`_directed_max_hd95`
shows the difference on one case).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from medtl.metrics import classification_report_text, classification_scores, hd95, seg_scores

sk = pytest.importorskip("sklearn.metrics")


def _mask(shape, *boxes):
    m = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


rng = np.random.default_rng(42)
MASK_CASES = {
    "overlap": (_mask((16, 16), (2, 9, 2, 9)), _mask((16, 16), (4, 12, 3, 10))),
    "single_pixels": (_mask((8, 8), (3, 4, 3, 4)), _mask((8, 8), (5, 6, 6, 7))),
    "border_touching": (_mask((12, 12), (0, 6, 0, 12)), _mask((12, 12), (0, 8, 4, 12))),
    "multi_component": (
        _mask((20, 20), (1, 5, 1, 5), (10, 16, 12, 18)),
        _mask((20, 20), (2, 6, 1, 6), (12, 18, 12, 19), (15, 19, 0, 3)),
    ),
    "random": (rng.random((24, 24)) > 0.6, rng.random((24, 24)) > 0.5),
    "pred_empty": (np.zeros((8, 8), bool), _mask((8, 8), (2, 4, 2, 4))),
    "truth_empty": (_mask((8, 8), (2, 4, 2, 4)), np.zeros((8, 8), bool)),
    "both_empty": (np.zeros((8, 8), bool), np.zeros((8, 8), bool)),
}


@pytest.mark.parametrize("name", list(MASK_CASES))
def test_overlap_scores_equal_sklearn(name):
    pred, truth = MASK_CASES[name]
    s = seg_scores(pred, truth, empty="one")
    t, p = truth.ravel(), pred.ravel()
    both_empty = not t.any() and not p.any()
    z = 1.0 if both_empty else 0.0  # medtl's "one" rule = sklearn's zero_division=1 there
    assert s["dice"] == pytest.approx(sk.f1_score(t, p, zero_division=z))
    assert s["iou"] == pytest.approx(sk.jaccard_score(t, p, zero_division=z))
    assert s["precision"] == pytest.approx(sk.precision_score(t, p, zero_division=z))
    assert s["recall"] == pytest.approx(sk.recall_score(t, p, zero_division=z))


def _boundary_by_neighbours(m: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour outside the mask (outside the image counts)."""
    padded = np.pad(m, 1, constant_values=False)
    core = padded[1:-1, 1:-1]
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return core & ~inner


def _reference_hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    bp = np.argwhere(_boundary_by_neighbours(pred))
    bt = np.argwhere(_boundary_by_neighbours(truth))
    d = cdist(bp, bt)
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


def _directed_max_hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """MONAI/medpy definition: the larger of the two directed 95th percentiles."""
    d = cdist(
        np.argwhere(_boundary_by_neighbours(pred)), np.argwhere(_boundary_by_neighbours(truth))
    )
    return float(max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95)))


def _frozen_hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """How FROZEN_HD95 was made: boundaries by erosion, distances by the EDT."""
    bp = pred ^ ndimage.binary_erosion(pred, border_value=0)
    bt = truth ^ ndimage.binary_erosion(truth, border_value=0)
    d = np.concatenate(
        [ndimage.distance_transform_edt(~bt)[bp], ndimage.distance_transform_edt(~bp)[bt]]
    )
    return float(np.percentile(d, 95))


FROZEN_HD95 = {
    "overlap": 3.0,
    "single_pixels": 3.605551275463989,
    "border_touching": 4.0,
    "multi_component": 11.098820002257876,
    "random": 1.4142135623730951,
}


@pytest.mark.parametrize("name", list(FROZEN_HD95))
def test_hd95_equals_references(name):
    pred, truth = MASK_CASES[name]
    assert hd95(pred, truth) == pytest.approx(_reference_hd95(pred, truth))
    assert hd95(pred, truth) == pytest.approx(FROZEN_HD95[name])
    assert _frozen_hd95(pred, truth) == pytest.approx(FROZEN_HD95[name])
    assert hd95(pred, truth, spacing=0.5) == pytest.approx(FROZEN_HD95[name] * 0.5)
    assert _directed_max_hd95(pred, truth) >= hd95(pred, truth) - 1e-12


def test_hd95_empty_masks():
    assert hd95(*MASK_CASES["both_empty"]) == 0.0
    assert np.isnan(hd95(*MASK_CASES["pred_empty"]))
    assert np.isnan(hd95(*MASK_CASES["truth_empty"]))


def _cls_cases():
    r = np.random.default_rng(7)
    y = r.integers(0, 3, 40)
    p = r.dirichlet(np.ones(3), 40)
    yield "random", y, p, ["a", "b", "c"]
    ties = np.round(r.random((30, 2)), 1)  # many tied scores
    yield "ties", r.integers(0, 2, 30), ties / ties.sum(1, keepdims=True).clip(1e-9), ["n", "p"]
    y_absent = r.choice([0, 2], 25)  # class 1 never true, sometimes predicted
    yield "absent_class", y_absent, r.dirichlet(np.ones(3), 25), ["x", "y", "z"]


@pytest.mark.parametrize("case", list(_cls_cases()), ids=lambda c: c[0])
def test_classification_scores_equal_sklearn(case):
    _, y, p, classes = case
    c = len(classes)
    s = classification_scores(y, p, classes)
    pred = p.argmax(1)
    labels = list(range(c))
    assert s["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=labels).tolist()
    assert s["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        bal = sk.balanced_accuracy_score(y, pred)
    assert s["balanced_accuracy"] == pytest.approx(bal)
    prec, rec, f1, sup = sk.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for i, name in enumerate(classes):
        r = s["per_class"][name]
        assert (r["precision"], r["recall"], r["support"]) == pytest.approx(
            (prec[i], rec[i], sup[i])
        )
        assert r["f1"] == f1[i]  # from counts, bit for bit
        if (y == i).any():
            assert r["auroc"] == pytest.approx(sk.roc_auc_score(y == i, p[:, i]))
        else:
            assert np.isnan(r["auroc"])
    for avg in ("macro", "weighted"):
        ref = sk.precision_recall_fscore_support(
            y, pred, labels=labels, average=avg, zero_division=0
        )
        got = s[f"{avg}_avg"]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(ref[:3])


def test_f1_from_counts_prints_like_sklearn():
    # class 1: TP 3, FP 3, FN 7 -> F1 = 6/16 = 0.375; 2PR/(P+R) gives 0.37499999999999994
    y = np.array([1] * 3 + [0] * 3 + [1] * 7 + [0] * 5)
    pred = np.array([1] * 3 + [1] * 3 + [0] * 7 + [0] * 5)
    probs = np.stack([1.0 - pred, pred], axis=1).astype(float)
    s = classification_scores(y, probs, ["neg", "pos"])
    assert s["per_class"]["pos"]["f1"] == 0.375
    ours = classification_report_text(s, ["neg", "pos"])
    ref = sk.classification_report(y, pred, target_names=["neg", "pos"], zero_division=0)
    assert ours == ref
    assert "0.38" in ours.splitlines()[3]
