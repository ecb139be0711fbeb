"""Decisions fitted on a run's validation split and stored in the run folder as data
(``RUN/calibration.json``, written atomically): the temperature of temperature scaling and
the operating points of binary / one-vs-rest decisions.

``medtl evaluate RUN --calibrate`` fits the temperature ``T`` on the validation split
(:func:`medtl.metrics.calibration.fit_temperature`: minimum NLL of the classification
logits); ``--youden``, ``--sensitivity 0.95`` or ``--specificity 0.9`` choose a threshold
per class on the validation probabilities (at ``T`` when one is stored,
:mod:`medtl.metrics.operating_point`). The evaluated split (test) then reports the ECE
before and after scaling and sensitivity/specificity/PPV/NPV at each threshold; with a
kept ``T`` its figures add ``reliability_calibrated.png`` beside ``reliability.png``
(:func:`medtl.plots.reliability.reliability_plots`).

``--seg-threshold auto`` (or a number) chooses the mask threshold of a binary segmentation
head on the validation Dice (:mod:`medtl.evaluation.threshold`); evaluate, predict and
``medtl.load(RUN)`` apply it from then on (:func:`seg_threshold_of`; default 0.5).

From then on predict and export apply ``T`` (:func:`calibrated` divides the ``cls`` logits
by it, so the ONNX graph does too), and ``medtl predict --threshold stored|T`` decides the
positive class by threshold instead of argmax (:func:`decision_of`, :func:`label_at`).

File layout::

    {"temperature": {"value": 1.7, "fitted_on": "val", "n_images": 40, "nll_before": ...,
                     "nll_after": ..., "ece_before": ..., "ece_after": ..., "ece_bins": 15},
     "operating_point": {"rule": "sensitivity", "target": 0.95, "name": "sensitivity >= 0.95",
                         "positive": "malignant", "temperature": 1.7, "fitted_on": "val",
                         "per_class": {"malignant": {"threshold": 0.31, ...}}},
     "seg_threshold": {"value": 0.45, "rule": "max mean val Dice", "fitted_on": "val",
                       "n_images": 18, "val_dice": {"0.3": ..., "0.35": ...}, ...}}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtl.evaluation.threshold import check_binary, fit_seg_threshold
from medtl.inference.decisions import _positive, read_calibration
from medtl.metrics.calibration import ECE_BINS, expected_calibration_error, fit_temperature, nll
from medtl.metrics.calibration import softmax as softmax_t
from medtl.metrics.operating_point import at_threshold, choose_threshold, rule_name
from medtl.runs.records import write_calibration
from medtl.utils.errors import ConfigError, MedtlError

log = logging.getLogger("medtl")
__all__ = ["Decisions", "decision_summary", "fit_decisions"]


@dataclass
class Decisions:
    """What ``medtl evaluate`` is asked beyond its defaults: ``calibrate`` (fit the
    temperature on the validation split), an operating-point ``rule`` (``youden``,
    ``sensitivity`` or ``specificity`` with ``target``) for ``positive`` (default: the second
    of two classes), the ``hd95`` definition (:mod:`medtl.metrics.surface`) and
    ``seg_threshold`` (``"auto"`` or a probability: :mod:`medtl.evaluation.threshold`)."""

    calibrate: bool = False
    rule: str | None = None
    target: float | None = None
    positive: str | None = None
    hd95: str = "pooled"
    seg_threshold: str | float | None = None

    def wanted(self) -> bool:
        return self.classification() or self.seg_threshold is not None

    def classification(self) -> bool:
        """A decision of the classification head is asked (temperature, operating point)."""
        return self.calibrate or self.rule is not None


# ----------------------------------------------------------------------------- fitting
def _val_split(run: Path, cfg, prepared, scheme):
    """``(prepared data, validation indices)`` of the run's own data (masks read by the
    run's ``scheme``)."""
    from medtl.data.pipeline import prepare
    from medtl.data.splits import load_splits

    if prepared is None:  # evaluating another folder: the run's own data for its val split
        prepared = prepare(cfg, scheme=scheme)
    val = load_splits(run / "splits.json", prepared.dataset.samples).get("val") or []
    if not val:
        raise MedtlError(f"{run}/splits.json has no validation images to fit decisions on")
    return prepared, val


def _val_logits(net, cfg, prepared, val: list[int], device, tta: bool):
    """The classification logits and labels of the validation images ``val``."""
    from medtl.data.pipeline import make_loader
    from medtl.inference.engine import infer

    logits, labels = [], []
    for x, _mask, label, rows in make_loader(prepared, val, cfg, train=False):
        out = infer(net, x.to(device), tta)["cls"].float().cpu().numpy()
        keep = (rows.numpy() >= 0) & (label.numpy() >= 0)
        logits.append(out[keep])
        labels.append(label.numpy()[keep])
    return np.concatenate(logits), np.concatenate(labels).astype(np.int64)


def _temperature_fit(z: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The NLL-optimal temperature on the validation logits, kept only when it does not
    raise the validation ECE: NLL and the binned ECE can disagree (on a few dozen images,
    or a barely trained model), and a calibration step must not make the calibration the
    user reads worse; then ``T = 1`` is stored with the rejected value and the reason."""
    t_nll = fit_temperature(z, y)
    ece_1 = expected_calibration_error(y, softmax_t(z))
    ece_t = expected_calibration_error(y, softmax_t(z, t_nll))
    kept = ece_t <= ece_1
    t = t_nll if kept else 1.0
    out = {
        "value": t,
        "fitted_on": "val",
        "n_images": int(len(y)),
        "nll_optimal": t_nll,
        "nll_before": nll(z, y),
        "nll_after": nll(z, y, t),
        "ece_before": ece_1,
        "ece_after": ece_t if kept else ece_1,
        "ece_bins": ECE_BINS,
        "kept": kept,
    }
    if not kept:
        out["reason"] = (
            f"T={t_nll:.4g} (min NLL) raised the validation ECE {ece_1:.3f} -> {ece_t:.3f}"
        )
        log.warning("temperature not applied: %s; T = 1 kept", out["reason"])
    return out


def _operating_fit(z, y, classes, t: float, d: Decisions) -> dict[str, Any]:
    p = softmax_t(z, t)
    positive = _positive(classes, d.positive)
    names = [positive] if len(classes) == 2 else list(classes)
    per_class = {
        c: choose_threshold(y == classes.index(c), p[:, classes.index(c)], d.rule, d.target)
        for c in names
    }
    return {
        "rule": d.rule,
        "target": d.target,
        "name": rule_name(d.rule, d.target),
        "positive": positive,
        "temperature": t,
        "fitted_on": "val",
        "per_class": per_class,
    }


def fit_decisions(
    run: Path,
    net,
    cfg,
    classes: list[str],
    prepared,
    device,
    tta: bool,
    d: Decisions | None,
    scheme: Any,
) -> dict[str, Any]:
    """Fit what ``d`` asks on the validation split and store it in ``RUN/calibration.json``
    (rank 0 writes); returns the file's content (``{}`` when nothing was asked).
    ``scheme``: the run's mask scheme (:func:`medtl.runs.folder.run_scheme`)."""
    if d is None or not d.wanted():
        return read_calibration(run)
    if d.classification() and cfg.task == "segmentation":
        raise ConfigError(
            "--calibrate and operating points need a classification head "
            "(task=classification or multitask)"
        )
    if d.seg_threshold is not None:
        check_binary(cfg, scheme)  # before any inference
    prepared, val = _val_split(run, cfg, prepared, scheme)
    doc = read_calibration(run)
    if d.classification():
        _classification_fit(doc, *_val_logits(net, cfg, prepared, val, device, tta), classes, d)
    if d.seg_threshold is not None:
        doc["seg_threshold"] = fit_seg_threshold(
            net, cfg, prepared, val, device, tta, d.seg_threshold
        )
    from medtl.runs.folder import process_rank

    if process_rank() == 0:
        write_calibration(run, doc)
    return doc


def _classification_fit(doc: dict[str, Any], z, y, classes: list[str], d: Decisions) -> None:
    """The temperature and / or operating point of ``d`` into ``doc`` (in place)."""
    if d.calibrate:
        doc["temperature"] = _temperature_fit(z, y)
        op = doc.get("operating_point")
        if op and d.rule is None and op.get("temperature") != doc["temperature"]["value"]:
            doc.pop("operating_point")  # chosen at another temperature: no longer valid
            log.warning("the stored operating point was dropped (new temperature); choose again")
    t = float((doc.get("temperature") or {}).get("value", 1.0))
    if d.rule is not None:
        doc["operating_point"] = _operating_fit(z, y, classes, t, d)


# ----------------------------------------------------------------------------- reporting
def decision_summary(
    run: Path, records: list[dict[str, Any]], classes: list[str]
) -> dict[str, Any]:
    """The summary's ``calibration`` (ECE before/after on this split and on validation)
    and ``operating_points`` (per class, at each stored threshold on this split)."""
    doc = read_calibration(run)
    known = [r for r in records if r.get("logits") is not None and r.get("label", -1) >= 0]
    if not doc or not known:
        return {}
    z = np.stack([r["logits"] for r in known]).astype(np.float64)
    y = np.array([r["label"] for r in known])
    out: dict[str, Any] = {}
    temp = doc.get("temperature")
    t = float(temp["value"]) if temp else 1.0
    if temp:
        out["calibration"] = {
            "temperature": t,
            "kept": temp.get("kept", True),
            "reason": temp.get("reason"),
            "ece_bins": ECE_BINS,
            "val": {
                k: temp[k]
                for k in ("n_images", "ece_before", "ece_after", "nll_before", "nll_after")
            },
            "split": {
                "n_images": int(len(y)),
                "ece_before": expected_calibration_error(y, softmax_t(z)),
                "ece_after": expected_calibration_error(y, softmax_t(z, t)),
                "nll_before": nll(z, y),
                "nll_after": nll(z, y, t),
            },
        }
    op = doc.get("operating_point")
    if op:
        p = softmax_t(z, float(op.get("temperature", 1.0)))
        rows = {}
        for c, chosen in op["per_class"].items():
            if c in classes:
                i = classes.index(c)
                got = at_threshold(y == i, p[:, i], chosen["threshold"])
                rows[c] = {
                    **got,
                    "val_sensitivity": chosen["sensitivity"],
                    "val_specificity": chosen["specificity"],
                }
        out["operating_points"] = {
            k: op[k] for k in ("rule", "target", "name", "positive", "temperature")
        }
        out["operating_points"]["per_class"] = rows
    return out
