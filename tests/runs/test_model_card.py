"""``RUN/MODEL_CARD.md``: its numbers are the evaluation's (summary.json), its facts the
run's (run.json, splits.json), and it says what medtl cannot know."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.comparison.tables import fmt
from medtl.runs.model_card import calibration, model_card_text, write_model_card


@pytest.fixture(scope="module")
def evaluated(mt_run):
    from medtl.evaluation.evaluate import evaluate

    evaluate(mt_run, plots=False)
    return mt_run


def test_card_numbers_equal_summary(evaluated):
    card = write_model_card(evaluated).read_text(encoding="utf-8")
    summary = json.loads((evaluated / "eval" / "test" / "summary.json").read_text())
    dice = summary["segmentation"]["dice"]
    assert f"| Dice | {fmt(dice['mean'])} ± {fmt(dice['std'])} " in card
    assert f"[{fmt(dice['ci_low'])}, {fmt(dice['ci_high'])}]" in card
    cls = summary["classification"]
    assert f"- accuracy: {fmt(cls['accuracy'])} [" in card
    assert f"- macro F1: {fmt(cls['macro_avg']['f1'])}" in card
    for c, v in cls["per_class"].items():
        assert f"| {c} | {fmt(v['precision'])} | {fmt(v['recall'])}" in card
    assert f"### test ({summary['n_images']} images)" in card
    assert "calibration: ECE" in card and "Worst cases (lowest Dice)" in card


def test_card_facts_from_run_json(evaluated):
    card = model_card_text(evaluated)
    facts = json.loads((evaluated / "run.json").read_text())
    splits = json.loads((evaluated / "splits.json").read_text())
    assert f"- wall time: {facts['train_seconds']:.1f} s" in card
    assert f"- epochs: {len(facts['epochs'])} run of 1" in card
    assert (
        f"| all | {len(splits['train'])} | {len(splits['val'])} | {len(splits['test'])} |" in card
    )
    assert "- duplicates: none found" in card
    assert "M parameters" in card and "encoder: resnet18" in card
    for section in ("## Intended use", "## Known limits", "medtl cannot know"):
        assert section in card


def test_card_before_evaluation_and_without_run_json(seg_run, tmp_path):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(seg_run, run, ignore=shutil.ignore_patterns("eval", "run.json", "model.pt"))
    card = model_card_text(run)
    assert "Not evaluated yet" in card and "No run.json" in card


def test_calibration_definition():
    # two bins: [0.9, 0.9] right and wrong -> |0.5 - 0.9|; [0.3] right -> |1 - 0.3|
    cal = calibration(np.array([0.9, 0.9, 0.3]), np.array([1, 0, 1]))
    assert cal["ece"] == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.7)
    assert cal["brier"] == pytest.approx((0.01 + 0.81 + 0.49) / 3)
