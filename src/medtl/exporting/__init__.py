"""``export_onnx(run)``: a deployable ONNX model, parity-checked against PyTorch, optionally
quantised to int8 (static, calibrated on the run's training images) with its Dice and speed
cost measured; ``OnnxPredictor`` and ``predict_onnx`` run it without PyTorch models.

Files (all written atomically) under ``RUN/export/``::

    model.onnx        input "image" float (N, 3, S, S) in [0, 1]; outputs "seg" and/or "cls"
    model.int8.onnx   with int8=True (QDQ, per-channel weights; the output layers stay fp32)
    export.json       paths, opset, parity max|diff| per output, sizes, int8 Dice and speed,
                      the calibration baked in (temperature, calibration.json's sha256/mtime)

A comparison's fold ensemble exports the same way into ``CELL/ensemble/export/``
(:func:`export_ensemble`, ``medtl export CMP --config N``): one graph holding the K members
and their mean probability, with the same outputs, so ``predict --onnx`` serves both.

Modules: :mod:`~medtl.exporting.exporter` (``model.onnx`` and its parity check),
:mod:`~medtl.exporting.quantise` (``model.int8.onnx``, its Dice and speed),
:mod:`~medtl.exporting.runtime` (:class:`OnnxPredictor`), :mod:`~medtl.exporting.onnx_predict`
(``medtl predict --onnx``), :mod:`~medtl.exporting.ensemble` (fold ensembles),
:mod:`~medtl.exporting.staleness` (a graph older than the run's calibration). Settings are read where they are used:
``runtime.THREADS`` (ONNX Runtime threads), ``exporter.PARITY_TOL``,
``quantise.BENCH_SECONDS``.
"""

from __future__ import annotations

from medtl.exporting.ensemble import export_ensemble
from medtl.exporting.exporter import export_onnx
from medtl.exporting.onnx_predict import OnnxNet, onnx_target, predict_onnx
from medtl.exporting.quantise import QUANTISED_OPS, quantise_int8, throughput
from medtl.exporting.runtime import INPUT_NAME, META_PREFIX, OUTPUT_ORDER, OnnxPredictor
from medtl.exporting.staleness import calibration_record, stale_exports, warn_stale_exports

__all__ = [
    "INPUT_NAME",
    "META_PREFIX",
    "OUTPUT_ORDER",
    "QUANTISED_OPS",
    "OnnxNet",
    "OnnxPredictor",
    "calibration_record",
    "export_ensemble",
    "export_onnx",
    "onnx_target",
    "predict_onnx",
    "quantise_int8",
    "stale_exports",
    "throughput",
    "warn_stale_exports",
]
