"""``train.ema_epochs``: validation, the best checkpoint and model.pt hold the averaged weights."""

from __future__ import annotations

import pytest
import torch

from medtl.configuration.loading import load_config
from medtl.training.averaging import ema_decay
from medtl.utils.errors import ConfigError
from tests.conftest import train_tiny


def test_the_decay_spans_the_asked_epochs():
    assert ema_decay(1.0, 100) == pytest.approx(0.99)
    assert ema_decay(2.0, 50) == pytest.approx(0.99)
    assert ema_decay(0.5, 1) == 0.0  # under one step: the average is the latest weights


def test_an_ema_run_keeps_and_validates_the_average(phantoms, tmp_path):
    run = train_tiny(phantoms, tmp_path, "train.epochs=2", "train.ema_epochs=1")
    log = (run / "train.log").read_text()
    assert "weights averaged (EMA) over ~1 epochs: decay" in log
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == current.keys()
    moved = [
        k for k, v in averaged.items() if v.is_floating_point() and not torch.equal(v, current[k])
    ]
    assert len(moved) > len(averaged) // 2  # the average is not the weights being trained
    bundle = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    weights = {k: v for k, v in bundle["state_dict"].items() if v.is_floating_point()}
    assert len(weights) > 50
    for k, v in weights.items():  # model.pt is the average, not the last step's weights
        assert torch.equal(v, averaged[f"net.{k}"]), k


def test_a_negative_ema_is_refused():
    with pytest.raises(ConfigError, match="train.ema_epochs"):
        load_config(overrides=["train.ema_epochs=-1"])


def test_ema_on_cached_encoder_features(phantoms, tmp_path):
    run = train_tiny(
        phantoms, tmp_path, "train.epochs=2", "train.ema_epochs=1", "model.strategy=frozen"
    )
    assert "feature cache: frozen encoder features" in (run / "train.log").read_text()
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    decoder = [k for k in averaged if "decoder" in k and averaged[k].is_floating_point()]
    encoder = [k for k in averaged if ".encoder." in k and averaged[k].is_floating_point()]
    assert decoder and encoder
    assert any(not torch.equal(averaged[k], current[k]) for k in decoder)  # trained: averaged
    assert all(torch.equal(averaged[k], current[k]) for k in encoder)  # frozen: unchanged
