"""Temperature scaling, operating points (Youden, target sensitivity/specificity) and
``predict --threshold``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtl.evaluation.calibrate import Decisions
from medtl.inference.decisions import (
    CALIBRATION_FILE,
    TemperatureScaled,
    decision_of,
    label_at,
    read_calibration,
)
from medtl.metrics.calibration import expected_calibration_error, fit_temperature, nll, softmax
from medtl.metrics.operating_point import at_threshold, choose_threshold
from medtl.utils.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _overconfident(n=400, seed=0):
    """Logits of a 70%-accurate 3-class model that claims ~99% confidence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, y, (y + 1) % 3)
    z = rng.normal(0, 0.3, (n, 3))
    z[np.arange(n), pred] += 6.0
    return z, y


def test_temperature_fit_lowers_nll_and_ece_of_an_overconfident_model():
    z, y = _overconfident()
    t = fit_temperature(z, y)
    assert t > 1.5
    assert nll(z, y, t) < nll(z, y)
    assert expected_calibration_error(y, softmax(z, t)) < expected_calibration_error(y, softmax(z))
    # the fitted T is the NLL minimum: nearby temperatures are no better
    assert nll(z, y, t) <= min(nll(z, y, t * 0.95), nll(z, y, t * 1.05))
    assert (softmax(z, t).argmax(1) == z.argmax(1)).all()  # argmax unchanged


def test_softmax_and_nll_match_torch():
    z, y = _overconfident(50, seed=1)
    ref = torch.nn.functional.cross_entropy(torch.tensor(z / 2.0), torch.tensor(y))
    assert nll(z, y, 2.0) == pytest.approx(float(ref), rel=1e-9)
    assert softmax(z, 2.0) == pytest.approx(torch.softmax(torch.tensor(z / 2.0), 1).numpy())


def test_youden_matches_scikit_learn_roc():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    fpr, tpr, thr = roc_curve(y, s)
    best = np.max(tpr - fpr)
    got = choose_threshold(y, s, "youden")
    assert got["sensitivity"] + got["specificity"] - 1 == pytest.approx(best)
    assert got["threshold"] == pytest.approx(thr[np.argmax(tpr - fpr)])


def test_target_rules_and_errors():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.5, 0.3, 0.9, 0.2, 0.6, 0.8, 0.7])
    sens = choose_threshold(y, s, "sensitivity", 0.75)
    assert sens["threshold"] == 0.6 and sens["sensitivity"] >= 0.75
    spec = choose_threshold(y, s, "specificity", 1.0)
    assert spec["threshold"] == 0.8 and spec["specificity"] == 1.0
    r = at_threshold(y, s, 0.6)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (3, 1, 1, 3)
    assert r["ppv"] == 0.75 and r["npv"] == 0.75 and len(r["ppv_ci"]) == 2
    with pytest.raises(ConfigError, match="0.95"):
        choose_threshold(y, s, "sensitivity")
    with pytest.raises(ConfigError, match="positive and negative"):
        choose_threshold(np.ones(3), [0.1, 0.2, 0.3], "youden")


def test_label_at_and_decision_of(tmp_path):
    p = np.array([0.5, 0.2, 0.3])
    assert label_at(p, None) == 0
    assert label_at(p, (2, 0.25)) == 2 and label_at(p, (2, 0.35)) == 0
    assert label_at(np.array([0.8, 0.2]), (1, 0.1)) == 1
    assert decision_of(tmp_path, ["a", "b"], None, None) is None
    assert decision_of(tmp_path, ["a", "b"], "0.3", None) == (1, 0.3)
    with pytest.raises(ConfigError, match="--positive"):
        decision_of(tmp_path, ["a", "b", "c"], 0.3, None)
    with pytest.raises(ConfigError, match="no stored operating point"):
        decision_of(tmp_path, ["a", "b"], "stored", None)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        decision_of(tmp_path, ["a", "b"], "high", None)


def test_temperature_scaled_divides_only_cls():
    class Net(torch.nn.Module):
        def forward(self, x):
            return {"cls": torch.ones(len(x), 2) * 4, "seg": torch.ones(len(x), 1, 2, 2)}

    out = TemperatureScaled(Net(), 2.0)(torch.zeros(3, 3, 2, 2))
    assert torch.equal(out["cls"], torch.full((3, 2), 2.0)) and torch.equal(
        out["seg"], torch.ones(3, 1, 2, 2)
    )


# ------------------------------------------------------------ on a classification run
@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    from medtl.data.phantoms import make_phantoms
    from tests.conftest import train_tiny

    data = make_phantoms(tmp_path_factory.mktemp("ph") / "ph", n=48, size=32, seed=0)
    run = train_tiny(data, tmp_path_factory.mktemp("runs"), "task=classification", "train.epochs=2")
    return _overconfident_run(run)


def _overconfident_run(run, factor: float = 8.0):
    """Multiply the classification logits of ``RUN/model.pt`` by ``factor`` (the head's
    last linear layer): the two-epoch model then claims far more confidence than its
    accuracy, a seeded case whose ECE temperature scaling lowers (T near ``factor``)."""
    from medtl.runs.folder import load_bundle, save_bundle

    net, cfg, classes = load_bundle(run)
    with torch.no_grad():
        net.cls_head.fc.weight.mul_(factor)
        net.cls_head.fc.bias.mul_(factor)
    save_bundle(run, net, cfg, classes)
    return run


@pytest.fixture(scope="module")
def calibrated(cls_run):
    """``cls_run`` after ``medtl evaluate RUN --calibrate --youden`` (with the figures): the
    test split's summary. Module-scoped, so every test that needs a stored temperature gets
    one whatever runs first (alone, in any order, under pytest-xdist)."""
    from medtl.api import evaluate

    return evaluate(cls_run, decide=Decisions(calibrate=True, rule="youden"), plots=True)


def test_evaluate_calibrate_and_operating_point(cls_run, calibrated, tmp_path):
    from medtl.api import format_summary
    from medtl.inference.predictor import Predictor, predict

    s = calibrated
    doc = read_calibration(cls_run)
    t = doc["temperature"]
    assert t["ece_after"] <= t["ece_before"]  # on the validation split
    assert t["nll_after"] <= t["nll_before"]
    assert (
        json.loads((cls_run / CALIBRATION_FILE).read_text())["temperature"]["value"] == t["value"]
    )
    assert s["calibration"]["split"]["ece_before"] >= 0
    op = s["operating_points"]
    assert set(op["per_class"]) == set(s["classification"]["classes"])  # 3 classes: one-vs-rest
    row = next(iter(op["per_class"].values()))
    assert {"threshold", "sensitivity", "specificity", "ppv", "npv", "npv_ci"} <= set(row)
    text = format_summary(s)
    assert "temperature scaling T =" in text and "ECE val" in text and "Youden" in text
    summary = json.loads((cls_run / "eval" / "test" / "summary.json").read_text())
    assert "operating_points" in summary and "calibration" in summary

    # predict applies T: probabilities are softmax(logits / T) of the eager network
    from medtl.runs.folder import load_bundle

    net, cfg, classes = load_bundle(cls_run)
    x = torch.rand(1, 3, cfg.data.image_size, cfg.data.image_size)
    image = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255  # the PNG's pixels
    with torch.inference_mode():
        ref = torch.softmax(net.eval()(x)["cls"][0] / doc["temperature"]["value"], 0).numpy()
    got = Predictor(cls_run, optimise=False).predict(image).probabilities
    assert np.allclose([got[c] for c in classes], ref, atol=1e-3)

    # predict --threshold stored needs a positive class with three classes
    with pytest.raises(ConfigError, match="--positive"):
        predict(cls_run, [str(image_path(tmp_path, image))], tmp_path / "o", threshold="stored")
    out = predict(
        cls_run,
        [str(image_path(tmp_path, image))],
        tmp_path / "o2",
        threshold="stored",
        positive=classes[0],
    )
    assert any(p.endswith("predictions.csv") for p in out)


def test_reliability_after_calibration(cls_run, calibrated):
    """evaluate --calibrate keeps T: summary.json has the ECE before and after (after <
    before on val and on test), and reliability_calibrated.png shows the scaled
    probabilities beside reliability.png; both ECEs recomputed from per_image.csv."""
    import csv

    from medtl.metrics.calibration import scaled_probabilities

    ev = cls_run / "eval" / "test"
    cal = json.loads((ev / "summary.json").read_text())["calibration"]
    t = cal["temperature"]
    assert cal["kept"] and t > 2  # the logits were multiplied by 8
    for part in ("val", "split"):
        assert cal[part]["ece_after"] < cal[part]["ece_before"]
    assert (ev / "reliability.png").is_file() and (ev / "reliability_calibrated.png").is_file()
    classes = calibrated["classification"]["classes"]
    rows = list(csv.DictReader((ev / "per_image.csv").open()))
    y = np.array([classes.index(r["class"]) for r in rows])
    p = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])  # 6 decimals
    assert expected_calibration_error(y, p) == pytest.approx(cal["split"]["ece_before"], abs=1e-4)
    after = expected_calibration_error(y, scaled_probabilities(p, t))
    assert after == pytest.approx(cal["split"]["ece_after"], abs=1e-4)


def test_reliability_plots_draw_the_scaled_probabilities(tmp_path):
    from medtl.metrics.calibration import scaled_probabilities
    from medtl.plots.reliability import reliability_figure, reliability_plots

    z, y = _overconfident(200, seed=2)
    t = fit_temperature(z, y)
    assert scaled_probabilities(softmax(z), t) == pytest.approx(softmax(z, t), abs=1e-9)
    before, after = (expected_calibration_error(y, softmax(z, v)) for v in (1.0, t))
    assert after < before
    written = reliability_plots(y, softmax(z), tmp_path, temperature=t)
    assert [w.name for w in written] == ["reliability.png", "reliability_calibrated.png"]
    title = reliability_figure(y, softmax(z, t), title=f"Reliability at T={t:.3g}").axes[0]
    assert f"ECE {after:.3f}" in title.get_title() and f"T={t:.3g}" in title.get_title()
    assert [w.name for w in reliability_plots(y, softmax(z), tmp_path / "b", 1.0)] == [
        "reliability.png"
    ]  # T = 1 (not applied): no second diagram


def test_run_report_shows_the_stored_decisions(cls_run, calibrated):
    import markupsafe

    from medtl.reporting import write_report

    doc = read_calibration(cls_run)
    text = write_report(cls_run).read_text()
    assert "<h2>Decisions</h2>" in text
    assert f"{doc['temperature']['value']:.4f} (min NLL on 10 val images" in text
    op = doc["operating_point"]
    assert "Youden" in op["name"] and str(markupsafe.escape(op["name"])) in text
    for c, r in op["per_class"].items():
        assert f"{c} p ≥ {r['threshold']:.4f} (val sensitivity {r['sensitivity']:.3f}" in text
    assert "Reliability after temperature scaling" in text
    s = calibrated["calibration"]["split"]
    assert f"ECE {s['ece_before']:.3f} before, {s['ece_after']:.3f} after" in text


def image_path(folder, image):
    from PIL import Image

    p = folder / "x.png"
    Image.fromarray(image).save(p)
    return p


def test_export_graph_divides_by_temperature(cls_run, calibrated, tmp_path):
    pytest.importorskip("onnxruntime")
    from medtl.exporting import export_onnx
    from medtl.exporting.runtime import OnnxPredictor
    from medtl.runs.folder import load_bundle

    t = read_calibration(cls_run)["temperature"]["value"]
    assert t == calibrated["calibration"]["temperature"] and t != 1.0  # a kept temperature
    info = export_onnx(cls_run, out=tmp_path)
    assert info["temperature"] == t
    net, cfg, _ = load_bundle(cls_run)
    x = torch.rand(2, 3, cfg.data.image_size, cfg.data.image_size)
    with torch.inference_mode():
        ref = net.eval()(x)["cls"].numpy() / t
    got = OnnxPredictor(tmp_path / "model.onnx")(x.numpy())["cls"]
    assert np.abs(got - ref).max() < 1e-4


def test_cli_options_parse():
    from medtl.cli.decisions import evaluate_options, predict_options
    from medtl.cli.parser import build_parser

    a = build_parser().parse_args(["evaluate", "R", "--calibrate", "--sensitivity", "0.9"])
    d = evaluate_options(a)["decide"]
    assert (d.calibrate, d.rule, d.target, d.hd95) == (True, "sensitivity", 0.9, "pooled")
    assert evaluate_options(build_parser().parse_args(["evaluate", "R"])) == {}
    a = build_parser().parse_args(["evaluate", "R", "--hd95", "max_directed"])
    assert evaluate_options(a)["decide"].hd95 == "max_directed"
    a = build_parser().parse_args(["predict", "R", "x.png", "--threshold", "stored"])
    assert predict_options(a) == {"threshold": "stored"}
