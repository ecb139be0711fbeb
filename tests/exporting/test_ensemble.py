"""``medtl export CMP --config N``, one ONNX graph of the K fold models; and calibration
baked into the graph: a graph exported before ``medtl evaluate RUN --calibrate`` is flagged by
evaluate and by ``predict --onnx``.

One tiny 2-fold comparison (one configuration, 32 px, 1 epoch, no pretrained weights,
MobileNetV2 U-Net) serves the ensemble tests; the rest build untrained networks."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtl import exporting as export
from medtl.comparison import compare
from medtl.comparison.ensemble import FoldEnsemble, fold_runs, load_ensemble, resolve_cell
from medtl.inference.postprocess import apply_rule, cell_rule
from medtl.runs.folder import load_bundle, save_bundle
from medtl.utils.errors import MedtlError
from tests.conftest import TINY, run_cli
from tests.exporting.test_export import make_run

SMALL = [*TINY, "model.encoder=mobilenet_v2", "train.lr=0.01"]  # later keys win
TOL = export.exporter.PARITY_TOL  # 1e-4, the single-run export's tolerance

pytestmark = pytest.mark.usefixtures("one_onnx_thread")


@pytest.fixture(scope="module")
def cmp(phantoms, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    compare([f"data.root={phantoms}", *SMALL], [], folds=2, out=out)
    return out


@pytest.fixture(scope="module")
def exported(cmp) -> dict:
    return export.export_ensemble(cmp, "1")


def _test_images(cmp: Path) -> list[Path]:
    return [Path(p) for p in json.loads((cmp / "compare.json").read_text())["splits"][0]["test"]]


def _mask(folder: Path, image: Path) -> np.ndarray:
    return np.array(Image.open(folder / f"{image.stem}_mask.png")) > 0


@pytest.mark.slow
def test_one_graph_of_the_members_matches_the_fold_ensemble(cmp, exported):
    cell = resolve_cell(cmp, "1")
    runs = fold_runs(cell)
    folder = cell / "ensemble" / "export"
    info = json.loads((folder / "export.json").read_text())
    assert info == json.loads(json.dumps(exported))  # the file is what was returned
    assert Path(info["onnx"]) == folder / "model.onnx" and info["outputs"] == ["seg"]
    assert info["ensemble"]["members"] == [str(r) for r in runs] and len(runs) == 2
    assert info["ensemble"]["postprocess"] == cell_rule(cell)  # the CV choice, recorded
    assert info["ensemble"]["postprocess_in_graph"] is False
    assert set(info["parity"]) == {"n_images", "tolerance", "max_abs_diff", "prob_max_abs_diff"}
    assert info["parity"]["tolerance"] == TOL
    assert 0 <= info["parity"]["max_abs_diff"]["seg"] < TOL
    assert 0 <= info["parity"]["prob_max_abs_diff"]["seg"] < TOL
    assert info["calibration"]["temperature"] is None and info["int8"] is None
    # two members' weights: about twice a single MobileNetV2 U-Net graph (~25 MB each)
    assert info["size_mb"]["fp32"] > 1.8 * (runs[0] / "model.pt").stat().st_size / 2**20

    pred = export.OnnxPredictor(folder / "model.onnx")
    assert (pred.image_size, pred.task, pred.classes) == (32, "segmentation", info["classes"])
    assert json.loads(pred.meta["medtl.ensemble"]) == ["fold0", "fold1"]
    assert pred.meta["medtl.postprocess"] == (cell_rule(cell) or "none")
    assert pred.meta["medtl.temperature"] == "none" and pred.meta["medtl.seg_threshold"] == "0.5"
    # ONNX Runtime vs the PyTorch FoldEnsemble and vs the members' mean, on other images
    net, _, _ = load_ensemble(runs, optimise=False)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        ref = net(x)["seg"]
        mean = torch.stack([torch.sigmoid(m(x)["seg"]) for m in net.members]).mean(0)
    got = torch.from_numpy(pred(x.numpy())["seg"])
    assert got.shape == (3, 1, 32, 32)
    assert (got - ref).abs().max() < TOL
    assert (torch.sigmoid(got) - mean).abs().max() < TOL


def test_predict_onnx_on_the_export_writes_the_ensemble_masks(cmp, exported, capsys, tmp_path):
    images = _test_images(cmp)
    rule = exported["ensemble"]["postprocess"]
    for pp in ([], ["--postprocess", "none"]):
        tag = "none" if pp else "cv"
        for how in ([], ["--onnx"]):
            out = tmp_path / f"{tag}{'-onnx' if how else ''}"
            args = ["predict", str(cmp), *map(str, images), "--config", "1", "--out", str(out)]
            code, _, _ = run_cli(capsys, *args, *how, *pp)
            assert code == 0
        rows = list(csv.DictReader(open(tmp_path / tag / "predictions.csv")))
        onnx_rows = list(csv.DictReader(open(tmp_path / f"{tag}-onnx" / "predictions.csv")))
        assert (
            [r["image"] for r in onnx_rows] == [r["image"] for r in rows] == list(map(str, images))
        )
        for img, r, q in zip(images, rows, onnx_rows, strict=True):
            a, b = _mask(tmp_path / tag, img), _mask(tmp_path / f"{tag}-onnx", img)
            assert a.shape == b.shape == (32, 32)
            assert (a != b).mean() <= 0.002  # only pixels with a mean probability ~0.5 may flip
            assert abs(int(r["lesion_pixels"]) - int(q["lesion_pixels"])) <= 2
    raw = [_mask(tmp_path / "none-onnx", img) for img in images]
    assert sum(int(m.sum()) for m in raw) > 0  # the masks are not all empty
    for img, m in zip(images, raw, strict=True):  # predict --onnx applied the recorded rule
        assert (_mask(tmp_path / "cv-onnx", img) == apply_rule(m, rule)).all()


def test_export_cli_with_config_and_bad_input(cmp, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", str(cmp), "--config", "1", "--out", str(tmp_path))
    lines = out.strip().splitlines()
    assert code == 0 and lines[-1] == str(tmp_path / "model.onnx")
    assert lines[0].startswith("fold ensemble of 2 models; post-processing ")
    assert lines[1].startswith("parity vs PyTorch (max abs diff): seg ")
    assert float(lines[1].rsplit(" ", 1)[1]) < TOL
    code, _, err = run_cli(capsys, "export", str(cmp), "--config", "9")
    assert code == 2 and "1 finished configuration(s)" in err.strip().splitlines()[-1]
    code, _, err = run_cli(capsys, "export", str(cmp), "--config", "1", "--int8")
    assert code == 2 and "int8 export of a fold ensemble is not built" in err
    image = str(_test_images(cmp)[0])
    code, _, err = run_cli(capsys, "predict", str(cmp), image, "--config", "1", "--int8")
    assert code == 2 and "int8 of a fold ensemble is not built" in err.strip().splitlines()[-1]
    # decisions fitted on one run's validation split: one line each, not a traceback
    code, _, err = run_cli(capsys, "evaluate", str(cmp), "--config", "1", "--calibrate")
    assert code == 2 and "not built for a fold ensemble" in err.strip().splitlines()[-1]
    code, _, err = run_cli(
        capsys, "predict", str(cmp), image, "--config", "1", "--threshold", "0.3"
    )
    assert code == 2 and "--threshold/--positive are not built" in err.strip().splitlines()[-1]
    cell = resolve_cell(cmp, "1")
    (cell / "fold5").mkdir()  # an unfinished fold: left out, or an error with --strict
    try:
        with pytest.raises(MedtlError, match="fold5 not finished"):
            export.export_ensemble(cell, out=tmp_path / "strict", strict=True)
    finally:
        (cell / "fold5").rmdir()
    assert not (tmp_path / "strict").exists()


@pytest.mark.parametrize("task", ["segmentation", "multitask"])
def test_label_map_and_class_members_average_softmax(task, tmp_path):
    """A label-map head (background + 2 labels) and a class head: the graph's softmax is the
    members' mean softmax; parity as for one model."""
    from medtl.models.build import build_model

    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        n_classes = 3 if task == "multitask" else 0
        net, _ = build_model(task, "unet", "mobilenet_v2", "none", n_classes, seg_classes=3)
        members.append(net.eval())
    ens = FoldEnsemble(members).eval()
    meta = export.exporter.graph_meta(task, ["a", "b", "c"], 32, {})
    graph = export.exporter.write_graph(ens, tmp_path, 32, 17, meta, tmp_path)
    assert graph["outputs"] == (["seg", "cls"] if task == "multitask" else ["seg"])
    assert max(graph["parity"]["prob_max_abs_diff"].values()) < TOL
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    got = export.OnnxPredictor(tmp_path / "model.onnx")(x.numpy())
    with torch.inference_mode():
        outs = [m(x) for m in members]
        ref = ens(x)
    for key in graph["outputs"]:
        mean = torch.stack([torch.softmax(o[key], 1) for o in outs]).mean(0)
        assert torch.softmax(ref[key], 1).sub(mean).abs().max() < 1e-6  # exact in torch
        assert torch.softmax(torch.from_numpy(got[key]), 1).sub(mean).abs().max() < TOL
    assert got["seg"].shape == (2, 3, 32, 32)


def test_mean_logits_stay_finite_and_exact_for_confident_members():
    """Members far beyond float32's probability resolution (logits +-60): the mean's logits
    are computed in log space, so they neither saturate nor become inf."""
    from medtl.comparison.ensemble import mean_probability_logits

    z = [torch.tensor([[60.0, -60.0, 3.0]]), torch.tensor([[50.0, -70.0, -3.0]])]
    got = mean_probability_logits(z, sigmoid=True).double()
    ls = torch.nn.functional.logsigmoid  # float64 reference: log p - log(1 - p) of the mean
    d = [t.double() for t in z]
    ref = torch.logaddexp(ls(d[0]), ls(d[1])) - torch.logaddexp(ls(-d[0]), ls(-d[1]))
    assert torch.isfinite(got).all() and torch.allclose(got, ref, atol=1e-4)
    assert got[0, 0] == pytest.approx(50.0 + np.log(2), abs=1e-4)  # not clamped at 13.8


# ------------------------------------------------------------------- calibration and export
def test_export_records_calibration_and_a_later_one_is_flagged(phantoms, tmp_path, capsys, caplog):
    run = make_run(tmp_path, phantoms, "classification", "unet", "mobilenet_v2")
    net, cfg, classes = load_bundle(run)
    with torch.no_grad():  # overconfident: temperature scaling then lowers the val ECE
        net.cls_head.fc.weight.mul_(20.0)
        net.cls_head.fc.bias.mul_(20.0)
    save_bundle(run, net, cfg, classes)
    info = export.export_onnx(run)
    assert info["calibration"] == {
        "temperature": None,
        "seg_threshold": 0.5,
        "file": None,
        "sha256": None,
        "mtime": None,
    }
    assert export.stale_exports(run) == []

    code, _, _ = run_cli(capsys, "evaluate", str(run), "--calibrate", "--no-plots")
    calib = run / "calibration.json"
    fit = json.loads(calib.read_text())["temperature"]
    t = fit["value"]
    assert code == 0 and fit["kept"] and t > 1.2  # an overconfident model is cooled
    model = run / "export" / "model.onnx"
    line = (
        f"{model} predates this calibration (graph temperature none, {calib} now {t:.4g}); "
        f"re-run medtl export {run}"
    )
    assert line in caplog.text
    assert export.stale_exports(run) == [line]

    caplog.clear()
    image = sorted(phantoms.glob("benign/*.png"))[0]
    code, _, _ = run_cli(
        capsys, "predict", str(run), str(image), "--onnx", "--out", str(tmp_path / "p")
    )
    assert code == 0
    assert f"predict --onnx: {model} is not calibrated as {run} is now" in caplog.text
    assert f"re-run medtl export {run}" in caplog.text

    info = export.export_onnx(run)  # re-exported: the record is the file, nothing is flagged
    rec = info["calibration"]
    assert rec["temperature"] == t and rec["file"] == str(calib)
    assert rec["sha256"] == hashlib.sha256(calib.read_bytes()).hexdigest()
    assert rec["mtime"] == calib.stat().st_mtime
    assert export.OnnxPredictor(model).meta["medtl.temperature"] == repr(t)
    assert export.stale_exports(run) == []
    caplog.clear()
    code, _, _ = run_cli(
        capsys, "predict", str(run), str(image), "--onnx", "--out", str(tmp_path / "q")
    )
    assert code == 0 and "is not calibrated" not in caplog.text
