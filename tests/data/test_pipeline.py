"""End to end through the CLI: train -> run folder -> evaluate -> predict, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import TINY, run_cli, train_tiny


def test_train_writes_the_run_folder_and_prints_it_last(phantoms, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys, "train", f"data.root={phantoms}", f"output.dir={tmp_path}", "output.name=r", *TINY
    )
    assert code == 0
    run = Path(out.strip().splitlines()[-1])
    assert run == tmp_path / "r"
    for name in (
        "config.yaml",
        "splits.json",
        "env.json",
        "train.log",
        "metrics.csv",
        "model.pt",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["image_size"] == 32 and cfg["model"]["encoder"] == "resnet18"
    splits = json.loads((run / "splits.json").read_text())
    names = [e["image"] for part in ("train", "val", "test") for e in splits[part]]
    assert len(names) == len(set(names)) == 16  # disjoint and complete
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0]
    assert 0.0 <= float(rows[0]["val_dice"]) <= 1.0
    log = (run / "train.log").read_text()
    assert "param group encoder" in log and "layout=class_masks" in log
    bundle = torch.load(run / "model.pt", weights_only=True)
    assert bundle["config"]["task"] == "segmentation" and bundle["state_dict"]


def test_run_json_holds_the_facts_of_the_run(phantoms, tmp_path):
    run = train_tiny(
        phantoms,
        tmp_path,
        "output.name=facts",
        "train.epochs=3",
        "model.strategy=two_stage",
        "model.warmup_epochs=1",
    )
    facts = json.loads((run / "run.json").read_text())
    assert facts["format"] == "medtl-run-1"
    assert facts["status"] == "finished" and facts["error"] is None and facts["ended"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [e["epoch"] for e in facts["epochs"]] == [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [e["seconds"] for e in facts["epochs"]] == [float(r["epoch_time_s"]) for r in rows]
    best = max(rows, key=lambda r: float(r["val_score"]))  # the first of equal ones
    assert facts["best_epoch"] == int(best["epoch"])
    assert facts["best_score"] == pytest.approx(float(best["val_score"]), abs=1e-6)
    assert facts["unfreeze_epochs"] == [1] and facts["train_seconds"] > 0
    assert facts["monitor"] == "val_score"
    assert facts["memory_layout"] == {"chosen": "contiguous", "probe_img_per_s": None}
    data = facts["data"]
    assert data["summary"] in (run / "train.log").read_text()
    assert data["layout"] == "class_masks" and data["n_images"] == 16
    assert data["classes"] == ["benign", "malignant", "normal"]
    assert data["mask_interpretation"].startswith("binary")
    assert set(data["duplicate_groups"]) >= {"n_groups_with_duplicates", "n_images_in_them"}
    assert sum(facts["split"].values()) == 16
    assert facts["model"]["encoder"] == "resnet18" and facts["model"]["strategy"] == "two_stage"


def test_evaluate_takes_only_process_settings(seg_run, capsys):
    code, _, err = run_cli(capsys, "evaluate", str(seg_run), "--split", "val", "model.arch=fpn")
    assert code == 2 and "model.arch" in err and "train.devices" in err
    with pytest.raises(SystemExit) as exc:  # argparse's own exit 2
        run_cli(capsys, "evaluate", str(seg_run), "--split", "val", "oops")
    assert exc.value.code == 2 and "unrecognized arguments: oops" in capsys.readouterr().err


def test_evaluate_writes_consistent_metrics(seg_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", str(seg_run))
    assert code == 0 and "dice" in out and "empty masks" in out
    ev = seg_run / "eval" / "test"
    summary = json.loads((ev / "summary.json").read_text())
    rows = list(csv.DictReader((ev / "per_image.csv").open()))
    n_test = len(json.loads((seg_run / "splits.json").read_text())["test"])
    assert summary["n_images"] == len(rows) == n_test > 0
    dice = [float(r["dice"]) for r in rows]
    assert summary["segmentation"]["dice"]["mean"] == pytest.approx(np.nanmean(dice), abs=1e-5)
    for r in rows:  # per-image Dice agrees with the saved prediction and the true mask
        pred = (
            np.array(
                Image.open(ev / "predictions" / f"{r['class']}_{Path(r['image']).stem}_pred.png")
            )
            > 0
        )
        assert pred.sum() == int(r["pred_area"])
    for name in (
        "dice_histogram.png",
        "learning_curves.png",
        "overlays_grid.png",
        "predictions.gif",
    ):
        assert (ev / name).stat().st_size > 1000, name


def test_predict_maps_back_to_the_original_size(seg_run, tmp_path, capsys):
    img = tmp_path / "scan one.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70)) * 255).astype(np.uint8)).save(img)
    code, out, _ = run_cli(
        capsys, "predict", str(seg_run), str(img), "--out", str(tmp_path / "pred")
    )
    assert code == 0
    mask = Image.open(tmp_path / "pred" / "scan one_mask.png")
    assert mask.size == (70, 50)
    assert set(np.unique(np.array(mask))) <= {0, 255}
    rows = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert (
        rows[0]["image"] == str(img) and int(rows[0]["lesion_pixels"]) == (np.array(mask) > 0).sum()
    )


def test_multitask_evaluation_has_both_sets_of_metrics(mt_run):
    from medtl.evaluation.evaluate import evaluate

    summary = evaluate(mt_run, split="all")
    assert summary["n_images"] == 16
    cls = summary["classification"]
    assert np.array(cls["confusion_matrix"]).sum() == 16
    assert set(summary["segmentation_per_class"]) == {"benign", "malignant", "normal"}
    ev = Path(summary["out_dir"])
    for name in (
        "confusion_matrix.png",
        "roc.png",
        "classification_report.txt",
        "classification_report.csv",
    ):
        assert (ev / name).is_file(), name
    report = (ev / "classification_report.txt").read_text()
    assert "macro avg" in report and "benign" in report


def test_print_config_and_mistyped_key(capsys):
    code, out, _ = run_cli(capsys, "train", "--print-config", "train.epochs=3")
    assert code == 0 and yaml.safe_load(out)["train"]["epochs"] == 3
    code, _, err = run_cli(capsys, "train", "--print-config", "train.lrr=0.1")
    assert code == 2 and "train.lrr" in err and "train.lr" in err and "Traceback" not in err


def test_missing_logger_package_fails_before_writing(phantoms, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(
        capsys,
        "train",
        f"data.root={phantoms}",
        f"output.dir={out_dir}",
        "train.logger=tensorboard",
        *TINY,
    )
    assert code == 2 and "pip install tensorboard" in err and not out_dir.exists()


def _bad_input_cases(tmp_path: Path, phantoms: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "notes.txt").write_text("x")
    nomask = tmp_path / "nomask" / "benign"
    nomask.mkdir(parents=True)
    Image.new("L", (32, 32)).save(nomask / "a.png")
    Image.new("L", (32, 32)).save(nomask / "a_mask.png")
    Image.new("L", (32, 32)).save(nomask / "b.png")
    broken = tmp_path / "broken" / "benign"
    broken.mkdir(parents=True)
    for stem in ("a", "b", "c", "d"):
        Image.new("L", (32, 32), 90).save(broken / f"{stem}.png")
        Image.new("L", (32, 32)).save(broken / f"{stem}_mask.png")
    (broken / "c.png").write_bytes(b"")
    return {
        "missing": (tmp_path / "nope", "nope"),
        "empty": (empty, "empty"),
        "layout": (odd, "no known layout"),
        "nomask": (nomask.parent, "b.png"),
        "unreadable": (broken.parent, "c.png"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "layout", "nomask", "unreadable"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, phantoms, tmp_path, capsys):
    root, needle = _bad_input_cases(tmp_path, phantoms)[case]
    out_dir = tmp_path / "runs"
    code, out, err = run_cli(capsys, "train", f"data.root={root}", f"output.dir={out_dir}", *TINY)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("medtl: error")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize(
    "classes", ["benign,malignant", "[benign,malignant]", "[benign, 'malignant']"]
)
def test_data_classes_as_a_list_or_in_the_grid_s_bracketed_form(phantoms, classes):
    from medtl.configuration.loading import load_config
    from medtl.data.pipeline import load_samples

    cfg = load_config(overrides=[f"data.root={phantoms}", f"data.classes={classes}"])
    ds = load_samples(cfg)
    assert ds.classes == ["benign", "malignant"]
    assert {s.label for s in ds.samples} == {"benign", "malignant"}
