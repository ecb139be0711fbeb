"""Losses: soft Dice on empty masks, balanced class weights, the multitask weighting."""

from __future__ import annotations

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.models.build import build_model
from medtl.training.losses import SEG_LOSSES, balanced_class_weights, soft_dice_loss
from medtl.training.task import MedtlTask


def test_soft_dice_is_zero_for_a_confident_empty_prediction_of_an_empty_mask():
    logits = torch.full((2, 1, 8, 8), -30.0)
    assert soft_dice_loss(logits, torch.zeros(2, 1, 8, 8)).item() == pytest.approx(0.0, abs=1e-6)
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :2] = 1  # 4 lesion pixels, predicted all background: 1 - 1/(4+1)
    assert soft_dice_loss(torch.full((1, 1, 4, 4), -30.0), target).item() == pytest.approx(
        0.8, abs=1e-4
    )
    assert set(SEG_LOSSES) == {"bce", "dice", "dice_bce", "focal", "dice_focal"}


def test_balanced_class_weights_match_sklearn_and_zero_absent_classes():
    w = balanced_class_weights(torch.tensor([6, 2, 0]))
    assert w.tolist() == pytest.approx([8 / (3 * 6), 8 / (3 * 2), 0.0])


def test_multitask_loss_is_the_weighted_sum():
    cfg = load_config(overrides=["task=multitask", "model.seg_weight=0.9", "model.cls_weight=0.1"])
    net, _ = build_model("multitask", "unet", "resnet18", "none", n_classes=3)
    task = MedtlTask(net, cfg, n_classes=3)
    out = {"seg": torch.randn(2, 1, 32, 32), "cls": torch.randn(2, 3)}
    parts = task.compute_loss(
        out, torch.randint(0, 2, (2, 1, 32, 32)).float(), torch.tensor([0, 2])
    )
    expected = 0.9 * parts["seg_loss"] + 0.1 * parts["cls_loss"]
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    seg_only = MedtlTask(net, load_config(overrides=["model.seg_weight=0.9"]))
    p = seg_only.compute_loss(out, torch.zeros(2, 1, 32, 32), torch.tensor([-1, -1]))
    assert set(p) == {"seg_loss", "loss"} and p["loss"].item() == pytest.approx(
        p["seg_loss"].item()
    )
