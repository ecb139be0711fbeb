"""Which calibration an exported graph baked in, and whether the run's has changed since.

``medtl export`` divides the ``cls`` logits by the temperature stored in
``RUN/calibration.json`` (:func:`medtl.inference.decisions.calibrated`), so a graph exported before
``medtl evaluate RUN --calibrate`` keeps the old (or no) temperature. Each export records
:func:`calibration_record` in ``export.json`` (``calibration``) and the temperature in the
graph's metadata (``medtl.temperature``). A graph is *stale* when the temperature it baked
in differs from the run's current one (no temperature = 1); the other entries of
calibration.json (operating points, the mask threshold) are applied by ``medtl predict``
from the run at prediction time, so changing them does not stale a graph.

- :func:`warn_stale_exports` after ``medtl evaluate RUN --calibrate``: one warning line per
  stale ``RUN/export/model*.onnx``;
- :func:`graph_temperature_warning` in ``medtl predict RUN --onnx``: the same check on the
  model being run.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from medtl.exporting.records import ExportRecord, GraphMeta
from medtl.inference.decisions import CALIBRATION_FILE, seg_threshold_of, temperature_of

log = logging.getLogger("medtl")
__all__ = ["calibration_record", "graph_temperature_warning", "stale_exports", "warn_stale_exports"]
_MODELS = ("model.onnx", "model.int8.onnx")


def calibration_record(run: str | Path) -> dict[str, Any]:
    """What an export bakes in from ``RUN/calibration.json``: ``temperature`` (None: none),
    ``seg_threshold`` (applied outside the graph), the file's path, ``sha256`` and ``mtime``
    (None when the run has no calibration file)."""
    path = Path(run) / CALIBRATION_FILE
    record: dict[str, Any] = {
        "temperature": temperature_of(run),
        "seg_threshold": seg_threshold_of(run),
        "file": None,
        "sha256": None,
        "mtime": None,
    }
    if path.is_file():
        data = path.read_bytes()
        record.update(
            file=str(path), sha256=hashlib.sha256(data).hexdigest(), mtime=path.stat().st_mtime
        )
    return record


def _effective(t: float | None) -> float:
    return 1.0 if t is None else float(t)


def _baked(model: Path, meta: dict[str, str] | None) -> tuple[bool, float | None]:
    """(known, temperature) of ``model``: from its metadata, else the ``export.json`` beside
    it (exports before the metadata key recorded ``temperature`` there)."""
    graph = GraphMeta.of(dict(meta or {}), model, None)
    if graph.has_temperature:
        return True, graph.temperature
    info = ExportRecord.read(model.parent)  # written beside the models it describes
    if info is not None and info.has_temperature:
        return True, info.temperature
    return False, None


def _describe(t: float | None) -> str:
    return "none" if t is None else f"{t:.4g}"


def _stale(run: Path, model: Path, meta: dict[str, str] | None) -> str | None:
    """Why ``model`` does not hold ``run``'s current temperature, or None when it does."""
    now = temperature_of(run)
    known, baked = _baked(model, meta)
    calib = run / CALIBRATION_FILE
    if known:
        if _effective(baked) == _effective(now):
            return None
        return f"graph temperature {_describe(baked)}, {calib} now {_describe(now)}"
    if calib.is_file() and calib.stat().st_mtime > model.stat().st_mtime:
        return f"the graph records no temperature and {calib} is newer"
    return None


def stale_exports(run: str | Path) -> list[str]:
    """One line per ``RUN/export/model*.onnx`` whose baked temperature is not the run's."""
    run = Path(run)
    lines = []
    for name in _MODELS:
        model = run / "export" / name
        why = _stale(run, model, None) if model.is_file() else None
        if why:
            lines.append(f"{model} predates this calibration ({why}); re-run medtl export {run}")
    return lines


def warn_stale_exports(run: str | Path) -> list[str]:
    """:func:`stale_exports`, each logged as a warning (after ``evaluate --calibrate``)."""
    lines = stale_exports(run)
    for line in lines:
        log.warning(line)
    return lines


def graph_temperature_warning(run: str | Path, model: Path, meta: dict[str, str]) -> str | None:
    """A warning line when the ONNX ``model`` (with metadata ``meta``) baked in another
    temperature than ``run``'s calibration.json holds now; None when they agree."""
    why = _stale(Path(run), Path(model), meta)
    if why is None:
        return None
    return (
        f"predict --onnx: {model} is not calibrated as {run} is now ({why}); its "
        f"probabilities differ from 'medtl predict {run}'; re-run medtl export {run}"
    )
