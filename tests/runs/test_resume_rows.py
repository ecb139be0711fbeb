"""Resuming keeps every row already recorded: steps.csv, metrics.csv and run.json."""

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


def test_kill_between_checkpoint_and_metrics_row_leaves_no_blank_row(
    phantoms, tmp_path, monkeypatch
):
    """The process dies at epoch 1's end, after its checkpoints were saved (validation end)
    and before the epoch-end row: the resumed run keeps the row written before the
    checkpoint (validation metrics, mean step loss, learning rates)."""
    from medtl.training import callbacks

    real = callbacks.EpochMetricsCSV.on_train_epoch_end

    def die_at_epoch_1(self, trainer, module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed")  # as a kill: nothing of the epoch's end runs
        return real(self, trainer, module)

    monkeypatch.setattr(callbacks.EpochMetricsCSV, "on_train_epoch_end", die_at_epoch_1)
    with pytest.raises(RuntimeError, match="killed"):
        train_tiny(phantoms, tmp_path, "train.epochs=2", "output.name=k")
    monkeypatch.setattr(callbacks.EpochMetricsCSV, "on_train_epoch_end", real)
    run = tmp_path / "k"
    _resume(run, "train.epochs=3")
    rows = {r["epoch"]: r for r in read_csv(run / "metrics.csv")}
    assert list(rows) == ["0", "1", "2"]
    for epoch in ("1", "2"):
        row = rows[epoch]
        assert row["val_loss"] not in ("", None) and float(row["train_loss"]) > 0, row
        assert float(row["val_dice"]) >= 0
    steps = read_csv(run / "steps.csv")
    one = [float(r["loss"]) for r in steps if r["epoch"] == "1"]
    assert float(rows["1"]["train_loss"]) == pytest.approx(sum(one) / len(one), abs=1e-5)


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
