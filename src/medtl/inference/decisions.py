"""The decisions a run folder stores for prediction (``RUN/calibration.json``, fitted by
``medtl evaluate``, :mod:`medtl.evaluation.calibrate`) read back and applied: the temperature
of the classification logits, the operating point of ``predict --threshold`` and the mask
threshold of a binary segmentation head (default :data:`DEFAULT_THRESHOLD`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.runs.records import CALIBRATION_FILE, DEFAULT_THRESHOLD, Calibration
from medtl.utils.errors import ConfigError

__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_THRESHOLD",
    "calibrated",
    "decision_of",
    "label_at",
    "read_calibration",
    "seg_threshold_of",
    "temperature_of",
    "threshold_value",
]


def threshold_value(
    doc: dict[str, Any], path: str | Path = CALIBRATION_FILE
) -> float | tuple[float, ...]:
    """The threshold a calibration document stores, or :data:`DEFAULT_THRESHOLD`; a
    multilabel run's per-structure decision is one threshold per structure, in the run's
    structure order (a value outside [0, 1] is a DataError naming ``path``)."""
    return Calibration.of(doc, path).mask_threshold


def read_calibration(run: str | Path) -> dict[str, Any]:
    """``RUN/calibration.json`` as a dict, its shape checked (:class:`Calibration`); ``{}``
    when there is none."""
    return Calibration.read(run).doc


def seg_threshold_of(run: str | Path) -> float | tuple[float, ...]:
    """The stored mask threshold of a sigmoid segmentation head (default 0.5): one number,
    or one per structure for a multilabel run fitted with ``--seg-threshold auto``."""
    return Calibration.read(run).mask_threshold


def temperature_of(run: str | Path) -> float | None:
    """The stored temperature, or None when the run was never calibrated."""
    return Calibration.read(run).temperature


class TemperatureScaled(nn.Module):
    """``net`` with its classification logits divided by ``temperature`` (seg unchanged)."""

    def __init__(self, net: nn.Module, temperature: float) -> None:
        super().__init__()
        self.net, self.temperature = net, float(temperature)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.net(x))
        if "cls" in out:
            out["cls"] = out["cls"] / self.temperature
        return out

    def describe(self) -> str:
        inner = self.net.describe() if hasattr(self.net, "describe") else "eager"
        return f"{inner}, temperature {self.temperature:.4g}"


def calibrated(net: nn.Module, run: str | Path) -> nn.Module:
    """``net`` scaled by the run's stored temperature (:class:`TemperatureScaled`), or
    ``net`` itself when the run has none."""
    t = temperature_of(run)
    return net if t is None else TemperatureScaled(net, t)


def _positive(classes: list[str], positive: str | None) -> str | None:
    if positive is not None and positive not in classes:
        raise ConfigError(f"--positive {positive!r} is not a class of this run: {classes}")
    return positive or (classes[1] if len(classes) == 2 else None)


def decision_of(
    run: str | Path, classes: list[str], threshold: str | float | None, positive: str | None
) -> tuple[int, float] | None:
    """``(positive class index, threshold)`` for ``predict --threshold`` (``stored``: the
    run's operating point), or None for argmax decisions."""
    if threshold is None:
        return None
    if str(threshold) == "stored":
        stored = Calibration.read(run)
        op = stored.operating_point
        if not op:
            raise ConfigError(
                f"{run} has no stored operating point; run 'medtl evaluate {run} --youden' "
                "(or --sensitivity 0.95) first, or give --threshold 0.5"
            )
        if abs(float(op.get("temperature") or 1.0) - (stored.temperature or 1.0)) > 1e-9:
            raise ConfigError(
                f"{run}: the operating point was chosen at another temperature; choose it "
                f"again with 'medtl evaluate {run} --youden'"
            )
        name = positive or op.get("positive")
        if name is None or name not in op["per_class"]:
            raise ConfigError(f"give --positive, one of {', '.join(op['per_class'])}")
        return classes.index(name), float(op["per_class"][name]["threshold"])
    try:
        value = float(threshold)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise ConfigError(f"--threshold {threshold!r}: give a probability in [0, 1] or 'stored'")
    name = _positive(classes, positive)
    if name is None:
        raise ConfigError(f"--threshold with {len(classes)} classes needs --positive CLASS")
    return classes.index(name), value


def label_at(p: np.ndarray, decision: tuple[int, float] | None) -> int:
    """The predicted class index: argmax, or with ``decision = (c, t)`` class ``c`` when
    ``p[c] >= t`` and else the most probable other class."""
    if decision is None:
        return int(np.argmax(p))
    c, t = decision
    if p[c] >= t:
        return c
    rest = np.array(p, dtype=np.float64)
    rest[c] = -np.inf
    return int(np.argmax(rest))
