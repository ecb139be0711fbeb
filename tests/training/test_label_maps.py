"""Label maps through the other training and evaluation paths: TTA, the frozen feature cache and
multitask each run and give per-label scores."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import train_tiny

LABELS = {"lesion", "ring"}


def _per_label(run: Path, **options) -> dict:
    from medtl import api

    s = api.evaluate(run, plots=False, save_images=0, **options)
    assert set(s["segmentation_per_label"]) == LABELS
    for scores in s["segmentation_per_label"].values():
        assert 0.0 <= scores["dice"]["mean"] <= 1.0 and scores["dice"]["n"] > 0
    return s


def test_tta_with_label_maps(label_phantoms, tmp_path):
    run = train_tiny(label_phantoms, tmp_path)
    plain = _per_label(run)
    tta = _per_label(run, tta=True)
    assert tta["tta"] and not plain["tta"]


def test_frozen_feature_cache_with_label_maps(label_phantoms, tmp_path):
    run = train_tiny(label_phantoms, tmp_path, "model.strategy=frozen", "train.epochs=2")
    assert "feature cache: frozen encoder features" in (run / "train.log").read_text()
    _per_label(run)
    assert "val_dice_ring" in (run / "metrics.csv").read_text().splitlines()[0]


def test_multitask_with_label_maps(label_phantoms, tmp_path):
    root = tmp_path / "mt"
    for i, image in enumerate(sorted((label_phantoms / "images").glob("*.png"))):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, cls / image.name)
        shutil.copy(label_phantoms / "masks" / image.name, cls / f"{image.stem}_mask.png")
    shutil.copy(label_phantoms / "labels.yaml", root / "labels.yaml")
    run = train_tiny(root, tmp_path / "runs", "task=multitask")
    s = _per_label(run)
    assert s["classification"]["classes"] == ["a", "b"]
