"""``medtl predict --onnx``: predictions through ONNX Runtime, written as ``medtl predict`` does.

Everything but the network is the PyTorch path's own code: the flip-TTA rule is
:func:`medtl.inference.infer`, and the images, resizing, masks, overlays and
predictions.csv are :func:`medtl.predict.write_predictions`; the network is an
:class:`~medtl.export.runtime.OnnxPredictor` seen as a module (:class:`OnnxNet`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from medtl.errors import MedtlError
from medtl.export.runtime import OnnxPredictor

log = logging.getLogger("medtl")


class OnnxNet(nn.Module):
    """An :class:`OnnxPredictor` with ``Net``'s interface: a float tensor batch in, a dict
    of logit tensors out, so :func:`medtl.inference.infer` (and its TTA) can run it."""

    def __init__(self, predictor: OnnxPredictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.predictor(x.numpy()).items()}


def predict_onnx(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    tta: bool = False,
    model: str | Path | None = None,
    batch_size: int = 8,
    threshold: str | float | None = None,
    positive: str | None = None,
) -> list[str]:
    """``medtl predict --onnx``: like :func:`medtl.predict.predict` but through ONNX Runtime
    on ``model`` (default ``RUN/export/model.onnx``; ``RUN/export/model.int8.onnx`` works too),
    ``batch_size`` images per call. The graph already divides by a stored temperature;
    ``threshold``/``positive`` as in :func:`medtl.predict.predict`. The graph returns
    logits, so the stored ``--seg-threshold`` is applied here, as by the PyTorch path (a
    log line says so when it is not 0.5: other ONNX consumers must apply it themselves)."""
    from medtl.calibrate import decision_of, seg_threshold_of
    from medtl.inference import infer
    from medtl.predict import write_predictions

    path = Path(model) if model is not None else Path(run) / "export" / "model.onnx"
    if not path.is_file():
        raise MedtlError(f"{path} not found; run 'medtl export {run}' first")
    predictor = OnnxPredictor(path)
    if predictor.image_size is None:
        raise MedtlError(f"{path} has no medtl metadata; re-export it with 'medtl export {run}'")
    net = OnnxNet(predictor)
    seg_t = seg_threshold_of(run)
    if seg_t != 0.5 and predictor.task != "classification":
        log.info(
            "predict --onnx: masks at the threshold %.4g of %s/calibration.json, not 0.5 "
            "(the ONNX graph returns logits; apply it yourself outside medtl)",
            seg_t,
            run,
        )
    return write_predictions(
        lambda x: infer(net, x, tta),
        predictor.image_size,
        predictor.classes,
        inputs,
        Path(out),
        batch_size,
        decision=decision_of(run, predictor.classes, threshold, positive),
        seg_threshold=seg_t,
    )
