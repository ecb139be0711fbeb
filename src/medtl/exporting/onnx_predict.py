"""``medtl predict --onnx``: predictions through ONNX Runtime, written as ``medtl predict`` does.

Everything but the network is the PyTorch path's own code: the flip-TTA rule is
:func:`medtl.inference.engine.infer`, and the images, resizing, masks, overlays and
predictions.csv are :func:`medtl.inference.predictor.write_predictions`; the network is an
:class:`~medtl.exporting.runtime.OnnxPredictor` seen as a module (:class:`OnnxNet`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from medtl.exporting.records import ExportRecord
from medtl.exporting.runtime import META_PREFIX, OnnxPredictor
from medtl.utils.errors import MedtlError

log = logging.getLogger("medtl")


class OnnxNet(nn.Module):
    """An :class:`OnnxPredictor` with ``Net``'s interface: a float tensor batch in, a dict
    of logit tensors out, so :func:`medtl.inference.engine.infer` (and its TTA) can run it."""

    def __init__(self, predictor: OnnxPredictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.predictor(x.numpy()).items()}


def onnx_target(
    run: str | Path, config: str | int | None = None, int8: bool = False
) -> tuple[Path, Path]:
    """``(run, model)`` for ``medtl predict RUN --onnx``: ``RUN/export/model.onnx``
    (``model.int8.onnx`` with ``int8``); with ``config`` (``run`` a comparison) or a cell
    folder as ``run``, the fold ensemble's ``CELL/ensemble/export/model.onnx`` (written by
    ``medtl export CMP --config N``), the ensemble folder standing for the run."""
    from medtl.comparison.ensemble import ENSEMBLE_DIR, is_cell_folder, resolve_cell

    name = "model.int8.onnx" if int8 else "model.onnx"
    if config is None and not is_cell_folder(run):
        return Path(run), Path(run) / "export" / name
    folder = resolve_cell(run, config) / ENSEMBLE_DIR
    model = folder / "export" / name
    if not model.is_file():
        how = "int8 of a fold ensemble is not built" if int8 else "export the ensemble first"
        config_arg = f" --config {config}" if config is not None else ""
        raise MedtlError(f"{model} not found; {how}: medtl export {run}{config_arg}")
    return folder, model


def graph_rule(predictor: OnnxPredictor, postprocess: str | None) -> str | None:
    """The mask rule ``predict --onnx`` applies: ``postprocess`` when given (``none``: off),
    else the rule the export recorded (a fold ensemble's CV choice; none for a run)."""
    from medtl.inference.postprocess import parse_rule

    if postprocess is not None:
        return parse_rule(postprocess)
    return parse_rule(predictor.meta.get(META_PREFIX + "postprocess"))


def mask_scheme_of(run: str | Path, model: Path):
    """The label-mask encoding (:func:`medtl.runs.folder.run_scheme`) of the run behind
    ``model``: ``RUN/config.yaml``, or for a fold ensemble's graph its first member's
    (``export.json`` beside the graph lists them); None when neither is there."""
    from medtl.runs.folder import run_scheme

    configs = [Path(run) / "config.yaml"]
    facts = ExportRecord.read(model.parent)
    if facts is not None:
        configs += [Path(m) / "config.yaml" for m in facts.members[:1]]
    found = next((c for c in configs if c.is_file()), None)
    return run_scheme(found.parent) if found else None


def predict_onnx(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    tta: bool = False,
    model: str | Path | None = None,
    batch_size: int = 8,
    threshold: str | float | None = None,
    positive: str | None = None,
    postprocess: str | None = None,
) -> list[str]:
    """``medtl predict --onnx``: like :func:`medtl.inference.predictor.predict` but through ONNX Runtime
    on ``model`` (default ``RUN/export/model.onnx``; ``RUN/export/model.int8.onnx`` works too),
    ``batch_size`` images per call. The graph already divides by a stored temperature (a
    warning says when ``RUN/calibration.json`` now holds another one:
    :func:`medtl.exporting.staleness.graph_temperature_warning`); ``threshold``/``positive`` as
    in :func:`medtl.inference.predictor.predict`. The graph returns logits, so the stored
    ``--seg-threshold`` is applied here, as by the PyTorch path (a log line says so when it
    is not 0.5: other ONNX consumers must apply it themselves). Mask post-processing is not
    in the graph either: ``postprocess`` (``largest``, ``min_area=A``, ``none``), default
    the rule the export recorded (:func:`graph_rule`)."""
    from medtl.exporting.staleness import graph_temperature_warning
    from medtl.inference.decisions import decision_of, seg_threshold_of
    from medtl.inference.engine import infer
    from medtl.inference.predictor import write_predictions

    path = Path(model) if model is not None else Path(run) / "export" / "model.onnx"
    if not path.is_file():
        raise MedtlError(f"{path} not found; run 'medtl export {run}' first")
    predictor = OnnxPredictor(path)
    if predictor.image_size is None:
        raise MedtlError(f"{path} has no medtl metadata; re-export it with 'medtl export {run}'")
    stale = graph_temperature_warning(run, path, predictor.meta)
    if stale:
        log.warning(stale)
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
        postprocess=graph_rule(predictor, postprocess),
        seg_threshold=seg_t,
        scheme=mask_scheme_of(run, path),  # label masks in the training masks' encoding
    )
