"""The segmentation mask threshold chosen on validation:
``medtl evaluate RUN --seg-threshold auto|T``, stored in RUN/calibration.json and applied by
evaluate, ``medtl predict`` and ``medtl.load(RUN).predict``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from medtl.data.masks.scheme import MaskScheme
from medtl.evaluation.calibrate import Decisions, fit_decisions
from medtl.evaluation.threshold import (
    GRID,
    check_binary,
    choose_seg_threshold,
    dice_at,
    parse_seg_threshold,
    threshold_lines,
)
from medtl.inference.decisions import CALIBRATION_FILE, read_calibration
from medtl.utils.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _logits(p: list[float]) -> torch.Tensor:
    """A (1, 2, 2) logit map whose sigmoid is ``p`` (row-major)."""
    q = torch.tensor(p, dtype=torch.float64).reshape(1, 2, 2)
    return torch.log(q / (1 - q)).float()


def test_auto_threshold_maximises_mean_val_dice_on_a_hand_checked_case():
    # image A: truth = the two top pixels, probabilities 0.9 and 0.42:
    #   t < 0.42 -> both found, Dice 1; t >= 0.45 -> one of two, Dice 2/3
    # image B: truth = the top-left pixel; a false positive at 0.37:
    #   t <= 0.35 -> two predicted, Dice 2/3; t >= 0.40 -> Dice 1
    # mean: 5/6 at 0.30, 0.35 and 0.45 .. 0.70; 1.0 only at 0.40
    a = dice_at(_logits([0.9, 0.42, 0.1, 0.1]), np.array([[1, 1], [0, 0]], bool))
    b = dice_at(_logits([0.9, 0.37, 0.1, 0.1]), np.array([[1, 0], [0, 0]], bool))
    assert a == pytest.approx([1, 1, 1] + [2 / 3] * 6)
    assert b == pytest.approx([2 / 3] * 2 + [1] * 7)
    chosen = choose_seg_threshold(np.stack([a, b]))
    assert chosen["value"] == 0.4
    assert chosen["val_dice"]["0.4"] == pytest.approx(1.0)
    assert chosen["val_dice"]["0.5"] == pytest.approx(5 / 6)
    assert max(chosen["val_dice"].values()) == chosen["val_dice"]["0.4"]


def test_ties_go_to_the_value_nearest_one_half_and_nan_is_left_out():
    flat = np.full((3, len(GRID)), 0.7)
    assert choose_seg_threshold(flat)["value"] == 0.5
    dice = np.full((2, len(GRID)), np.nan)  # the skip rule left every image out...
    dice[0, 1] = 0.9  # ...but one at 0.35
    assert choose_seg_threshold(dice)["value"] == 0.35
    assert choose_seg_threshold(np.full((1, len(GRID)), np.nan))["value"] == 0.5


def test_parse_and_binary_only_errors():
    assert parse_seg_threshold("auto") == "auto" and parse_seg_threshold(" AUTO ") == "auto"
    assert parse_seg_threshold("0.4") == 0.4 and parse_seg_threshold(None) is None
    for bad in ("1.5", "0", "x", "nan"):
        with pytest.raises(ConfigError, match="--seg-threshold"):
            parse_seg_threshold(bad)
    seg, binary = SimpleNamespace(task="segmentation"), MaskScheme("binary")
    with pytest.raises(ConfigError, match="argmax .* has no threshold"):
        check_binary(seg, MaskScheme("labels", (1, 2), ("a", "b")))
    with pytest.raises(ConfigError, match="segmentation head"):
        check_binary(SimpleNamespace(task="classification"), binary)
    check_binary(seg, binary)
    # asking for it on a classification run fails before any inference
    cfg = SimpleNamespace(task="classification", data=SimpleNamespace())
    d = Decisions(seg_threshold="auto")
    with pytest.raises(ConfigError, match="segmentation head"):
        fit_decisions(None, None, cfg, [], None, None, False, d, binary)


def test_cli_option_parses():
    from medtl.cli.decisions import evaluate_options
    from medtl.cli.parser import build_parser

    a = build_parser().parse_args(["evaluate", "RUN", "--seg-threshold", "auto"])
    assert evaluate_options(a)["decide"].seg_threshold == "auto"
    a = build_parser().parse_args(["evaluate", "RUN", "--seg-threshold", "0.35"])
    assert evaluate_options(a)["decide"].seg_threshold == 0.35
    assert evaluate_options(build_parser().parse_args(["evaluate", "RUN"])) == {}


def _probabilities(predictor, image: np.ndarray) -> np.ndarray:
    """The run's foreground probabilities at the image's size (as predict computes them)."""
    from medtl.data.transforms import resize_logits_to
    from medtl.inference.engine import infer
    from medtl.inference.predictor import as_rgb_uint8, model_input

    arr = as_rgb_uint8(image)
    seg = infer(predictor.net, model_input([arr], predictor.size))["seg"][0]
    full = resize_logits_to(seg[None].float(), *arr.shape[:2])[0]
    return torch.sigmoid(full[0]).numpy()


def test_evaluate_stores_the_threshold_and_predict_applies_it(seg_run, tmp_path):
    from medtl.api import evaluate, format_summary, load
    from medtl.cli.parser import main
    from medtl.runs.folder import load_bundle

    run = tmp_path / "run"
    shutil.copytree(seg_run, run)  # the session's run stays at 0.5
    s = evaluate(
        run, split="val", plots=False, save_images=0, decide=Decisions(seg_threshold="auto")
    )
    entry = read_calibration(run)["seg_threshold"]
    means = entry["val_dice"]
    assert entry["value"] in GRID and entry["fitted_on"] == "val"
    assert means[f"{entry['value']:.4g}"] == pytest.approx(max(means.values()))
    # the evaluated split is val here: its Dice at the chosen threshold is the fitted one
    assert s["segmentation"]["dice"]["mean"] == pytest.approx(entry["val_dice_at_value"])
    assert s["seg_threshold"]["value"] == entry["value"]
    assert "mask threshold" in format_summary(s)
    assert json.loads((run / "eval" / "val" / "summary.json").read_text())["seg_threshold"]

    # a given threshold, through the command line: where the probabilities split the image
    _, cfg, _ = load_bundle(run)
    image_path = next(
        p for p in sorted(Path(cfg.data.root).rglob("*.png")) if "_mask" not in p.name
    )
    image = np.array(Image.open(image_path))
    p = _probabilities(load(run), image)
    t = float(np.round(np.clip(np.median(p), 0.01, 0.99), 4))
    args = ["--split", "val", "--seg-threshold", str(t), "--no-plots"]
    assert main(["evaluate", str(run), *args]) == 0
    assert read_calibration(run)["seg_threshold"]["value"] == t
    assert json.loads((run / CALIBRATION_FILE).read_text())["seg_threshold"]["rule"] == "given"

    predictor = load(run)
    assert predictor.seg_threshold == t
    mask = predictor.predict(image).mask
    assert np.array_equal(mask, p > t)
    assert 0 < mask.sum() < mask.size
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(image_path), "--out", str(out)]) == 0
    written = np.array(Image.open(out / f"{image_path.stem}_mask.png")) > 0
    assert np.array_equal(written, p > t)
    assert threshold_lines({}) == []
