"""``medtl explain``: Grad-CAM maps per head at each image's size, the layer chosen per
encoder family, the evaluation's CAM grid, and the errors (unknown layer, missing extra)."""

from __future__ import annotations

import csv
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.utils.errors import MedtlError

pytestmark = pytest.mark.skipif(
    find_spec("pytorch_grad_cam") is None, reason="needs the [explain] extra"
)  # grad-cam is imported when a map is computed, not at collection

from medtl.inference.explain import Explainer, cam_cases, explain, target_layer  # noqa: E402

# one encoder per family, with the layer the maps are taken at
FAMILIES = {
    "resnet18": "encoder.layer4",
    "densenet121": "encoder.features.norm5",
    "mobilenet_v2": "encoder.features.18",
    "vgg11_bn": "encoder.features.27",
    "efficientnet-lite0": "encoder.model.blocks.6",
}


@pytest.fixture(scope="module")
def cls_run(phantoms, tmp_path_factory):
    from tests.conftest import train_tiny

    runs = tmp_path_factory.mktemp("runs")
    return train_tiny(phantoms, runs, "task=classification", "output.name=cls")


def _images(phantoms: Path, n: int = 2) -> list[Path]:
    return sorted((phantoms / "benign").glob("benign_000[0-9].png"))[:n]


def test_explain_classification_writes_cam_at_original_size(cls_run, phantoms, tmp_path):
    img = tmp_path / "img.png"  # a non-square image of another size than the model's input
    Image.open(_images(phantoms)[0]).convert("RGB").resize((48, 40)).save(img)
    written = explain(cls_run, [img], tmp_path / "cam")
    assert (tmp_path / "cam" / "img_cam.png").is_file()
    assert Image.open(tmp_path / "cam" / "img_cam.png").size == (48, 40)
    raw = np.load(tmp_path / "cam" / "img_cam.npy")
    assert raw.shape == (40, 48) and raw.dtype == np.float32
    assert 0.0 <= raw.min() and raw.max() <= 1.0
    rows = list(csv.DictReader(open(tmp_path / "cam" / "explanations.csv")))
    assert rows[0]["head"] == "cls" and rows[0]["layer"] == "encoder.layer4"
    assert written[-1].endswith("explanations.csv")


def test_explain_target_class_and_methods(cls_run, phantoms):
    image = np.asarray(Image.open(_images(phantoms)[0]).convert("RGB"))
    for method in ("gradcam", "gradcam++", "eigencam"):
        result = Explainer(cls_run, method=method, target="normal").explain(image)
        assert result.targets["cls"] == "normal"
        assert result.maps["cls"].shape == image.shape[:2]
    with pytest.raises(MedtlError, match="--target"):
        Explainer(cls_run, target="no-such-class")
    with pytest.raises(MedtlError, match="--method"):
        Explainer(cls_run, method="magic")


def test_explain_segmentation_and_multitask(seg_run, mt_run, phantoms, tmp_path):
    imgs = _images(phantoms)
    explain(seg_run, imgs, tmp_path / "seg")
    rows = list(csv.DictReader(open(tmp_path / "seg" / "explanations.csv")))
    assert {r["head"] for r in rows} == {"seg"}
    assert rows[0]["target"] in ("predicted mask", "whole image")
    explain(mt_run, imgs[:1], tmp_path / "mt")
    stem = imgs[0].stem
    assert (tmp_path / "mt" / f"{stem}_cam.png").is_file()  # the class
    assert (tmp_path / "mt" / f"{stem}_seg_cam.png").is_file()  # the mask


@pytest.mark.parametrize("encoder", list(FAMILIES))
def test_layer_per_encoder_family(encoder):
    from medtl.configuration.loading import load_config
    from medtl.models.build import build_model

    net, _ = build_model("classification", "unet", encoder, "none", n_classes=2)
    name, _ = target_layer(net)
    assert name == FAMILIES[encoder]
    cfg = load_config(overrides=["data.image_size=64", "train.threads=1"])
    explainer = Explainer(None, bundle=(net, cfg, ["a", "b"]))
    result = explainer.explain(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8))
    assert result.maps["cls"].shape == (50, 70) and np.isfinite(result.maps["cls"]).all()


def test_unsupported_encoder_names_layer_option(seg_run):
    from torch import nn

    net = nn.Module()
    net.encoder = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(MedtlError, match="--layer"):
        target_layer(net)
    with pytest.raises(MedtlError, match="--layer encoder.nope"):
        Explainer(seg_run, layer="encoder.nope")
    assert Explainer(seg_run, layer="encoder.layer3").layer_name == "encoder.layer3"


def test_missing_extra_is_one_line(seg_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    with pytest.raises(MedtlError, match=r"pip install medtl\[explain\]"):
        Explainer(seg_run)


def test_cam_cases_best_and_worst():
    rows = [
        {"class": "a", "p_a": "0.9", "p_b": "0.1"},
        {"class": "b", "p_a": "0.8", "p_b": "0.2"},
        {"class": "a", "p_a": "0.6", "p_b": "0.4"},
        {"class": "?", "p_a": "0.5", "p_b": "0.5"},
    ]
    assert cam_cases(rows, ["a", "b"], k=1) == {"best": [0], "worst": [1]}


def test_cam_grid(cls_run):
    from medtl.evaluation.evaluate import evaluate
    from medtl.inference.explain import write_cam_grid
    from medtl.utils.files import read_csv

    evaluate(cls_run)  # a classification run: evaluate writes the grid and the card
    out = cls_run / "eval" / "test"
    assert (out / "cam_grid.png").is_file() and (cls_run / "MODEL_CARD.md").is_file()
    assert "cam_grid.png" in (cls_run / "MODEL_CARD.md").read_text()
    path = write_cam_grid(cls_run, read_csv(out / "per_image.csv"), out)
    assert path == out / "cam_grid.png" and Image.open(path).size[0] > 100
