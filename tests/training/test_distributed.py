"""Two CPU processes (gloo DDP through Lightning): one run folder, exact synced metrics, resume.

One two-process training on label-map phantoms (module fixture) carries both tests: each
DDP launch starts two Python processes, each paying the imports of torch and Lightning.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.data.pipeline import make_loader, prepare
from medtl.data.splits import load_splits
from medtl.evaluation.evaluate import evaluate
from medtl.runs.folder import read_config

DDP = ["train.devices=2", "train.strategy=ddp", "train.accelerator=cpu", "train.threads=1"]
LABELS = ["lesion", "ring"]


def _medtl(verb: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medtl", verb, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _single_process_scores(run: Path) -> dict[str, float]:
    """Val Dice (mean and per label) of last.ckpt's weights, evaluated in this one process
    over the whole val split."""
    from medtl.models.build import build_model
    from medtl.training.metrics import LabelScores

    cfg = read_config(run)
    net, _ = build_model("segmentation", cfg.model.arch, cfg.model.encoder, "none", seg_classes=3)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    net.eval()
    data = prepare(cfg)
    val = load_splits(run / "splits.json", data.dataset.samples)["val"]
    scores = LabelScores(LABELS, cfg.train.empty_mask)
    with torch.inference_mode():
        for x, y, _, row in make_loader(data, val, cfg, train=False):
            assert (row >= 0).all()
            scores.update(net(x)["seg"], y)
    return {k: float(v) for k, v in scores.compute().items()}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A one-epoch two-process training of 13 label-map phantoms (odd val count: padding
    matters); what its first epoch left, read before any test resumes it."""
    from medtl.data.phantoms import make_label_phantoms

    base = tmp_path_factory.mktemp("ddp")
    data = make_label_phantoms(base / "ph2", n=13, size=32, seed=3, labels=2)
    out = base / "runs"
    common = [f"data.root={data}", f"output.dir={out}", "data.image_size=32"]
    common += ["model.weights=none", "model.encoder=resnet18", "train.batch_size=2"]
    common += ["train.epochs=1", "train.patience=0", "data.val_fraction=0.4"]
    common += ["data.test_fraction=0", *DDP]
    first = _medtl("train", "--no-progress", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = list(out.iterdir())
    run = runs[0]
    return {
        "data": data,
        "out": out,
        "runs": runs,
        "run": run,
        "stdout": first.stdout,
        "rows": list(csv.DictReader((run / "metrics.csv").open())),
        "one": _single_process_scores(run),
    }


@pytest.mark.slow
def test_two_process_per_label_val_dice_is_exact(ddp_run):
    """Label maps under DDP: each label's val Dice in metrics.csv (synced sums over the two
    ranks, odd val count) equals one process's over the whole val split."""
    run, one = ddp_run["run"], ddp_run["one"]
    val = load_splits(run / "splits.json", prepare(read_config(run)).dataset.samples)["val"]
    assert len(val) % 2 == 1
    row = ddp_run["rows"][0]
    for name in LABELS:
        assert float(row[f"val_dice_{name}"]) == pytest.approx(one[f"dice_{name}"], abs=1e-5)
    assert float(row["val_dice"]) == pytest.approx(one["dice"], abs=1e-5)


@pytest.mark.slow
def test_two_process_training_is_exact_and_resumable(ddp_run):
    data, out, run = ddp_run["data"], ddp_run["out"], ddp_run["run"]
    assert len(ddp_run["runs"]) == 1, ddp_run["runs"]  # exactly one run folder for both ranks
    assert ddp_run["stdout"].strip().splitlines()[-1] == str(run)
    n_val = len(
        load_splits(
            run / "splits.json",
            prepare(load_config(overrides=[f"data.root={data}"])).dataset.samples,
        )["val"]
    )
    assert n_val % 2 == 1
    rows = ddp_run["rows"]
    assert len(rows) == 1
    assert float(rows[0]["val_dice"]) == pytest.approx(ddp_run["one"]["dice"], abs=1e-5)
    assert "effective batch 4" in (run / "train.log").read_text()

    resumed = _medtl("train", "--no-progress", f"train.resume={run}", "train.epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["val_dice"]) == pytest.approx(
        _single_process_scores(run)["dice"], abs=1e-5
    )
    assert len(list(out.iterdir())) == 1

    # distributed evaluation: 2 processes write exactly what one process writes
    evaluated = _medtl("evaluate", str(run), "--split", "val", "--no-plots", *DDP)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    # only rank 0 prints: the mean Dice and one line per label
    assert evaluated.stdout.count("dice") == 1 + len(LABELS)
    out_dir = run / "eval" / "val"
    two = (
        (out_dir / "per_image.csv").read_text(),
        json.loads((out_dir / "summary.json").read_text()),
    )
    overlays = sorted(p.name for p in (out_dir / "overlays").iterdir())
    assert two[1]["processes"] == 2 and two[1]["n_images"] == n_val
    shutil.rmtree(out_dir)
    one = evaluate(run, split="val", plots=False)
    assert (out_dir / "per_image.csv").read_text() == two[0]
    assert {k: v for k, v in two[1].items() if k != "processes"} == json.loads(json.dumps(one))
    assert sorted(p.name for p in (out_dir / "overlays").iterdir()) == overlays
    # evaluate runs the inference copy (conv+BN folded) of model.pt (the best epoch),
    # training's validation the eager net, which round differently: equal to 1e-5 with this
    # CPU's AVX2 kernels, 0.0046 apart with SSE4.1's (ATEN_CPU_CAPABILITY=default
    # ONEDNN_MAX_CPU_ISA=SSE41). With label maps val_dice is the mean over labels of each
    # label's mean over images
    best = json.loads((run / "run.json").read_text())["best_epoch"]
    (best_row,) = [r for r in rows if int(r["epoch"]) == best]
    per_label = one["segmentation_per_label"]
    label_mean = sum(per_label[name]["dice"]["mean"] for name in LABELS) / len(LABELS)
    assert label_mean == pytest.approx(float(best_row["val_dice"]), abs=0.01)
