"""``train.logger``: the optional experiment trackers next to medtl's own metrics.csv."""

from __future__ import annotations

import os
from pathlib import Path

from medtl.config import Config
from medtl.errors import MedtlError

_LOGGER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}


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
            uri = f"file:{run / 'mlruns'}"
        logger = MLFlowLogger(experiment_name="medtl", run_name=run.name, tracking_uri=uri)
    logger.log_hyperparams(cfg.to_flat_dict())
    return logger
