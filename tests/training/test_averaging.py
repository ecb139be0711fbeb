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


def test_resuming_an_ema_run_continues_both_the_weights_and_their_average(phantoms, tmp_path):
    from medtl.cli.parser import main
    from medtl.utils.files import read_csv

    same = ("train.ema_epochs=1", "train.scheduler=none", "train.deterministic=true")
    try:
        whole = train_tiny(phantoms, tmp_path, "train.epochs=2", *same, "output.name=w")
        part = train_tiny(phantoms, tmp_path, "train.epochs=1", *same, "output.name=p")
    finally:
        torch.use_deterministic_algorithms(False)
    try:
        assert main(["train", "--no-progress", f"train.resume={part}", "train.epochs=2"]) == 0
    finally:
        torch.use_deterministic_algorithms(False)  # process-wide: not left to later tests
    timing = ("epoch_time_s",)
    rows = [
        [{k: v for k, v in r.items() if k not in timing} for r in read_csv(run / "metrics.csv")]
        for run in (whole, part)
    ]
    assert len(rows[1]) == 2 and rows[0] == rows[1]  # epoch 1 validated the same average
    a, b = (
        torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        for run in (whole, part)
    )
    for key in ("state_dict", "current_model_state"):
        for name, value in a[key].items():
            assert torch.allclose(value.float(), b[key][name].float(), atol=1e-6), (key, name)
