"""Training-side metrics per epoch, the loss of every step (RUN/steps.csv), the epoch log line."""

from __future__ import annotations

import csv


def test_train_scores_steps_file_and_epoch_line(mt_run_2epochs):
    run = mt_run_2epochs  # multitask, two epochs (tests/conftest.py)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for key in ("train_dice", "train_iou", "train_acc", "train_auroc", "train_loss", "val_dice"):
        assert all(r[key] != "" for r in rows), key
    assert 0.0 <= float(rows[-1]["train_dice"]) <= 1.0
    steps = list(csv.DictReader((run / "steps.csv").open()))
    per_epoch = len(steps) // 2
    assert per_epoch >= 1 and [int(s["epoch"]) for s in steps] == [0] * per_epoch + [1] * per_epoch
    assert [int(s["step"]) for s in steps] == list(range(1, len(steps) + 1))
    assert all(float(s["loss"]) > 0 for s in steps)
    line = next(x for x in (run / "train.log").read_text().splitlines() if "epoch 1:" in x)
    assert "train_loss=" in line and "val_dice=" in line and "lr_decoder+heads=" in line
