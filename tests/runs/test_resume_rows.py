"""Resuming keeps every row already recorded: steps.csv, metrics.csv and run.json (a real kill
-9 at the epoch's end: tests/training/test_kill_resume.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medtl.utils.errors import MedtlError
from medtl.utils.files import read_csv
from tests.conftest import train_tiny


def _resume(run: Path, *overrides: str) -> Path:
    from medtl.training.fit import train
    from medtl.training.resume import resume_config

    return train(resume_config(run, list(overrides)), progress=False)


def test_resume_keeps_the_steps_of_earlier_epochs(phantoms, tmp_path):
    run = train_tiny(phantoms, tmp_path, "train.epochs=2", "output.name=r")
    before = read_csv(run / "steps.csv")
    assert {r["epoch"] for r in before} == {"0", "1"}
    _resume(run, "train.epochs=3")
    after = read_csv(run / "steps.csv")
    assert after[: len(before)] == before  # the first two epochs, unchanged
    assert {r["epoch"] for r in after} == {"0", "1", "2"}
    steps = [int(r["step"]) for r in after]
    assert steps == sorted(set(steps)) == list(range(1, len(after) + 1))
    metrics = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in metrics] == ["0", "1", "2"]


def test_refused_resume_keeps_a_finished_run_finished(seg_run, tmp_path):
    run = Path(shutil.copytree(seg_run, tmp_path / "run"))
    before = json.loads((run / "run.json").read_text())
    assert before["status"] == "finished"
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(MedtlError, match="no intact checkpoint"):
        _resume(run, "train.epochs=2")
    after = json.loads((run / "run.json").read_text())
    assert after == before
