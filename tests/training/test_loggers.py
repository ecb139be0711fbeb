"""Optional experiment trackers: each writes something its own tool's reader can read."""

from __future__ import annotations

import csv

import pytest

from tests.conftest import train_tiny


def _csv_metric(run, name: str) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(r[name]) for r in csv.DictReader(f) if r.get(name)]


def _step_losses(run) -> list[tuple[int, float]]:
    with open(run / "steps.csv", newline="") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def test_tensorboard_logger_is_readable_by_tensorboard(phantoms, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_tiny(phantoms, tmp_path, "train.logger=tensorboard", "train.epochs=2")
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"val_dice", "val_loss", "train_loss", "train_step_loss"} <= set(tags)
    dice = [e.value for e in acc.Scalars("val_dice")]
    assert dice == pytest.approx(_csv_metric(run, "val_dice"), abs=1e-6)
    assert len(dice) == 2
    # the loss of every optimisation step, as steps.csv has it
    steps = [(e.step, e.value) for e in acc.Scalars("train_step_loss")]
    expected = _step_losses(run)
    assert len(steps) == len(expected) >= 4  # 2 epochs x >= 2 batches
    assert [s for s, _ in steps] == [s for s, _ in expected]
    assert [v for _, v in steps] == pytest.approx([v for _, v in expected], abs=1e-5)


@pytest.fixture(scope="module")
def mlflow_run(phantoms, tmp_path_factory):
    pytest.importorskip("mlflow")
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # the run's own file store
    try:
        yield train_tiny(
            phantoms, tmp_path_factory.mktemp("mlflow"), "train.logger=mlflow", "train.epochs=2"
        )
    finally:
        mp.undo()


def _client(run):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"file:{run / 'mlruns'}")


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_mlflow_logger_is_readable_by_mlflow(mlflow_run):
    run = mlflow_run
    client = _client(run)
    exp = client.get_experiment_by_name("medtl")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == run.name
    history = client.get_metric_history(runs[0].info.run_id, "val_dice")
    dice = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert dice == pytest.approx(_csv_metric(run, "val_dice"), abs=1e-6)
    params = runs[0].data.params
    assert params.get("model.encoder") == "resnet18" and params.get("train.epochs") == "2"
    steps = sorted(
        (m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, "train_step_loss")
    )
    expected = _step_losses(run)
    assert [s for s, _ in steps] == [s for s, _ in expected] and len(steps) >= 4
    assert [v for _, v in steps] == pytest.approx([v for _, v in expected], abs=1e-6)


def test_mlflow_run_is_found_by_its_folder_name_and_holds_the_model(mlflow_run):
    run = mlflow_run
    client = _client(run)
    exp = client.get_experiment_by_name("medtl")
    found = client.search_runs([exp.experiment_id], f"tags.run_folder = '{run.name}'")
    assert len(found) == 1
    by_name = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run.name}'")
    assert [r.info.run_id for r in by_name] == [found[0].info.run_id]
    run_id = found[0].info.run_id
    assert {"model.pt", "model_summary.txt"} <= _artifacts(client, run_id)
    local = client.download_artifacts(run_id, "model.pt", str(run.parent / "dl"))
    assert open(local, "rb").read() == (run / "model.pt").read_bytes()


def test_mlflow_gets_the_evaluation_and_the_onnx_file(mlflow_run):
    pytest.importorskip("onnxruntime")
    from medtl.evaluation.evaluate import evaluate
    from medtl.exporting import export_onnx

    run = mlflow_run
    summary = evaluate(run, save_images=2)
    export_onnx(run)
    client = _client(run)
    run_id = client.search_runs(
        [client.get_experiment_by_name("medtl").experiment_id], f"tags.run_folder = '{run.name}'"
    )[0].info.run_id
    split = summary["split"]
    logged = _artifacts(client, run_id, f"eval/{split}")
    on_disk = {f"eval/{split}/{p.name}" for p in (run / "eval" / split).iterdir() if p.is_file()}
    assert {f"eval/{split}/summary.json", f"eval/{split}/per_image.csv"} <= logged
    assert any(p.endswith(".png") for p in logged)
    assert logged == on_disk  # the folder's files, not its per-image subfolders
    assert {"export/model.onnx", "export/export.json"} <= _artifacts(client, run_id, "export")


def test_mlflow_json_keeps_no_password_and_other_loggers_log_nothing(tmp_path):
    from medtl.training.loggers import _without_credentials, log_run_artifacts

    assert _without_credentials("https://bob:pw@mlflow.example.org:5000") == (
        "https://mlflow.example.org:5000"
    )
    assert _without_credentials("file:/runs/a/mlruns") == "file:/runs/a/mlruns"
    (tmp_path / "model.pt").write_bytes(b"x")
    assert log_run_artifacts(tmp_path, ["model.pt"]) == []  # no RUN/mlflow.json: not mlflow
