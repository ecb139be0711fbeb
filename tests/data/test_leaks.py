"""A pre-made split that leaks (duplicates across train/ and test/): found and reported."""

from __future__ import annotations

import json
import shutil

import pytest

from medtl.api import format_summary
from medtl.evaluation.evaluate import evaluate
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """Pre-made train/, val/ and test/ folders; 2 train images (with masks) copied into test/."""
    from medtl.data.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("leaky") / "d"
    make_phantoms(root / "train", n=12, size=32, seed=0)
    make_phantoms(root / "test", n=4, size=32, seed=1)
    make_phantoms(root / "val", n=4, size=32, seed=2)  # a pre-made val: train/ is all train
    for name in ("benign_0001", "malignant_0001"):
        cls = name.split("_")[0]
        for suffix in ("", "_mask"):
            src = root / "train" / cls / f"{name}{suffix}.png"
            shutil.copy(src, root / "test" / cls / f"copy_{name}{suffix}.png")
    return root


def test_leaks_logged_and_the_leak_free_subset_reported(leaky, tmp_path):
    run = train_tiny(leaky, tmp_path, "output.name=keep")
    log = (run / "train.log").read_text()
    assert "leak check: 2 of 6 test images" in log and "duplicate in train" in log
    leaks = json.loads((run / "leaks.json").read_text())
    assert sorted(p.rsplit("/", 1)[-1] for p in leaks["test"]) == [
        "copy_benign_0001.png",
        "copy_malignant_0001.png",
    ]
    summary = evaluate(run, split="test", plots=False)
    lf = summary["leak_free"]
    assert summary["n_images"] == 6 and lf["n_images"] == 4 and lf["n_leaked"] == 2
    assert lf["dice"]["n"] == 4
    assert json.loads((run / "eval" / "test" / "summary.json").read_text())["leak_free"] == lf
    assert "leak-free subset: 4 images (2 with a duplicate in train left out)" in format_summary(
        summary
    )


def test_drop_leaked_and_regroup(leaky, tmp_path):
    def test_images(run):
        doc = json.loads((run / "splits.json").read_text())
        return {e["image"].rsplit("/", 1)[-1] for e in doc["test"]}, doc

    dropped, _ = test_images(
        train_tiny(leaky, tmp_path, "output.name=drop", "data.premade_split=drop_leaked")
    )
    assert len(dropped) == 4 and not any(n.startswith("copy_") for n in dropped)
    moved, doc = test_images(
        train_tiny(leaky, tmp_path, "output.name=regroup", "data.premade_split=regroup")
    )
    assert moved == dropped
    assert sum(e["image"].rsplit("/", 1)[-1].startswith("copy_") for e in doc["train"]) == 2
