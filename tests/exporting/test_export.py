"""ONNX export: parity with PyTorch, export.json, OnnxPredictor, predict_onnx, int8."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtl import exporting as export
from medtl.configuration.loading import load_config
from medtl.data.pipeline import load_samples
from medtl.data.splits import make_splits, save_splits
from medtl.models.build import build_model
from medtl.runs.folder import load_bundle, save_bundle, write_config
from medtl.utils.errors import MedtlError

SIZE = 32


def make_run(tmp: Path, data: Path, task: str, arch: str, encoder: str) -> Path:
    """A run folder as 'medtl train' leaves it (config, splits, bundle), without the
    training: parity does not depend on the weights, and this keeps the tests fast."""
    cfg = load_config(
        overrides=[
            f"data.root={data}",
            f"data.image_size={SIZE}",
            f"task={task}",
            f"model.arch={arch}",
            f"model.encoder={encoder}",
            "model.weights=none",
        ]
    )
    samples = load_samples(cfg).samples
    classes = sorted({s.label for s in samples})
    torch.manual_seed(0)
    n_classes = len(classes) if task != "segmentation" else 0
    net, _ = build_model(task, arch, encoder, "none", n_classes=n_classes)
    run = tmp / f"{task}-{arch}"
    run.mkdir()
    write_config(run, cfg)
    save_splits(run / "splits.json", samples, make_splits(samples, 0.25, 0.0, 0))
    save_bundle(run, net.eval(), cfg, classes)
    return run


pytestmark = pytest.mark.usefixtures("one_onnx_thread")


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory, phantoms12) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), phantoms12, "segmentation", "unet", "resnet18")


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory, phantoms12) -> Path:
    # our own decoder (transposed convs) on another encoder family
    return make_run(
        tmp_path_factory.mktemp("runs"), phantoms12, "multitask", "light", "mobilenet_v2"
    )


@pytest.fixture(scope="module")
def seg_export(seg_run) -> dict:
    return export.export_onnx(seg_run)


def test_segmentation_parity_and_export_json(seg_run, seg_export):
    info = json.loads((seg_run / "export" / "export.json").read_text())
    assert info == json.loads(json.dumps(seg_export))  # the file is what was returned
    assert info["outputs"] == ["seg"]
    assert info["opset"] == 17
    assert info["input"]["shape"] == ["batch", 3, SIZE, SIZE]
    assert Path(info["onnx"]) == seg_run / "export" / "model.onnx"
    assert 0 <= info["parity"]["max_abs_diff"]["seg"] < 1e-4
    assert info["size_mb"]["fp32"] > 40  # resnet18-UNet: ~14 M float32 parameters
    assert info["int8"] is None
    assert not list((seg_run / "export").glob("*.tmp"))  # atomic writes left nothing behind


def test_multitask_parity_and_predictor(multi_run, tmp_path):
    info = export.export_onnx(multi_run, out=tmp_path / "exp")
    assert info["outputs"] == ["seg", "cls"]
    assert set(info["parity"]["max_abs_diff"]) == {"seg", "cls"}
    assert max(info["parity"]["max_abs_diff"].values()) < 1e-4

    pred = export.OnnxPredictor(tmp_path / "exp" / "model.onnx")
    assert (pred.image_size, pred.task) == (SIZE, "multitask")
    assert pred.classes == ["benign", "malignant", "normal"]
    net, _, _ = load_bundle(multi_run)
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = net(x)
    got = pred(x.numpy())
    assert got["seg"].shape == (3, 1, SIZE, SIZE) and got["cls"].shape == (3, 3)
    for k in ("seg", "cls"):
        assert np.abs(got[k] - ref[k].numpy()).max() < 1e-4
    with pytest.raises(MedtlError, match=r"\(N, 3, 32, 32\)"):
        pred(np.zeros((1, 3, 64, 64), np.float32))


def test_predict_onnx_matches_pytorch_predict(seg_run, seg_export, phantoms12, tmp_path):
    from medtl.inference.predictor import predict

    images = sorted(phantoms12.glob("benign/*_000[12].png"))
    assert len(images) == 2
    for tta in (False, True):
        predict(seg_run, images, tmp_path / f"pt{tta}", tta=tta)
        written = export.predict_onnx(seg_run, images, tmp_path / f"onnx{tta}", tta=tta)
        assert len(written) == 2 * 2 + 1  # mask + overlay per image, predictions.csv
        for img in images:
            a = np.array(Image.open(tmp_path / f"pt{tta}" / f"{img.stem}_mask.png")) > 0
            b = np.array(Image.open(tmp_path / f"onnx{tta}" / f"{img.stem}_mask.png")) > 0
            assert a.shape == b.shape == (SIZE, SIZE)
            assert (a != b).mean() <= 0.002  # only pixels with logit ~ 0 may flip
        rows = list(csv.DictReader(open(tmp_path / f"onnx{tta}" / "predictions.csv")))
        ref = list(csv.DictReader(open(tmp_path / f"pt{tta}" / "predictions.csv")))
        assert [r["image"] for r in rows] == [r["image"] for r in ref] == [str(p) for p in images]
        for r, q in zip(rows, ref, strict=True):
            assert abs(int(r["lesion_pixels"]) - int(q["lesion_pixels"])) <= 2


def test_predict_onnx_postprocess_matches_pytorch(seg_run, seg_export, phantoms12, tmp_path):
    """``--postprocess`` is applied after the graph, as by the PyTorch path (it is not in the
    graph; a run's export records none, so the default is the raw mask)."""
    from medtl.inference.postprocess import apply_rule
    from medtl.inference.predictor import predict

    images = sorted(phantoms12.glob("benign/*_000[12].png"))
    predict(seg_run, images, tmp_path / "pt", postprocess="largest")
    export.predict_onnx(seg_run, images, tmp_path / "onnx", postprocess="largest")
    export.predict_onnx(seg_run, images, tmp_path / "raw")
    for img in images:
        a = np.array(Image.open(tmp_path / "pt" / f"{img.stem}_mask.png")) > 0
        b = np.array(Image.open(tmp_path / "onnx" / f"{img.stem}_mask.png")) > 0
        raw = np.array(Image.open(tmp_path / "raw" / f"{img.stem}_mask.png")) > 0
        assert (a != b).mean() <= 0.002
        assert (b == apply_rule(raw, "largest")).all()


def test_missing_run_and_model_are_user_errors(tmp_path):
    with pytest.raises(MedtlError, match="no such run folder"):
        export.export_onnx(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedtlError, match="model.pt not found"):
        export.export_onnx(tmp_path / "empty")
    with pytest.raises(MedtlError, match="medtl export"):
        export.OnnxPredictor(tmp_path / "missing.onnx")
    with pytest.raises(MedtlError, match="medtl export"):
        export.predict_onnx(tmp_path / "empty", [tmp_path], tmp_path / "out")


def test_parity_failure_names_the_difference(multi_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export.exporter, "PARITY_TOL", 0.0)  # any real difference now fails
    with pytest.raises(MedtlError, match=r"differs from PyTorch by [0-9.e-]+ on '(seg|cls)'"):
        export.export_onnx(multi_run, out=tmp_path)
    assert not (tmp_path / "export.json").exists() and not (tmp_path / "model.onnx").exists()


def test_int8_records_dice_drop_and_speed(multi_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export.quantise, "BENCH_SECONDS", 0.05)
    info = export.export_onnx(multi_run, out=tmp_path, int8=True)
    q = json.loads((tmp_path / "export.json").read_text())["int8"]
    assert q == json.loads(json.dumps(info["int8"]))
    assert (tmp_path / "model.int8.onnx").is_file()
    splits = json.loads((multi_run / "splits.json").read_text())
    assert q["val"]["n_images"] == len(splits["val"]) == 3  # 12 images, val 25 %
    # calibrated on the training images, not on the validation images it is scored on
    assert q["calibration_images"] == len(splits["train"])
    import onnx

    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    weights = {i.name for i in graph.initializer}
    deq = {
        o
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
        for o in n.output
    }
    consumers = {n.op_type for n in graph.node if deq & set(n.input)}
    # int8 weights only in convolutions / linear layers (QUANTISED_OPS)
    assert "Conv" in consumers and consumers <= set(export.QUANTISED_OPS)
    assert math.isfinite(q["dice_drop"]) and abs(q["dice_drop"]) <= 1
    assert math.isfinite(q["accuracy_drop"])
    assert q["val"]["fp32"]["dice"] - q["val"]["int8"]["dice"] == pytest.approx(q["dice_drop"])
    assert q["speed"]["batch"] == 8
    assert q["speed"]["img_per_s_fp32"] > 0 and q["speed"]["img_per_s_int8"] > 0
    assert 0 < info["size_mb"]["int8"] < info["size_mb"]["fp32"]
    # the output layers stay fp32; the int8 model still runs through OnnxPredictor
    assert any("cls_head" in n for n in q["fp32_layers"])
    out = export.OnnxPredictor(tmp_path / "model.int8.onnx")(
        np.zeros((2, 3, SIZE, SIZE), np.float32)
    )
    assert out["seg"].shape == (2, 1, SIZE, SIZE) and np.isfinite(out["cls"]).all()
