"""Mask thresholds of a multilabel run (one sigmoid per structure): one per structure chosen
on val with ``auto``, one for all when given; stored in calibration.json, applied by
evaluate and predict channel by channel."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtl.evaluation.calibrate import Decisions
from medtl.evaluation.threshold_structures import choose_per_structure, structure_dice_at
from medtl.inference.decisions import threshold_value
from medtl.inference.engine import mask_at_size
from medtl.runs.records import Calibration
from medtl.utils.errors import DataError
from tests.conftest import train_tiny
from tests.data.structures import STRUCTURES, make_structures

pytestmark = pytest.mark.usefixtures("one_thread")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# structure 0 sigmoids (0.6, 0.4), structure 1 (0.45, 0.2), on a 1 x 2 image
LOGITS = torch.tensor([[[_logit(0.6), _logit(0.4)]], [[_logit(0.45), _logit(0.2)]]])


def test_each_structure_is_cut_at_its_own_threshold():
    # one for all: 0.3 keeps both pixels of structure 0 (bit 0) and pixel 0 of structure 1
    assert mask_at_size(LOGITS, 1, 2, 0.3, multilabel=True).tolist() == [[3, 1]]
    # per structure (0.5, 0.3): structure 0 only on pixel 0, structure 1 on pixel 0
    assert mask_at_size(LOGITS, 1, 2, (0.5, 0.3), multilabel=True).tolist() == [[3, 0]]
    assert mask_at_size(LOGITS, 1, 2, (0.3, 0.5), multilabel=True).tolist() == [[1, 1]]


def test_dice_per_structure_and_threshold_by_hand():
    truth = np.array([[3, 0]], np.uint8)  # both structures on pixel 0 only
    dice = structure_dice_at(LOGITS, truth, (0.3, 0.5))
    # structure 0: at 0.3 both pixels (2*1/(2+1)), at 0.5 pixel 0 (1); structure 1: at 0.3
    # pixel 0 (1), at 0.5 nothing (0)
    np.testing.assert_allclose(dice, [[2 / 3, 1.0], [1.0, 0.0]])
    chosen = choose_per_structure(dice[None], ("a", "b"), (0.3, 0.5))
    assert (chosen["a"]["value"], chosen["b"]["value"]) == (0.5, 0.3)


def test_calibration_reads_per_structure_and_old_binary_files(tmp_path):
    old = {"seg_threshold": {"value": 0.45, "rule": "max mean val Dice"}}
    assert threshold_value(old) == 0.45  # a binary run's file reads as before
    new = {"seg_threshold": {"value": 0.4, "per_structure": {"a": 0.5, "b": 0.3}}}
    assert threshold_value(new) == (0.5, 0.3)
    assert threshold_value({"seg_threshold": {"value": 0.4}}) == 0.4  # given: one for all
    bad = {"seg_threshold": {"value": 0.4, "per_structure": {"a": 1.5}}}
    with pytest.raises(DataError, match="seg_threshold.per_structure.a"):
        Calibration.of(bad, tmp_path / "calibration.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("structure_thresholds")
    data = make_structures(base / "d", n=12, size=32)
    return train_tiny(data, base / "runs", "output.name=st")


def test_auto_chooses_one_threshold_per_structure_and_predict_applies_them(run, tmp_path):
    from medtl.api import evaluate, format_summary, load

    data = run.parent.parent / "d"
    run = Path(shutil.copytree(run, tmp_path / "run"))
    s = evaluate(
        run, split="val", plots=False, save_images=0, decide=Decisions(seg_threshold="auto")
    )
    entry = json.loads((run / "calibration.json").read_text())["seg_threshold"]
    per = entry["per_structure"]
    assert list(per) == list(STRUCTURES)
    for name, t in per.items():  # each the best of its own val Dice
        means = entry["val_dice"][name]
        assert means[f"{t:.4g}"] == pytest.approx(max(v for v in means.values() if v == v))
    assert entry["value"] == pytest.approx(np.mean(list(per.values())))
    assert s["seg_threshold"]["per_structure"] == per
    assert "mask threshold per structure" in format_summary(s)
    predictor = load(run)
    assert predictor.seg_threshold == tuple(per.values())
    # predict: channel k cut at structure k's threshold, bit k of the mask
    from PIL import Image

    from medtl.data.transforms import resize_logits_to
    from medtl.inference.engine import infer
    from medtl.inference.predictor import as_rgb_uint8, model_input

    image = as_rgb_uint8(np.array(Image.open(data / "images" / "x00.png")))
    seg = infer(predictor.net, model_input([image], predictor.size))["seg"][0]
    p = torch.sigmoid(resize_logits_to(seg[None].float(), *image.shape[:2])[0]).numpy()
    want = sum((p[k] > t).astype(np.uint8) << k for k, t in enumerate(per.values()))
    assert np.array_equal(predictor.predict(image).mask, want)


def test_a_given_threshold_applies_to_every_structure(run, tmp_path):
    from medtl.api import evaluate, load

    run = Path(shutil.copytree(run, tmp_path / "run"))
    evaluate(run, split="val", plots=False, save_images=0, decide=Decisions(seg_threshold=0.4))
    entry = json.loads((run / "calibration.json").read_text())["seg_threshold"]
    assert (entry["value"], entry["rule"]) == (0.4, "given") and "per_structure" not in entry
    assert load(run).seg_threshold == 0.4


def test_evaluate_post_processes_each_structure(run, tmp_path):
    import csv

    from medtl.api import evaluate
    from medtl.inference.postprocess import _binary, parse_rule

    run = Path(shutil.copytree(run, tmp_path / "run"))
    s = evaluate(run, split="val", plots=False, save_images=0, postprocess="largest")
    assert s["postprocess"]["rule"] == "largest"
    split = run / "eval" / "val"
    rows = list(csv.DictReader((split / "per_image.csv").open()))
    assert rows and all("dice_raw" in r for r in rows)
    for row in rows:  # every written structure mask is one component at most
        stem = Path(row["image"]).stem
        for name in STRUCTURES:
            png = np.asarray(Image.open(split / "predictions" / f"{stem}_{name}.png")) > 127
            assert np.array_equal(png, _binary(png, parse_rule("largest")))


def test_an_export_records_the_per_structure_thresholds():
    from medtl.exporting.exporter import graph_meta

    meta = graph_meta("segmentation", [], 32, {"seg_threshold": (0.5, 0.3)})
    assert json.loads(meta["seg_threshold"]) == [0.5, 0.3]
    assert graph_meta("segmentation", [], 32, {"seg_threshold": 0.45})["seg_threshold"] == "0.45"


def test_an_operating_point_beside_per_structure_thresholds_keeps_both(tmp_path):
    doc = {
        "seg_threshold": {"value": 0.4, "per_structure": {"a": 0.5, "b": 0.3}},
        "operating_point": {"per_class": {"x": {"threshold": 0.7}}},
    }
    cal = Calibration.of(doc, tmp_path / "calibration.json")
    assert cal.mask_threshold == (0.5, 0.3)
    assert cal.operating_point["per_class"]["x"]["threshold"] == 0.7
    # a binary run's file with an operating point: one threshold, as before
    binary = {"seg_threshold": {"value": 0.45}, "operating_point": doc["operating_point"]}
    assert Calibration.of(binary, tmp_path / "calibration.json").mask_threshold == 0.45
