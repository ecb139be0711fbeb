"""Optional experiment trackers: each writes something its own tool's reader can read."""

from __future__ import annotations

import csv

import pytest

from tests.conftest import train_tiny


def _csv_metric(run, name: str) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(r[name]) for r in csv.DictReader(f) if r.get(name)]


def test_tensorboard_logger_is_readable_by_tensorboard(phantoms, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_tiny(phantoms, tmp_path, "train.logger=tensorboard", "train.epochs=2")
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"val_dice", "val_loss", "train_loss"} <= set(tags)
    dice = [e.value for e in acc.Scalars("val_dice")]
    assert dice == pytest.approx(_csv_metric(run, "val_dice"), abs=1e-6)
    assert len(dice) == 2


def test_mlflow_logger_is_readable_by_mlflow(phantoms, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = train_tiny(phantoms, tmp_path, "train.logger=mlflow", "train.epochs=2")
    client = MlflowClient(tracking_uri=f"file:{run / 'mlruns'}")
    exp = client.get_experiment_by_name("medtl")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == run.name
    history = client.get_metric_history(runs[0].info.run_id, "val_dice")
    dice = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert dice == pytest.approx(_csv_metric(run, "val_dice"), abs=1e-6)
    params = runs[0].data.params
    assert params.get("model.encoder") == "resnet18" and params.get("train.epochs") == "2"
