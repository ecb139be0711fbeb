"""Faults: NaN guard; atomic files (kill -9 then resume: test_kill_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medtl.utils.errors import MedtlError
from tests.conftest import train_tiny


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    phantoms, tmp_path, monkeypatch
):
    import medtl.training.losses as losses

    calls = {"n": 0}
    real = losses.SEG_LOSSES["dice_bce"]

    def poisoned(logits, target):
        loss = real(logits, target)
        if not torch.is_grad_enabled():
            return loss  # validation
        calls["n"] += 1
        return loss * float("nan") if calls["n"] > 4 else loss  # 4 steps = epoch 0 (9 img / 2)

    monkeypatch.setitem(losses.SEG_LOSSES, "dice_bce", poisoned)
    with pytest.raises(MedtlError, match="loss became nan at epoch 1"):
        train_tiny(phantoms, tmp_path, "output.name=nan", "train.epochs=3", "train.batch_size=2")
    run = tmp_path / "nan"
    facts = json.loads((run / "run.json").read_text())
    assert facts["status"] == "failed" and "loss became nan at epoch 1" in facts["error"]
    assert [e["epoch"] for e in facts["epochs"]] == [0]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    from medtl.utils.files import atomic_write, atomic_write_json

    target = tmp_path / "summary.json"
    atomic_write_json(target, {"dice": 0.5, "hd95": float("nan")})
    before = target.read_text()
    assert '"hd95": null' in before  # strict JSON

    def crash(path: Path) -> None:
        path.write_text('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, crash)
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # readable by others (umask)
