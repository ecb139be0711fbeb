"""Odd but legal data: a class with one image, a class absent from validation, hostile names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from medtl.inference.engine import safe_name
from tests.conftest import train_tiny


def _imagefolder(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(
                root / cls / f"{cls} {i}.png"
            )
    return root


def test_a_class_with_one_image_and_absent_from_validation(tmp_path):
    data = _imagefolder(tmp_path / "d", {"common": 10, "rare": 1, "other": 6})
    run = train_tiny(
        data,
        tmp_path / "runs",
        "task=classification",
        "output.name=c",
        "data.test_fraction=0",
        "data.group_duplicates=false",
    )
    splits = json.loads((run / "splits.json").read_text())
    val_labels = {e["label"] for e in splits["val"]}
    assert "rare" not in val_labels  # the single image trains
    from medtl.evaluation.evaluate import evaluate

    summary = evaluate(run, split="val")
    cls = summary["classification"]
    assert np.isnan(cls["per_class"]["rare"]["auroc"]) or cls["per_class"]["rare"]["auroc"] is None
    assert np.isfinite(cls["auroc_macro"]) and 0.0 <= cls["accuracy"] <= 1.0


def test_prediction_names_cannot_escape_the_output_folder(tmp_path):
    for hostile in (
        "../../etc/passwd",
        "..",
        "a/../../b",
        "/abs/path",
        "ok name (1).png",
        "\x00evil",
        "日本.png",
    ):
        name = safe_name(hostile)
        assert name and "/" not in name and name not in (".", "..")
        assert (tmp_path / f"{name}_mask.png").resolve().parent == tmp_path.resolve()
