"""Faults: SIGKILL mid-training then resume == uninterrupted run; NaN guard; atomic files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medtl.utils.errors import MedtlError
from tests.conftest import train_tiny

RESUME_ARGS = [
    "data.image_size=64",
    "train.batch_size=2",
    "model.weights=none",
    "model.encoder=resnet18",
    "train.epochs=3",
    "train.deterministic=true",
    "train.patience=0",
    "data.augment=light",
]


def _metrics(run: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    drop = ("epoch_time_s",)
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "medtl", "train", "--no-progress", *args]


@pytest.fixture(scope="module")
def phantoms64(tmp_path_factory) -> Path:
    from medtl.data.phantoms import make_phantoms

    return make_phantoms(tmp_path_factory.mktemp("d") / "ph", n=24, size=64, seed=1)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(phantoms64, tmp_path, monkeypatch):
    from medtl.cli.parser import main

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = [f"data.root={phantoms64}", f"output.dir={tmp_path}", *RESUME_ARGS]
    # the uninterrupted run in this process (the same command and thread count as the
    # children: one import fewer); train.deterministic sets process-wide torch flags
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""))
    try:
        assert main(["train", "--no-progress", *common, "output.name=ref"]) == 0
    finally:
        torch.use_deterministic_algorithms(False)

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*common, "output.name=killed"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.time() + 240
    while not (run / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside epoch 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(_metrics(run))
    assert done_before < 3, "the kill came too late to test anything"
    torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # never corrupt

    resumed = subprocess.run(
        _cli(f"train.resume={run}"), capture_output=True, text=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.strip().splitlines()[-1] == str(run)
    assert (run / "splits.json").read_text() == (tmp_path / "ref" / "splits.json").read_text()
    assert _metrics(run) == _metrics(tmp_path / "ref")
    facts = json.loads((run / "run.json").read_text())  # epochs kept across the resume
    assert facts["status"] == "finished" and [e["epoch"] for e in facts["epochs"]] == [0, 1, 2]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    phantoms64, tmp_path, monkeypatch
):
    import medtl.training.losses as losses

    calls = {"n": 0}
    real = losses.SEG_LOSSES["dice_bce"]

    def poisoned(logits, target):
        calls["n"] += 1
        loss = real(logits, target)
        return loss * float("nan") if calls["n"] > 12 else loss  # 12 steps = epoch 0 (24 img / 2)

    monkeypatch.setitem(losses.SEG_LOSSES, "dice_bce", poisoned)
    with pytest.raises(MedtlError, match="loss became nan at epoch 1"):
        train_tiny(
            phantoms64,
            tmp_path,
            "output.name=nan",
            "train.epochs=3",
            "train.batch_size=2",
            "data.image_size=64",
        )
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
