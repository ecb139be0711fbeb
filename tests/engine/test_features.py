"""Frozen-encoder feature cache: same loss as the uncached model, same training results."""

from __future__ import annotations

import csv

import pytest
import torch

from medtl.config import load_config
from medtl.data.pipeline import make_loader, prepare
from medtl.engine.features import FeatureDataset, cache_reason
from medtl.engine.task import MedtlTask
from medtl.models.build import build_model
from tests.conftest import train_tiny


def test_cached_features_give_the_same_loss_on_the_same_batch(phantoms):
    cfg = load_config(
        overrides=[
            f"data.root={phantoms}",
            "data.image_size=32",
            "model.weights=none",
            "model.encoder=resnet18",
            "model.strategy=frozen",
            "data.augment=none",
            "task=multitask",
        ]
    )
    data = prepare(cfg)
    net, _ = build_model("multitask", "unet", "resnet18", "none", n_classes=3)
    task = MedtlTask(net, cfg, n_classes=3)
    rows = [0, 3, 5, 9]
    x, mask, label, _ = next(iter(make_loader(data, rows, cfg, train=False)))
    feats = FeatureDataset(net, data.cache, rows, data.labels)
    f_batch = tuple(
        torch.stack([feats[i][0][k] for i in range(len(rows))]) for k in range(len(feats.features))
    )
    task.train()  # the heads train (dropout on): the same seed gives the same dropout mask
    torch.manual_seed(0)
    plain = task.compute_loss(task(x), mask, label)
    torch.manual_seed(0)
    cached = task.compute_loss(task(f_batch), torch.stack([feats[i][1] for i in range(4)]), label)
    for k in plain:
        assert cached[k].item() == pytest.approx(plain[k].item(), rel=1e-5, abs=1e-6), k


def test_cache_is_used_only_when_augmentation_allows():
    base = ["model.strategy=frozen"]
    assert cache_reason(load_config(overrides=[*base, "data.augment=none"])) is None
    assert (
        cache_reason(load_config(overrides=[*base, "data.augment=light", "data.augment_copies=3"]))
        is None
    )
    assert "augment_copies" in cache_reason(load_config(overrides=[*base, "data.augment=light"]))
    assert (
        cache_reason(load_config(overrides=["model.strategy=finetune", "data.augment=none"]))
        is not None
    )


def test_frozen_training_with_and_without_cache_agree(phantoms, tmp_path):
    runs = [
        train_tiny(
            phantoms,
            tmp_path,
            "model.strategy=frozen",
            "train.epochs=2",
            f"train.feature_cache={flag}",
            f"output.name=c{flag}",
        )
        for flag in ("true", "false")
    ]
    assert "feature cache: frozen encoder features" in (runs[0] / "train.log").read_text()
    a, b = (
        [float(r["val_dice"]) for r in csv.DictReader((run / "metrics.csv").open())] for run in runs
    )
    assert a == pytest.approx(b, abs=1e-4)
