"""Transfer strategies: exactly the right encoder parameters (and BN statistics) change."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from medtl.models.encoders import create_encoder
from medtl.models.stages import encoder_stages
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A resnet18 encoder state_dict saved as a user weights file (the 'pretrained' start)."""
    torch.manual_seed(1)
    enc, _ = create_encoder("resnet18", "none")
    sd = {k: v.clone() for k, v in enc.state_dict().items()}
    path = tmp_path_factory.mktemp("w") / "start.pth"
    torch.save(sd, path)
    return path, sd


def _trained_encoder(run: Path) -> dict[str, torch.Tensor]:
    """Encoder state at the end of training (last.ckpt; model.pt holds the best epoch)."""
    sd = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k[len("net.encoder.") :]: v for k, v in sd.items() if k.startswith("net.encoder.")}


def _in_last_stage(name: str) -> bool:
    enc, _ = create_encoder("resnet18", "none")
    last = {id(p) for module in encoder_stages(enc)[-1] for p in module.parameters()}
    return id(dict(enc.named_parameters())[name]) in last


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_frozen_encoder_is_bit_identical_including_batchnorm(phantoms, tmp_path, start_weights):
    path, before = start_weights
    run = train_tiny(
        phantoms, tmp_path, f"model.weights={path}", "model.strategy=frozen", "train.epochs=2"
    )
    after = _trained_encoder(run)
    assert _changed(before, after) == set()  # weights, running_mean/var, num_batches_tracked
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {float(r["encoder_trainable_stages"]) for r in rows} == {0.0}


def test_finetune_changes_the_encoder_with_a_smaller_lr(phantoms, tmp_path, start_weights):
    path, before = start_weights
    run = train_tiny(
        phantoms,
        tmp_path,
        f"model.weights={path}",
        "model.strategy=finetune",
        "model.encoder_lr_mult=0.1",
        "train.lr=0.002",
        "train.scheduler=none",
    )
    after = _trained_encoder(run)
    assert "conv1.weight" in _changed(before, after)
    row = next(csv.DictReader((run / "metrics.csv").open()))
    assert float(row["lr_encoder"]) == pytest.approx(0.0002)
    assert float(row["lr_decoder+heads"]) == pytest.approx(0.002)


def test_partial_trains_only_the_last_stages(phantoms, tmp_path, start_weights):
    path, before = start_weights
    run = train_tiny(
        phantoms,
        tmp_path,
        f"model.weights={path}",
        "model.strategy=partial",
        "model.unfreeze_stages=1",
    )
    changed = _changed(before, _trained_encoder(run))
    assert changed and all(k.startswith("layer4.") for k in changed)
    assert _in_last_stage("layer4.0.conv1.weight")


def test_two_stage_unfreezes_at_the_warmup_epoch(phantoms, tmp_path, start_weights):
    path, before = start_weights
    run = train_tiny(
        phantoms,
        tmp_path,
        f"model.weights={path}",
        "model.strategy=two_stage",
        "model.unfreeze_stages=2",
        "model.warmup_epochs=1",
        "train.epochs=2",
    )
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [float(r["encoder_trainable_stages"]) for r in rows] == [0.0, 2.0]
    changed = _changed(before, _trained_encoder(run))
    assert changed and all(k.startswith(("layer3.", "layer4.")) for k in changed)
    assert any(k.startswith("layer3.") for k in changed)
    assert "unfreezes the last 2 encoder stages" in (run / "train.log").read_text()
