"""A test split no fold sees, fold ensembles, their numbers in the comparison.

One tiny 3-fold comparison (2 configurations) serves every test here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtl.comparison import compare
from medtl.comparison.ensemble import fold_runs, predict_ensemble, resolve_cell
from medtl.comparison.holdout import cv_splits
from medtl.data.layouts import Sample
from medtl.utils.errors import MedtlError
from tests.conftest import TINY, run_cli

# 4 epochs at lr 0.01 learn the phantoms a little; the 1-epoch cell is the cheap rival
GRID = ["train.epochs=4,1"]


@pytest.fixture(scope="module")
def cv(phantoms, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv") / "cmp"
    compare([f"data.root={phantoms}", *TINY, "train.lr=0.01"], GRID, folds=3, out=out)
    return out


def _splits(run: Path) -> dict[str, list[str]]:
    doc = json.loads((run / "splits.json").read_text())
    return {s: [e["image"] for e in doc[s]] for s in ("train", "val", "test")}


def _dice(summary: Path) -> float:
    return json.loads(summary.read_text())["segmentation"]["dice"]["mean"]


@pytest.mark.slow
def test_no_test_image_in_any_fold(cv, phantoms):
    design = json.loads((cv / "compare.json").read_text())
    test = design["splits"][0]["test"]
    assert test and all(f["test"] == test for f in design["splits"])
    vals = []
    for cell in design["cells"]:
        for k in range(3):
            s = _splits(cv / "cells" / cell["id"] / f"fold{k}")
            assert s["test"] == test  # every fold's splits.json shows the same test split
            assert not set(test) & (set(s["train"]) | set(s["val"]))
            vals += s["val"] if cell is design["cells"][0] else []
    every = sorted(str(p) for p in phantoms.rglob("*.png") if "_mask" not in p.name)
    assert sorted(vals + test) == every  # the folds split exactly the rest


def test_cv_splits_hold_out_a_premade_test_folder_and_none_at_zero():
    samples = [Sample(Path(f"{i}.png"), label="ab"[i % 2]) for i in range(12)]
    samples += [Sample(Path(f"t{i}.png"), label="ab"[i % 2], split="test") for i in range(3)]
    folds = cv_splits(samples, 3, 0.2, seed=0)
    assert all(f["test"] == [12, 13, 14] for f in folds)
    assert sorted(i for f in folds for i in f["val"]) == list(range(12))
    none = cv_splits(samples, 3, 0.0, seed=0)  # --test-fraction 0: today's behaviour
    assert all(f["test"] == [] for f in none)
    assert sorted(i for f in none for i in f["val"]) == list(range(15))


def test_ensemble_masks_are_the_fold_models_mean_probability(cv, tmp_path):
    """The ensemble's test masks, pixel by pixel, are where the mean of the fold models'
    sigmoid probabilities exceeds 0.5 (computed here from each fold's own Predictor).
    Whether that mean beats the fold models is a property of models that learned: these
    4-epoch ones on 12 phantoms are not (Dice 0-0.4 per fold, depending on the CPU)."""
    from medtl.inference.predictor import load, model_input

    cell = resolve_cell(cv, "1")
    images = [Path(p) for p in json.loads((cv / "compare.json").read_text())["splits"][0]["test"]]
    predict_ensemble(cv, "1", images, tmp_path, postprocess="none")
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in images]
    probs = []
    for run in fold_runs(cell):
        member = load(run)
        with torch.inference_mode():
            probs.append(torch.sigmoid(member.net(model_input(arrays, member.size))["seg"]))
    mean = torch.stack(probs).mean(0)[:, 0].numpy()
    assert mean.shape[1:] == arrays[0].shape[:2]  # 32 px phantoms at image_size 32: no resize
    sure = np.abs(mean - 0.5) > 1e-4  # leaves float rounding at the threshold out
    for j, image in enumerate(images):
        got = np.asarray(Image.open(tmp_path / f"{image.stem}_mask.png")) > 0
        assert np.array_equal(got[sure[j]], (mean[j] > 0.5)[sure[j]]), image.name
    members = np.stack([p[:, 0].numpy() > 0.5 for p in probs])
    assert (members != (mean > 0.5)).any()  # the mean is not simply one of its members


def test_results_hold_cv_and_test_numbers(cv):
    res = json.loads((cv / "results.json").read_text())
    n_test = len(json.loads((cv / "compare.json").read_text())["splits"][0]["test"])
    assert res["n_test"] == n_test and res["test_metric"] == "dice"
    for c in res["configs"]:
        cell = cv / "cells" / c["cell"]
        t = c["test"]
        fold_dice = [_dice(r / "eval" / "test" / "summary.json") for r in fold_runs(cell)]
        assert t["folds"]["dice"]["values"] == pytest.approx(fold_dice)
        assert t["ensemble"]["dice"]["mean"] == pytest.approx(
            _dice(cell / "ensemble" / "eval" / "test" / "summary.json")
        )
        assert t["ensemble_vs_folds"]["n"] == n_test == t["n_images"]
    assert res["configs"][1]["vs_best"]["test"]["n"] == n_test
    assert "p_permutation_holm" in res["configs"][1]["vs_best"]["test"]
    md = (cv / "results.md").read_text()
    assert "| Dice images | Dice folds |" in md  # CV columns as before ...
    assert "Dice test, fold models | Dice test, ensemble |" in md  # ... and the test ones
    assert "held out of every fold" in md
    assert "test_ensemble_dice_mean" in (cv / "results.csv").read_text()


def test_evaluate_and_predict_cli_with_config(cv, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", str(cv), "--config", "1")
    cell = resolve_cell(cv, "1")
    assert code == 0 and out.strip().endswith(str(cell / "ensemble" / "eval" / "test"))
    assert (
        "mean of 3 fold models"
        in json.loads((cell / "ensemble" / "eval" / "test" / "summary.json").read_text())[
            "inference"
        ]
    )
    assert (cell / "ensemble" / "eval" / "test" / "per_image.csv").is_file()
    assert (cell / "ensemble" / "eval" / "test" / "overlays_grid.png").is_file()
    # the cell id and the cell folder name the same configuration
    assert resolve_cell(cv, cell.name) == cell and resolve_cell(cv, str(cell)) == cell
    image = Path(json.loads((cv / "compare.json").read_text())["splits"][0]["test"][0])
    code, out, _ = run_cli(
        capsys, "predict", str(cv), str(image), "--config", "1", "--out", str(tmp_path / "p")
    )
    assert code == 0 and (tmp_path / "p" / f"{image.stem}_mask.png").is_file()
    code, _, err = run_cli(capsys, "evaluate", str(cv), "--config", "7")
    assert code == 2 and "2 finished configuration(s)" in err.strip().splitlines()[-1]


def test_unfinished_folds_warn_or_fail_with_strict(tmp_path, caplog):
    for k in range(3):
        (tmp_path / f"fold{k}").mkdir()
    (tmp_path / "fold0" / "model.pt").write_bytes(b"")
    (tmp_path / "fold2" / "model.pt").write_bytes(b"")
    assert [r.name for r in fold_runs(tmp_path)] == ["fold0", "fold2"]
    assert "fold1 not finished" in caplog.text
    with pytest.raises(MedtlError, match="fold1 not finished"):
        fold_runs(tmp_path, strict=True)
    (tmp_path / "fold0" / "model.pt").unlink()
    (tmp_path / "fold2" / "model.pt").unlink()
    with pytest.raises(MedtlError, match="no finished fold"):
        fold_runs(tmp_path)


def test_postprocessing_is_chosen_on_cv_and_applied_by_the_ensemble(cv):
    res = json.loads((cv / "results.json").read_text())
    for c in res["configs"]:
        cell = cv / "cells" / c["cell"]
        pp = json.loads((cell / "postprocess.json").read_text())
        assert pp == c["postprocess"] and pp["n_images"] > 0
        assert set(pp["cv_dice"]) == {
            "none",
            "largest",
            "min_area=0.1%",
            "min_area=0.5%",
            "min_area=1%",
        }
        assert pp["dice_after"] >= pp["dice_before"] == pp["cv_dice"]["none"]
        assert (pp["rule"] is None) == (pp["dice_after"] == pp["dice_before"])
        summary = json.loads((cell / "ensemble" / "eval" / "test" / "summary.json").read_text())
        assert ("postprocess" in summary) == (pp["rule"] is not None)
        assert len(c["best_epochs"]) == 3 and c["final_epochs"] >= 1
        assert c["class_offsets"] is None  # no class head: no offsets chosen
        assert not (cell / "class_offsets.json").exists()
    md = (cv / "results.md").read_text()
    assert "## Post-processing and the final model" in md and "CV Dice" in md
    assert "data.val_fraction=0 data.test_fraction=0 train.epochs=" in md


def test_comparison_model_card_of_the_best_configuration(cv):
    card = (cv / "MODEL_CARD.md").read_text()
    best = json.loads((cv / "results.json").read_text())["configs"][0]
    assert f"best configuration {best['configuration']}" in card
    assert "the fold ensemble of its 3 fold models" in card
    assert "### test" in card and "## Intended use" in card


def test_single_run_postprocess_option(cv, capsys):
    run = fold_runs(resolve_cell(cv, "1"))[0]
    code, out, _ = run_cli(
        capsys, "evaluate", str(run), "--split", "val", "--postprocess", "largest"
    )
    assert code == 0 and "post-processing largest: Dice" in out
    rows = (run / "eval" / "val" / "per_image.csv").read_text()
    assert "dice_raw" in rows.splitlines()[0]
    code, _, err = run_cli(capsys, "evaluate", str(run), "--postprocess", "biggest")
    assert code == 2 and "largest, min_area=A" in err
