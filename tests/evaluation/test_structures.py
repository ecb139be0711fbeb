"""One binary mask per structure end to end: training with one sigmoid per structure gives
per-structure Dice; evaluate and predict write one mask per structure, and the scores in
per_image.csv are those of the written masks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.metrics.segmentation import seg_scores
from tests.conftest import train_tiny
from tests.data.structures import STRUCTURES, chest, make_structures


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("structures")
    data = make_structures(base / "d", n=16, size=32)
    return train_tiny(data, base / "runs", "train.epochs=2", "output.name=st")


def test_training_logs_per_structure_dice(run):
    cfg = (run / "config.yaml").read_text()
    assert "mask_mode: multilabel" in cfg and "1:heart,2:left_clavicle" in cfg
    epochs = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(epochs) == 2
    for row in epochs:
        per = [float(row[f"val_dice_{n}"]) for n in STRUCTURES]
        assert all(0.0 <= d <= 1.0 for d in per)
        assert float(row["val_dice"]) == pytest.approx(np.mean(per), abs=1e-5)


def test_evaluate_scores_the_written_structure_masks(run):
    from medtl import api

    summary = api.evaluate(run, plots=False, save_images=0)
    assert set(summary["segmentation_per_label"]) == set(STRUCTURES)
    assert summary["labels"].startswith("multilabel: heart")
    split = run / "eval" / "test"
    rows = list(csv.DictReader((split / "per_image.csv").open()))
    assert rows and all(f"dice_{n}" in rows[0] for n in STRUCTURES)
    for row in rows:
        stem = Path(row["image"]).stem
        _, truth = chest(int(stem[1:]))
        for name in STRUCTURES:
            png = np.asarray(Image.open(split / "predictions" / f"{stem}_{name}.png"))
            assert set(np.unique(png)) <= {0, 255}
            dice = seg_scores(png > 0, truth[name])["dice"]
            assert float(row[f"dice_{name}"]) == pytest.approx(dice, abs=1e-5)
        mean = np.nanmean([float(row[f"dice_{n}"]) for n in STRUCTURES])
        assert float(row["dice"]) == pytest.approx(mean, abs=1e-5)
    assert not list((split / "predictions").glob("*_pred.png"))


def test_predict_writes_one_mask_per_structure(run, tmp_path):
    from medtl import api

    image = run.parent.parent / "d" / "images" / "x00.png"
    api.predict(run, [image], tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out").glob("x00_*.png"))
    assert written == sorted([f"x00_{n}.png" for n in STRUCTURES] + ["x00_overlay.png"])
