"""``medtl export`` and ``predict --onnx/--int8`` on a label-map run: ONNX
parity on the softmax probabilities, and the same label-map PNG values as PyTorch predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl import exporting as export
from tests.conftest import train_tiny

pytestmark = pytest.mark.usefixtures("one_onnx_thread")


@pytest.fixture(scope="module")
def label_run(label_phantoms, tmp_path_factory) -> Path:
    return train_tiny(label_phantoms, tmp_path_factory.mktemp("runs"), "output.name=labels")


@pytest.fixture(scope="module")
def label_export(label_run, tmp_path_factory) -> dict:
    return export.export_onnx(label_run, out=label_run / "export", int8=True)


def test_label_export_parity_on_probabilities(label_run, label_export):
    info = json.loads((label_run / "export" / "export.json").read_text())
    assert info["outputs"] == ["seg"]
    assert 0 <= info["parity"]["max_abs_diff"]["seg"] < 1e-4
    assert 0 <= info["parity"]["prob_max_abs_diff"]["seg"] < 1e-4  # softmax over 3 channels
    out = export.OnnxPredictor(label_run / "export" / "model.onnx")(
        np.zeros((2, 3, 32, 32), np.float32)
    )
    assert out["seg"].shape == (2, 3, 32, 32)  # background + 2 labels
    q = info["int8"]
    assert 0 <= q["val"]["fp32"]["dice"] <= 1 and np.isfinite(q["dice_drop"])


@pytest.mark.parametrize("model", ["model.onnx", "model.int8.onnx"])
def test_predict_onnx_writes_the_same_label_maps(
    label_run, label_export, label_phantoms, model, tmp_path
):
    from medtl.inference.predictor import predict

    images = sorted((label_phantoms / "images").glob("*.png"))[:2]
    predict(label_run, images, tmp_path / "pt")
    export.predict_onnx(label_run, images, tmp_path / "onnx", model=label_run / "export" / model)
    for img in images:
        a = np.array(Image.open(tmp_path / "pt" / f"{img.stem}_mask.png"))
        b = np.array(Image.open(tmp_path / "onnx" / f"{img.stem}_mask.png"))
        assert a.shape == b.shape == (32, 32) and a.dtype == b.dtype == np.uint8
        assert set(np.unique(a)) <= {0, 1, 2}  # the masks' own label values
        limit = 0.002 if model == "model.onnx" else 0.05  # int8: a few boundary pixels
        assert (a != b).mean() <= limit
