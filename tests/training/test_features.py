"""Frozen-encoder feature cache: same loss as the uncached model, same training results."""

from __future__ import annotations

import csv

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.data.pipeline import make_loader, prepare
from medtl.models.build import build_model
from medtl.training.features import FeatureDataset, cache_reason, feature_bytes
from medtl.training.task import MedtlTask
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


def test_bfloat16_cache_halves_memory_and_keeps_the_loss(phantoms):
    cfg = load_config(
        overrides=[f"data.root={phantoms}", "data.image_size=32", "model.weights=none"]
    )
    data = prepare(cfg)
    torch.manual_seed(0)
    net, _ = build_model("segmentation", "unet", "resnet18", "none")
    task = MedtlTask(net, cfg).eval()
    rows = [0, 3, 5, 9]
    f32 = FeatureDataset(net, data.cache, rows, None)
    bf16 = FeatureDataset(net, data.cache, rows, None, dtype=torch.bfloat16)
    size = [sum(f.numel() * f.element_size() for f in d.features) for d in (f32, bf16)]
    assert size[1] * 2 == size[0] == feature_bytes(net, 32) * len(rows)
    assert feature_bytes(net, 32, torch.bfloat16) * 2 == feature_bytes(net, 32)
    item = bf16[1][0]
    assert all(f.dtype == torch.float32 for f in item)  # the decoder trains in float32
    assert not torch.equal(item[3], f32[1][0][3])  # really rounded
    losses = []
    for d in (f32, bf16):
        batch = tuple(torch.stack([d[i][0][k] for i in range(4)]) for k in range(len(d.features)))
        with torch.no_grad():
            out = task(batch)
            losses.append(task.compute_loss(out, torch.stack([d[i][1] for i in range(4)]), None))
    assert losses[1]["loss"].item() == pytest.approx(losses[0]["loss"].item(), rel=1e-2)


def test_bfloat16_cache_from_the_config(phantoms, tmp_path):
    run = train_tiny(
        phantoms,
        tmp_path,
        "model.strategy=frozen",
        "train.feature_cache_dtype=bfloat16",
        "output.name=bf16",
    )
    log = (run / "train.log").read_text()
    assert "feature cache: frozen encoder features" in log and "bfloat16" in log
