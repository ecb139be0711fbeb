"""Two CPU processes (gloo DDP through Lightning): one run folder, exact synced metrics, resume."""

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
from medtl.training.metrics import dice_per_image_torch

DDP = ["train.devices=2", "train.strategy=ddp", "train.accelerator=cpu", "train.threads=1"]


def _medtl(verb: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medtl", verb, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _single_process_val_dice(run: Path) -> float:
    """Val Dice of last.ckpt's weights, evaluated in this one process over the whole val split."""
    from medtl.models.build import build_model

    cfg = read_config(run)
    net, _ = build_model("segmentation", cfg.model.arch, cfg.model.encoder, "none")
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    net.eval()
    data = prepare(cfg)
    val = load_splits(run / "splits.json", data.dataset.samples)["val"]
    scores = []
    with torch.inference_mode():
        for x, y, _, row in make_loader(data, val, cfg, train=False):
            assert (row >= 0).all()
            scores.append(dice_per_image_torch(net(x)["seg"], y))
    return float(torch.cat(scores).mean())


@pytest.mark.slow
def test_two_process_training_is_exact_and_resumable(tmp_path):
    from medtl.data.phantoms import make_phantoms

    data = make_phantoms(tmp_path / "ph", n=21, size=32, seed=3)  # odd val count: padding matters
    out = tmp_path / "runs"
    common = [
        f"data.root={data}",
        f"output.dir={out}",
        "data.image_size=32",
        "model.weights=none",
        "model.encoder=resnet18",
        "train.batch_size=2",
        "train.epochs=1",
        "train.patience=0",
        "data.val_fraction=0.35",
        "data.test_fraction=0",
        *DDP,
    ]
    first = _medtl("train", "--no-progress", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = list(out.iterdir())
    assert len(runs) == 1, runs  # exactly one run folder for both ranks
    run = runs[0]
    assert first.stdout.strip().splitlines()[-1] == str(run)
    n_val = len(
        load_splits(
            run / "splits.json",
            prepare(load_config(overrides=[f"data.root={data}"])).dataset.samples,
        )["val"]
    )
    assert n_val % 2 == 1
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 1
    assert float(rows[0]["val_dice"]) == pytest.approx(_single_process_val_dice(run), abs=1e-5)
    assert "effective batch 4" in (run / "train.log").read_text()

    resumed = _medtl("train", "--no-progress", f"train.resume={run}", "train.epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["val_dice"]) == pytest.approx(_single_process_val_dice(run), abs=1e-5)
    assert len(list(out.iterdir())) == 1

    # distributed evaluation: 2 processes write exactly what one process writes
    evaluated = _medtl("evaluate", str(run), "--split", "val", "--no-plots", *DDP)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert evaluated.stdout.count("dice") == 1  # only rank 0 prints
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
    # evaluate runs the inference copy (conv+BN folded), training's validation the eager
    # net, which round differently: equal to 1e-5 with this CPU's AVX2 kernels, 0.0046
    # apart with SSE4.1's (ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41)
    assert one["segmentation"]["dice"]["mean"] == pytest.approx(
        float(rows[1]["val_dice"]), abs=0.01
    )


@pytest.mark.slow
def test_two_process_per_label_val_dice_is_exact(tmp_path):
    """Label maps under DDP: each label's val Dice in metrics.csv (synced sums over the two
    ranks, odd val count) equals one process's over the whole val split."""
    from medtl.data.phantoms import make_label_phantoms
    from medtl.models.build import build_model
    from medtl.training.metrics import LabelScores

    data = make_label_phantoms(tmp_path / "ph2", n=13, size=32, seed=3, labels=2)
    out = tmp_path / "runs"
    common = [f"data.root={data}", f"output.dir={out}", "data.image_size=32"]
    common += ["model.weights=none", "model.encoder=resnet18", "train.batch_size=2"]
    common += ["train.epochs=1", "data.val_fraction=0.4", "data.test_fraction=0", *DDP]
    got = _medtl("train", "--no-progress", *common)
    assert got.returncode == 0, got.stderr[-3000:]
    run = next(out.iterdir())
    cfg = read_config(run)
    net, _ = build_model("segmentation", cfg.model.arch, cfg.model.encoder, "none", seg_classes=3)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    net.eval()
    prepared = prepare(cfg)
    val = load_splits(run / "splits.json", prepared.dataset.samples)["val"]
    assert len(val) % 2 == 1
    scores = LabelScores(["lesion", "ring"], cfg.train.empty_mask)
    with torch.inference_mode():
        for x, y, _, _row in make_loader(prepared, val, cfg, train=False):
            scores.update(net(x)["seg"], y)
    one = {k: float(v) for k, v in scores.compute().items()}
    row = next(csv.DictReader((run / "metrics.csv").open()))
    for name in ("lesion", "ring"):
        assert float(row[f"val_dice_{name}"]) == pytest.approx(one[f"dice_{name}"], abs=1e-5)
    assert float(row["val_dice"]) == pytest.approx(one["dice"], abs=1e-5)
