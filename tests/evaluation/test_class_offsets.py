"""Class offsets chosen on out-of-fold predictions: fitted where a classifier over-calls the
minority classes, left at zero where it does not, stored per cell and added to the fold
ensemble's class logits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medtl import api
from medtl.comparison.ensemble import FoldEnsemble
from medtl.evaluation.class_offsets import (
    OFFSETS_FILE,
    choose_for_cell,
    fit_offsets,
    macro_f1,
    offsets_of,
)
from medtl.utils.errors import ConfigError

CLASSES = ["benign", "malignant", "normal"]


def _biased(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes (shares 0.56 / 0.27 / 0.17), noisy scores, and a decision pushed towards
    the minority classes by +1.5 / +1.0 on their log-probabilities (as balanced weights do)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.56, 0.27, 0.17])
    z = rng.normal(0, 1.2, (n, 3))
    z[np.arange(n), y] += 2.0
    z += np.array([0.0, 1.5, 1.0])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return y, logp


def test_offsets_undo_a_bias_towards_the_minority_classes() -> None:
    y, logp = _biased()
    off, before, after = fit_offsets(y, logp)
    assert off[0] == 0.0 and off[1] < -0.5 and off[2] < -0.3  # against the push
    assert after >= before + 0.02
    assert after == pytest.approx(macro_f1(y, (logp + off).argmax(1), 3))
    y2, logp2 = _biased(seed=1)  # the same offsets help on another draw
    assert macro_f1(y2, (logp2 + off).argmax(1), 3) > macro_f1(y2, logp2.argmax(1), 3)


def test_no_offset_moves_without_a_gain() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    logp = np.log(np.eye(3)[y] * 0.9 + 0.05)  # already every image right
    off, before, after = fit_offsets(y, logp)
    assert before == after == 1.0 and not off.any()


def _fold(cell: Path, k: int, y: np.ndarray, logp: np.ndarray) -> Path:
    run = cell / f"fold{k}"
    (run / "eval" / "val").mkdir(parents=True)
    with open(run / "eval" / "val" / "per_image.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "class", "prediction", *(f"p_{c}" for c in CLASSES), "dice"])
        p = np.exp(logp)
        for i, (t, row) in enumerate(zip(y, p, strict=True)):
            w.writerow([f"{k}_{i}.png", CLASSES[t], CLASSES[int(row.argmax())], *row, 0.8])
    return run


def test_a_cell_keeps_its_offsets_and_the_ensemble_reads_them(tmp_path: Path) -> None:
    y, logp = _biased()
    runs = [_fold(tmp_path, k, y[k::3], logp[k::3]) for k in range(3)]
    doc = choose_for_cell(tmp_path, runs, CLASSES)
    assert doc is not None and doc["kept"] and doc["n_images"] == len(y)
    assert doc["macro_f1_after"] > doc["macro_f1_before"]
    stored = json.loads((tmp_path / OFFSETS_FILE).read_text())
    assert stored["offsets"] == doc["offsets"]
    off = offsets_of(tmp_path, CLASSES)
    assert off is not None and off[1] < 0
    assert offsets_of(tmp_path, CLASSES, "none") is None  # --class-offsets none
    assert offsets_of(tmp_path, ["a", "b", "c"]) is None  # other classes: not these offsets
    (tmp_path / OFFSETS_FILE).unlink()
    derived = choose_for_cell(tmp_path, runs)  # the classes from the p_<class> columns
    assert derived is not None and derived["classes"] == CLASSES
    assert derived["offsets"] == doc["offsets"]


def test_no_class_columns_no_offsets(tmp_path: Path) -> None:
    run = tmp_path / "fold0"
    (run / "eval" / "val").mkdir(parents=True)
    (run / "eval" / "val" / "per_image.csv").write_text("image,dice\na.png,0.9\n")
    assert choose_for_cell(tmp_path, [run], CLASSES) is None
    assert not (tmp_path / OFFSETS_FILE).exists()


class _Fixed(torch.nn.Module):
    def __init__(self, logits: list[float]):
        super().__init__()
        self.logits = torch.tensor([logits])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cls": self.logits.expand(len(x), -1)}


def test_the_ensemble_adds_the_offsets_to_its_mean_probability() -> None:
    members = [_Fixed([0.0, 0.3, -1.0]), _Fixed([0.0, 0.1, -1.0])]
    x = torch.zeros(2, 3, 8, 8)
    plain = FoldEnsemble(members)(x)["cls"]
    shifted = FoldEnsemble(members, [0.0, -1.0, 0.0])(x)["cls"]
    assert plain.argmax(1).tolist() == [1, 1]  # malignant by the mean probability
    assert shifted.argmax(1).tolist() == [0, 0]  # benign once the offset applies
    assert torch.allclose(shifted - plain, torch.tensor([0.0, -1.0, 0.0]))
    assert "class offsets +0.0 -1.0 +0.0" in FoldEnsemble(members, [0.0, -1.0, 0.0]).describe()


def test_a_single_run_refuses_class_offsets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--class-offsets is for a fold ensemble"):
        api.evaluate(tmp_path / "run", class_offsets="none")


@pytest.mark.slow
def test_a_classification_comparison_chooses_and_applies_its_offsets(phantoms, tmp_path) -> None:
    """End to end: the compare writes the cell's offsets from its folds' validation rows,
    results.json and results.md carry them, and the ensemble's test summary says whether it
    applied them."""
    from medtl.comparison import compare
    from tests.conftest import TINY

    out = tmp_path / "cmp"
    compare(
        [f"data.root={phantoms}", "task=classification", *TINY, "train.epochs=2"],
        [],
        folds=2,
        out=out,
    )
    res = json.loads((out / "results.json").read_text())
    cell = out / "cells" / res["configs"][0]["cell"]
    doc = json.loads((cell / OFFSETS_FILE).read_text())
    rows = sum(
        len((cell / f"fold{k}" / "eval" / "val" / "per_image.csv").read_text().splitlines()) - 1
        for k in range(2)
    )
    assert doc["classes"] == CLASSES and doc["n_images"] == rows
    assert doc["macro_f1_after"] >= doc["macro_f1_before"]
    assert doc["kept"] == (doc["macro_f1_after"] > doc["macro_f1_before"])
    assert res["configs"][0]["class_offsets"] == doc
    summary = json.loads((cell / "ensemble" / "eval" / "test" / "summary.json").read_text())
    assert ("class offsets" in summary["inference"]) == doc["kept"]


def test_a_broken_offsets_file_is_one_line_naming_it(tmp_path: Path) -> None:
    from medtl.utils.errors import DataError

    path = tmp_path / OFFSETS_FILE
    path.write_text("{not json")
    with pytest.raises(DataError, match="class_offsets.json"):
        offsets_of(tmp_path, CLASSES)
    path.write_text(json.dumps({"classes": CLASSES, "offsets": {"benign": 0.0}, "kept": True}))
    with pytest.raises(DataError, match="expected the classes"):
        offsets_of(tmp_path, CLASSES)
