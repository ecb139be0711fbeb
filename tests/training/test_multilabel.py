"""One sigmoid channel per structure (mask scheme ``multilabel``): the losses against a hand
computation, the torch metrics against the numpy ones, the bit-packed targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medtl.data.masks.scheme import MaskScheme
from medtl.evaluation.labels import image_scores
from medtl.metrics.segmentation import seg_scores
from medtl.training.losses import MULTILABEL_LOSSES, seg_loss_for, structure_targets
from medtl.training.metrics import LabelScores, label_dice_iou_torch


def _two_pixels():
    """Two structures on two pixels: structure 1 on pixel 0 only, structure 2 on both
    (an overlap at pixel 0: bits 0b11). Sigmoids: structure 1 (0.5, 0.5), structure 2
    (0.75, 0.25)."""
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3), -math.log(3)]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[3.0, 2.0]]]])  # bit 0 = structure 1, bit 1 = structure 2
    return logits, target


def test_targets_unpack_overlapping_structures():
    _, target = _two_pixels()
    planes = structure_targets(target, 2)
    assert planes.tolist() == [[[[1.0, 0.0]], [[1.0, 1.0]]]]


def test_multilabel_losses_by_hand():
    logits, target = _two_pixels()
    bce = (math.log(2) + math.log(2) - math.log(0.75) - math.log(0.25)) / 4
    assert float(MULTILABEL_LOSSES["bce"](logits, target)) == pytest.approx(bce, rel=1e-5)
    # smp DiceLoss(mode="multilabel"): per structure over the batch, no smoothing
    d1 = 1 - 2 * 0.5 / (1.0 + 1)  # intersection 0.5, sums 0.5 + 0.5 and 1
    d2 = 1 - 2 * (0.75 + 0.25) / (1.0 + 2)
    assert float(MULTILABEL_LOSSES["dice"](logits, target)) == pytest.approx((d1 + d2) / 2, 1e-5)
    both = float(MULTILABEL_LOSSES["dice_bce"](logits, target))
    assert both == pytest.approx((d1 + d2) / 2 + bce, rel=1e-5)
    # smp FocalLoss(mode="multilabel"): (1 - p_true)^2 * BCE, mean over pixels and structures
    f1 = 2 * 0.5**2 * math.log(2)
    f2 = 0.25**2 * -math.log(0.75) + 0.75**2 * -math.log(0.25)
    focal = float(MULTILABEL_LOSSES["focal"](logits, target))
    assert focal == pytest.approx((f1 + f2) / 4, rel=1e-5)
    # the config names: ce / dice_ce are bce / dice_bce here
    assert seg_loss_for("dice_ce", 2, None, multilabel=True) is MULTILABEL_LOSSES["dice_bce"]
    assert seg_loss_for("dice", 1, None, multilabel=True) is MULTILABEL_LOSSES["dice"]


def test_multilabel_metrics_torch_equal_numpy():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(3, 3, 8, 8)), dtype=torch.float32)
    target = torch.tensor(rng.integers(0, 8, size=(3, 1, 8, 8)), dtype=torch.float32)
    target[2] = 4  # structure 3 everywhere, structures 1 and 2 absent (the empty rule)
    dice, iou = label_dice_iou_torch(logits, target, "one", multilabel=True)
    scheme = MaskScheme("multilabel", (1, 2, 3), ("a", "b", "c"))
    for i in range(3):
        pred = (torch.sigmoid(logits[i]) > 0.5).to(torch.uint8) << torch.arange(3)[:, None, None]
        pred = pred.sum(0).numpy().astype(np.uint8)
        truth = target[i, 0].numpy().astype(np.uint8)
        row = image_scores(pred, truth, scheme, "one")
        for k, name in enumerate("abc"):
            binary = seg_scores(scheme.structure(pred, k + 1), (truth >> k) & 1 > 0)
            assert row[f"dice_{name}"] == pytest.approx(binary["dice"])
            assert float(dice[i, k]) == pytest.approx(binary["dice"], abs=1e-6)
            assert float(iou[i, k]) == pytest.approx(binary["iou"], abs=1e-6)
        assert row["dice"] == pytest.approx(np.mean([row[f"dice_{n}"] for n in "abc"]))
    metric = LabelScores(["a", "b", "c"], "one", multilabel=True)
    metric.update(logits, target)
    got = metric.compute()
    assert float(got["dice_b"]) == pytest.approx(float(dice[:, 1].mean()), abs=1e-6)
