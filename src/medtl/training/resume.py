"""Resuming a run: its saved config with ``train.resume`` set, and the check of the folder
``train.resume`` names before training touches it."""

from __future__ import annotations

from pathlib import Path

from medtl.configuration.loading import Config
from medtl.runs.folder import read_config
from medtl.runs.records import RunRecord
from medtl.utils.errors import MedtlError


def resume_config(run: str | Path, overrides: list[str] | None = None) -> Config:
    """The saved config of ``run`` with ``train.resume`` set, plus ``overrides`` (e.g. more
    epochs). ``medtl train train.resume=RUN [key=value ...]`` uses this."""
    from medtl.configuration.loading import load_config

    saved = read_config(Path(run)).to_dict()
    rest = [o for o in overrides or [] if not o.lstrip("+").startswith("train.resume=")]
    return load_config(base=saved, overrides=[f"train.resume={run}", *rest])


def resume_target(cfg: Config) -> Path | None:
    """The run folder ``train.resume`` names (None without one), checked before anything is
    written: a folder without config.yaml or with a damaged run.json is one line."""
    if not cfg.train.resume:
        return None
    run = Path(cfg.train.resume)
    if not (run / "config.yaml").is_file():
        raise MedtlError(
            f"train.resume={run}: not a run folder (no config.yaml); give the folder 'medtl train' printed"
        )
    RunRecord.read(run)  # a damaged run.json is refused before the folder is touched
    return run
