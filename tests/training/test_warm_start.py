"""``model.init=RUN`` warm-starts the whole network of an earlier run."""

from __future__ import annotations

import logging

import pytest
import torch

from medtl.models.build import build_model
from medtl.runs.folder import load_bundle
from medtl.training.warm_start import warm_start
from medtl.utils.errors import MedtlError
from tests.conftest import run_cli, train_tiny


def _net(task: str = "segmentation", encoder: str = "resnet18", n_classes: int = 0):
    return build_model(task, "unet", encoder, "none", n_classes=n_classes)[0]


def test_whole_network_is_copied(seg_run):
    earlier, _, _ = load_bundle(seg_run)
    net = _net()
    text = warm_start(net, str(seg_run / "model.pt"))  # the model.pt works like the folder
    assert text.startswith(f"warm start from {seg_run}")
    for key, value in earlier.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


def test_other_head_is_reinitialised_with_a_log_line(seg_run, caplog):
    earlier = load_bundle(seg_run)[0].state_dict()
    net = _net("multitask", n_classes=3)  # a classification head the earlier run lacks
    fresh = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("cls_head")}
    with caplog.at_level(logging.INFO, logger="medtl"):
        text = warm_start(net, str(seg_run))
    assert "cls_head re-initialised" in text and "cls_head has another number" in caplog.text
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in fresh.items())
    for key, value in earlier.items():  # encoder, decoder and seg head: the earlier run's
        assert torch.equal(state[key], value), key


def test_bad_inits_are_one_line_errors(seg_run, tmp_path):
    with pytest.raises(MedtlError, match="another architecture.*first mismatched layer 'encoder"):
        warm_start(_net(encoder="resnet34"), str(seg_run))
    with pytest.raises(MedtlError, match="not found"):
        warm_start(_net(), str(tmp_path / "nothing"))
    (tmp_path / "model.pt").write_bytes(b"not a bundle")
    with pytest.raises(MedtlError, match="model.init=.*not a readable medtl bundle"):
        warm_start(_net(), str(tmp_path / "model.pt"))


def test_train_with_init_logs_it_and_bad_init_exits_2(seg_run, phantoms, tmp_path, capsys):
    run = train_tiny(phantoms, tmp_path, "output.name=warm", f"model.init={seg_run}")
    assert f"warm start from {seg_run}" in (run / "train.log").read_text()
    code, _, err = run_cli(
        capsys, "train", f"data.root={phantoms}", f"output.dir={tmp_path}", "model.init=/no/run"
    )
    assert code == 2 and err.strip().splitlines()[-1].startswith("medtl: error: model.init=/no/run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warm"]  # nothing left behind
