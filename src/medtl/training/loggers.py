"""``train.logger``: the optional experiment trackers next to medtl's own metrics.csv.

With ``train.logger=mlflow`` the MLflow run is named after the run folder and tagged
``run_folder=<its name>`` (find it with ``search_runs(..., "tags.run_folder = 'NAME'")``);
training writes ``RUN/mlflow.json`` (tracking URI, experiment and run id) so that the
later steps add their files to the same MLflow run: training logs ``model.pt`` and
``model_summary.txt``, ``medtl evaluate`` the files of ``eval/<split>/`` (summary.json,
per_image.csv, the plots; not the per-image mask folders) under ``eval/<split>``, and
``medtl export`` ``model.onnx`` (and ``export.json``, ``model.int8.onnx``) under ``export``.
A resumed training starts a new MLflow run (same name and tag); mlflow.json then names it.
mlflow.json never holds a password: a ``user:password@`` in the URI is left out (MLflow's
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` are the way to give them).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from medtl.configuration.loading import Config
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write_json

log = logging.getLogger("medtl")
_LOGGER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}
MLFLOW_JSON = "mlflow.json"
RUN_TAG = "run_folder"


def check_logger(cfg: Config) -> None:
    """Fail before anything is written when ``train.logger`` needs a package that is missing."""
    name = cfg.train.logger
    if name == "csv":
        return
    try:
        __import__(name)  # the logger's package imports under the logger's name
    except ImportError:
        raise MedtlError(
            f"train.logger={name} needs the '{name}' package; run 'pip install "
            f"{_LOGGER_PACKAGES[name]}' (or medtl[tracking]) or use train.logger=csv"
        ) from None


def make_logger(cfg: Config, run: Path):
    """``train.logger``: csv (medtl's own metrics.csv only), tensorboard (RUN/tensorboard) or
    mlflow, as a Lightning logger next to metrics.csv; the resolved config is logged as
    flat hyper-parameters (``model.encoder`` ...).

    MLflow logs to ``$MLFLOW_TRACKING_URI`` when set (a server or ``sqlite:///...``),
    otherwise to a local file store ``RUN/mlruns`` (MLflow's file store is in maintenance
    mode; medtl opts in with ``MLFLOW_ALLOW_FILE_STORE=true`` for that local store only).
    """
    if cfg.train.logger == "csv":
        return False
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

    if cfg.train.logger == "tensorboard":
        logger = TensorBoardLogger(
            save_dir=str(run), name="tensorboard", version="", default_hp_metric=False
        )
    else:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = f"file:{Path(run).resolve() / 'mlruns'}"
        logger = MLFlowLogger(
            experiment_name="medtl", run_name=run.name, tracking_uri=uri, tags={RUN_TAG: run.name}
        )
    logger.log_hyperparams(cfg.to_flat_dict())
    if cfg.train.logger == "mlflow" and logger.run_id is not None:  # None on ranks > 0
        atomic_write_json(
            run / MLFLOW_JSON,
            {
                "tracking_uri": _without_credentials(uri),
                "experiment_id": logger.experiment_id,
                "run_id": logger.run_id,
            },
        )
    return logger


def _without_credentials(uri: str) -> str:
    """``uri`` without a ``user:password@`` part (the run folder is no place for secrets)."""
    parts = urlsplit(uri)
    if parts.netloc and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return uri


@contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow refuses its (maintenance-mode) file store unless opted in: opt in for a
    ``file:`` URI, for the block only."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if uri.startswith("file:"):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def log_run_artifacts(
    run: Path, paths: Sequence[str | Path], artifact_path: str | None = None
) -> list[str]:
    """Log ``paths`` (relative to ``run`` or absolute; a folder gives its files, not its
    subfolders) as artifacts of the run's MLflow run under ``artifact_path``; returns the
    logged file names. Nothing happens without ``RUN/mlflow.json`` (other loggers). A
    tracker that cannot be reached is a warning: the files are in the run folder anyway."""
    info_path = Path(run) / MLFLOW_JSON
    if not info_path.is_file():
        return []
    files: list[Path] = []
    for p in map(Path, paths):
        p = p if p.is_absolute() else Path(run) / p
        files += sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    files = [f for f in files if f.is_file()]
    try:
        from mlflow.tracking import MlflowClient

        info = json.loads(info_path.read_text(encoding="utf-8"))
        with _file_store_allowed(info["tracking_uri"]):
            client = MlflowClient(tracking_uri=info["tracking_uri"])
            for f in files:
                client.log_artifact(info["run_id"], str(f), artifact_path)
    except Exception as exc:  # noqa: BLE001 - any tracker failure; the results are on disk
        log.warning(f"MLflow: could not log {len(files)} artifacts of {run} ({exc})")
        return []
    return [f.name for f in files]
