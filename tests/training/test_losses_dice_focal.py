"""``train.loss=dice_focal`` on every head: hand computations, smp's DiceLoss + FocalLoss
where their definitions coincide, and one training step through the task's loss."""

from __future__ import annotations

import math

import pytest
import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss

from medtl.training.losses import (
    LABEL_LOSSES,
    MULTILABEL_LOSSES,
    SEG_LOSSES,
    seg_loss_for,
    structure_targets,
)

LN2 = math.log(2.0)


def test_binary_dice_focal_by_hand():
    # two pixels, both at sigmoid 0.5, the first one lesion:
    # Dice 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3; focal: each pixel ln2 * (1 - 0.5)^2,
    # times alpha 0.25 (lesion) or 0.75 (background), mean over 2 pixels = 0.125 ln2
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    got = float(seg_loss_for("dice_focal", 1)(logits, target))
    assert got == pytest.approx(1 / 3 + 0.125 * LN2, abs=1e-6)
    assert SEG_LOSSES["dice_focal"] is seg_loss_for("dice_focal", 1)


def test_binary_dice_focal_equals_smp_dice_plus_focal_on_one_image():
    # smp's binary Dice is over the batch: one image with a lesion makes it medtl's per-image
    # Dice; smp adds its smooth twice ((I + s) / ((P + T) / 2 + s)), so its 0.5 is medtl's 1;
    # smp's FocalLoss with alpha 0.25 is torchvision's sigmoid focal loss
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 1, 16, 16, generator=g) * 3
    target = (torch.rand(1, 1, 16, 16, generator=g) > 0.8).float()
    smp = DiceLoss(mode="binary", from_logits=True, smooth=0.5)(logits, target) + FocalLoss(
        mode="binary", alpha=0.25
    )(logits, target)
    assert float(SEG_LOSSES["dice_focal"](logits, target)) == pytest.approx(float(smp), rel=1e-5)


def test_label_map_dice_focal_by_hand_with_and_without_weights():
    # one pixel, softmax 0.5 / 0.5, truth label 1: Dice per channel 1 - 1/1.5 (background)
    # and 1 - 2/2.5 (label 1); focal (1 - 0.5)^2 * ln2 * w[1]
    logits = torch.zeros(1, 2, 1, 1)
    target = torch.ones(1, 1, 1, 1)
    fn = LABEL_LOSSES["dice_focal"]
    assert float(fn(logits, target)) == pytest.approx((1 / 3 + 0.2) / 2 + 0.25 * LN2, abs=1e-6)
    w = torch.tensor([1.0, 3.0])
    assert float(fn(logits, target, w)) == pytest.approx(
        (1 / 3 + 3 * 0.2) / 4 + 0.25 * 3 * LN2, abs=1e-6
    )
    assert float(seg_loss_for("dice_focal", 2, w)(logits, target)) == float(fn(logits, target, w))


def test_label_map_dice_part_equals_smp_multiclass_dice_on_one_image():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (1, 1, 8, 8), generator=g).float()
    target[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 2.0])  # every label present
    focal = LABEL_LOSSES["focal"](logits, target)
    smp_dice = DiceLoss(mode="multiclass", from_logits=True, smooth=0.5)(
        logits, target[:, 0].long()
    )
    got = LABEL_LOSSES["dice_focal"](logits, target) - focal
    assert float(got) == pytest.approx(float(smp_dice), rel=1e-5)


def test_multilabel_dice_focal_by_hand_and_equals_smp():
    # two structures, one pixel holding structure 0 only (bit 0), both sigmoids 0.5:
    # smp's Dice: structure 0 1 - 1/1.5, structure 1 absent counts 0 -> mean 1/6;
    # focal: every pixel and structure ln2 * 0.25
    logits = torch.zeros(1, 2, 1, 1)
    target = torch.ones(1, 1, 1, 1)
    fn = seg_loss_for("dice_focal", 2, multilabel=True)
    assert float(fn(logits, target)) == pytest.approx(1 / 6 + 0.25 * LN2, abs=1e-6)
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 8, (2, 1, 8, 8), generator=g).float()
    planes = structure_targets(target, 3)
    smp = DiceLoss(mode="multilabel", from_logits=True)(logits, planes) + FocalLoss(
        mode="multilabel"
    )(logits, planes)
    assert float(MULTILABEL_LOSSES["dice_focal"](logits, target)) == pytest.approx(float(smp))


def test_dice_focal_trains_a_tiny_object_head():
    """Adam on free logits with a tiny object (4 of 1024 pixels): the loss falls from 1.12 to
    under 0.05, the lesion pixels end positive and the background negative."""
    torch.manual_seed(0)
    target = torch.zeros(1, 1, 32, 32)
    target[..., 10:12, 20:22] = 1
    logits = torch.zeros(1, 1, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    fn = seg_loss_for("dice_focal", 1)
    first = float(fn(logits, target))
    for _ in range(100):
        opt.zero_grad()
        fn(logits, target).backward()
        opt.step()
    assert first == pytest.approx(1.12, abs=0.01) and float(fn(logits, target)) < 0.05
    assert ((logits.detach() > 0) == (target > 0)).all()
