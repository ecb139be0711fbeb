"""The last step after a comparison: ``medtl train ...
data.val_fraction=0 data.test_fraction=0 train.epochs=E`` trains on every image, keeps the
last epoch (no validation images to choose or stop on) and says so."""

from __future__ import annotations

import json

import pytest
import torch

from medtl.utils.errors import MedtlError
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def final_run(phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("final")
    extra = ("data.val_fraction=0", "data.test_fraction=0", "train.epochs=3", "train.patience=1")
    return train_tiny(phantoms, out, "output.name=final", *extra)


def test_every_image_trains_and_the_last_epoch_is_kept(final_run, phantoms):
    from medtl.training.fit import FINAL_NOTE

    splits = json.loads((final_run / "splits.json").read_text())
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (16, 0, 0)
    facts = json.loads((final_run / "run.json").read_text())
    assert facts["status"] == "finished" and facts["final_model"] == FINAL_NOTE
    assert facts["best_epoch"] == 2 and facts["best_score"] is None  # all 3 epochs ran
    log = (final_run / "train.log").read_text()
    assert FINAL_NOTE in log and "(train.patience ignored)" in log
    assert "model.pt = the last epoch's weights" in log
    bundle = torch.load(final_run / "model.pt", map_location="cpu", weights_only=True)
    last = torch.load(final_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    net = {k.removeprefix("net."): v for k, v in last["state_dict"].items()}
    weights = bundle["state_dict"]
    assert len(weights) > 50 and weights.keys() <= net.keys()
    assert all(torch.equal(weights[k], net[k]) for k in weights)


def test_evaluate_of_a_final_model_asks_for_new_data(final_run, phantoms):
    from medtl.evaluation.evaluate import evaluate

    with pytest.raises(MedtlError, match=r"a final model: every image trained it.*--data DIR"):
        evaluate(final_run, plots=False, save_images=0)
    summary = evaluate(final_run, data=phantoms, plots=False, save_images=0)
    assert summary["n_images"] == 16


def test_the_final_command_names_the_config_file_and_quotes():
    """The command in results.md must be the comparison's own: its ``-c FILE`` included
    (the BUSI comparison printed one without ``-c configs/busi_seg.yaml``)."""
    import shlex

    from medtl.comparison.final import final_lines

    best = {"rank": 1, "configuration": "c", "overrides": ["model.strategy=finetune"]}
    best |= {"final_epochs": 19, "best_epochs": [18, 20]}
    base = ["data.root=/d/my data", "train.epochs=6", "data.test_fraction=0.2"]
    results = {"configs": [best], "base_overrides": base}  # the epochs and split: once, final
    results["config_file"] = "/cfg/busi seg.yaml"
    cmd = next(line for line in final_lines(results) if "medtl train" in line).strip()
    assert shlex.split(cmd) == [
        *("medtl", "train", "-c", "/cfg/busi seg.yaml", "data.root=/d/my data"),
        *("model.strategy=finetune", "data.val_fraction=0", "data.test_fraction=0"),
        "train.epochs=19",
    ]
    results["config_file"] = None  # no -c: nothing invented
    cmd = next(line for line in final_lines(results) if "medtl train" in line)
    assert " -c " not in cmd


def _fold(path, epochs, best, train_seconds, max_time="2m", planned=50.0):
    path.mkdir(parents=True)
    train = {"max_time": max_time, "planned_seconds": planned, "epochs": 6}
    (path / "config.yaml").write_text(json.dumps({"train": train}))  # JSON is YAML
    doc = {"status": "finished", "split": {"train": 30, "val": 10, "test": 10}}
    doc |= {"epochs": [{"epoch": i, "seconds": s} for i, s in enumerate(epochs)]}
    (path / "run.json").write_text(json.dumps(doc | {"best_epoch": best,
                                                     "train_seconds": train_seconds}))  # fmt: skip
    return path


def test_the_final_command_carries_a_budget_for_one_full_data_training(tmp_path):
    """Folds of a plan ran under train.max_time=2m each: the final command replaces it with
    the time of E epochs on every image (by hand below) and drops the fold's prediction."""
    import shlex

    from medtl.comparison.final import final_facts, final_lines

    runs = [
        _fold(tmp_path / "fold0", [10, 12, 11], best=2, train_seconds=40),  # 11 s / 30 images
        _fold(tmp_path / "fold1", [9, 9, 15], best=1, train_seconds=36),  # 9 s / 30 images
    ]
    facts = final_facts(tmp_path, runs)
    assert facts["final_epochs"] == 3 and facts["fold_max_time"] == "2m"
    # median of 11/30 and 9/30 s per image x 50 images = 16.67 s per epoch; x 3 epochs,
    # + 7 s overhead (fold0: 40 - 33), x 1.25 = 71.25 -> 72 s
    assert facts["final_max_time"] == "1m12s" and facts["fold_planned"]
    assert "3 epochs on all 50 images" in facts["final_budget"]
    best = {"rank": 1, "configuration": "c", "overrides": ["model.strategy=finetune"]} | facts
    results = {"configs": [best], "config_file": "plan.yaml", "base_overrides": []}
    lines = final_lines(results)
    cmd = shlex.split(next(line for line in lines if "medtl train" in line))
    assert cmd[-3:] == ["train.epochs=3", "train.max_time=1m12s", "train.planned_seconds=none"]
    assert any("ran under train.max_time=2m each" in line for line in lines)
    from medtl.configuration.loading import load_config

    cfg = load_config(overrides=cmd[4:])  # the overrides load: one budget, no prediction
    assert cfg.train.max_time == "1m12s" and cfg.train.planned_seconds is None


def test_no_fold_budget_no_final_budget_and_unknown_times_say_so(tmp_path):
    from medtl.comparison.final import final_facts

    plain = _fold(tmp_path / "a" / "fold0", [10], best=0, train_seconds=12, max_time=None)
    facts = final_facts(tmp_path / "a", [plain])
    assert "fold_max_time" not in facts and "final_max_time" not in facts
    timeless = _fold(tmp_path / "b" / "fold0", [], best=None, train_seconds=1)
    facts = final_facts(tmp_path / "b", [timeless])
    assert facts["final_max_time"] == "none" and "no epoch times" in facts["final_budget"]
