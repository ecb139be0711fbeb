"""train.compile: torch.compile'd training gives the eager results and the same run files."""

from __future__ import annotations

import csv

import pytest
import torch

from tests.conftest import train_tiny


@pytest.mark.slow
def test_compiled_training_matches_eager(phantoms, tmp_path):
    # VGG11 + FCN-8s: a network of few layers, which torch.compile traces in a third of the
    # time the tiny runs' ResNet18 U-Net takes (train.compile=none is the default)
    net = ("model.encoder=vgg11", "model.arch=fcn8")
    eager = train_tiny(phantoms, tmp_path, *net, "output.name=e")
    compiled = train_tiny(phantoms, tmp_path, *net, "train.compile=aot_eager", "output.name=c")
    runs = {"none": eager, "aot_eager": compiled}
    log = (runs["aot_eager"] / "train.log").read_text()
    assert "torch.compile(backend='aot_eager')" in log
    assert "torch.compile" not in (runs["none"] / "train.log").read_text()
    rows = {k: list(csv.DictReader((run / "metrics.csv").open()))[-1] for k, run in runs.items()}
    for key in ("train_loss", "val_loss", "val_dice"):
        assert float(rows["aot_eager"][key]) == pytest.approx(float(rows["none"][key]), abs=1e-4)
    # parameter names are those of the eager network: bundles and checkpoints interchange
    bundles = {
        k: torch.load(run / "model.pt", map_location="cpu", weights_only=True)
        for k, run in runs.items()
    }
    sd = {k: b["state_dict"] for k, b in bundles.items()}
    assert sd["aot_eager"].keys() == sd["none"].keys()
    assert not any("_orig_mod" in k for k in sd["aot_eager"])


def test_compile_is_skipped_on_cached_features(phantoms, tmp_path):
    run = train_tiny(
        phantoms, tmp_path, "model.strategy=frozen", "train.compile=aot_eager", "output.name=cf"
    )
    assert (
        "train.compile: not applied (frozen encoder features are cached)"
        in (run / "train.log").read_text()
    )
