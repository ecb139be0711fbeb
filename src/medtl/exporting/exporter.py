"""``export_onnx(run)``: ``RUN/model.pt`` as ``model.onnx``, parity-checked against PyTorch.

The graph takes float ``(N, 3, S, S)`` images in [0, 1] (dynamic batch) and returns the
run's outputs (``seg`` and/or ``cls``) in :data:`~medtl.exporting.runtime.OUTPUT_ORDER`; the
task, classes and image size are stored as model metadata. ONNX Runtime must agree with
PyTorch to :data:`PARITY_TOL` on 4 seeded random images, or no model is left behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medtl.exporting.quantise import quantise_int8
from medtl.exporting.records import write_export
from medtl.exporting.runtime import INPUT_NAME, META_PREFIX, OUTPUT_ORDER, OnnxPredictor, model_mb
from medtl.training.loggers import log_run_artifacts
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write

log = logging.getLogger("medtl")
PARITY_TOL = 1e-4


class _TupleNet(nn.Module):
    """The Net with a tuple output (ONNX graphs return positional outputs, not dicts)."""

    def __init__(self, net: nn.Module, keys: list[str]):
        super().__init__()
        self.net = net
        self.keys = keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return tuple(out[k] for k in self.keys)


def _write_onnx(net: nn.Module, keys: list[str], size: int, opset: int, meta: dict[str, str]):
    def write(path: Path) -> None:
        import onnx

        dummy = torch.rand(2, 3, size, size)
        axes = {name: {0: "batch"} for name in [INPUT_NAME, *keys]}
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated but needs no onnxscript and handles every
            # decoder we have; the dynamo one would add a dependency for no gain here
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _TupleNet(net, keys).eval(),
                (dummy,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=keys,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        model = onnx.load(str(path))
        for k, v in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = META_PREFIX + k, v
        onnx.save(model, str(path))

    return write


def _probs(logits: torch.Tensor, key: str) -> torch.Tensor:
    """What the outputs mean: softmax over channels (classes, or background + labels of a
    label-map run), sigmoid for a one-channel (binary) segmentation."""
    if key == "seg" and logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def _parity(
    net: nn.Module, predictor: OnnxPredictor, size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """max |ONNX - PyTorch| per output on 4 seeded random images (batch 4; exported with 2,
    so this also checks the dynamic batch axis): on the logits and on the probabilities."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, size, size, generator=gen)
    with torch.inference_mode():
        ref = net(x)
    got = {k: torch.from_numpy(v) for k, v in predictor(x.numpy()).items()}
    logits = {k: float((got[k] - ref[k]).abs().max()) for k in ref}
    probs = {k: float((_probs(got[k], k) - _probs(ref[k], k)).abs().max()) for k in ref}
    return logits, probs


_ERRNO_TEXT = {os.strerror(e): e for e in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)}


def _os_cause(exc: BaseException, path: Path) -> OSError | None:
    """The file-system error behind an exporter error: an ``OSError`` in its chain, or
    one whose text the exporter copied ("No space left on device"); None otherwise."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return type(seen)(seen.errno, seen.strerror, str(path))
        seen = seen.__cause__ or seen.__context__
    for text, code in _ERRNO_TEXT.items():
        if text in str(exc):
            return OSError(code, text, str(path))
    return None


def _export_file(run: Path, path: Path, write: Callable[[Path], None], opset: int) -> float:
    """``write`` ``path`` atomically; returns the seconds it took. A file-system error (full
    disk, read-only folder, a path under a file) is raised as the ``OSError`` naming
    ``path`` and its cause; other exporter errors become one MedtlError line suggesting
    another opset."""
    t0 = time.perf_counter()
    try:
        atomic_write(path, write)
    except (MedtlError, OSError):  # a full disk, a read-only folder, a path under a file:
        raise  # the OSError names the file and its errno (the CLI prints it on one line)
    except Exception as exc:  # the exporter's errors name ops, not the fix
        cause = _os_cause(exc, path)
        if cause is not None:
            raise cause from None
        raise MedtlError(
            f"{run}: ONNX export failed at opset {opset} ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); try another opset (e.g. 18)"
        ) from None
    return time.perf_counter() - t0


def _check_parity(
    net: nn.Module, path: Path, size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`_parity` of the written model; over :data:`PARITY_TOL` (logits or
    probabilities) the model is removed (never left behind for 'predict --onnx' to pick up)
    and MedtlError names the output."""
    diffs, probs = _parity(net, OnnxPredictor(path), size)
    for what, d in (("", diffs), (" probabilities", probs)):
        worst = max(d, key=d.get)
        if d[worst] >= PARITY_TOL:
            path.unlink()
            raise MedtlError(
                f"{path}: ONNX Runtime differs from PyTorch by {d[worst]:.3g} on '{worst}'"
                f"{what} (tolerance {PARITY_TOL:g}); try another opset (e.g. 18) or report "
                "the model"
            )
    return diffs, probs


def _parity_info(diffs: dict[str, float], probs: dict[str, float]) -> dict[str, Any]:
    """export.json's parity: logits, and softmax (sigmoid for one seg channel) probabilities."""
    return {
        "n_images": 4,
        "tolerance": PARITY_TOL,
        "max_abs_diff": diffs,
        "prob_max_abs_diff": probs,
    }


def _threshold_text(value: Any) -> str:
    """The mask threshold as graph metadata: a number, or a JSON list of one threshold per
    structure (a multilabel run's per-structure decision)."""
    if isinstance(value, (list, tuple)):
        return json.dumps([float(v) for v in value])
    return repr(float(value))


def graph_meta(
    task: str, classes: list[str], size: int, calibration: dict[str, Any]
) -> dict[str, str]:
    """The model metadata every medtl graph carries (keys get :data:`META_PREFIX`): task,
    classes (JSON), image size, and the calibration at export time (``temperature`` baked
    into the graph, ``none`` when there was none; ``seg_threshold``, which the graph does
    not apply: one number, or a JSON list of one per structure)."""
    t = calibration.get("temperature")
    return {
        "task": task,
        "classes": json.dumps(classes),
        "image_size": str(size),
        "temperature": "none" if t is None else repr(float(t)),
        "seg_threshold": _threshold_text(calibration.get("seg_threshold", 0.5)),
    }


def write_graph(
    net: nn.Module, out_dir: Path, size: int, opset: int, meta: dict[str, str], owner: Path
) -> dict[str, Any]:
    """``out_dir/model.onnx`` of ``net`` (a run's network or a fold ensemble) with ``meta``,
    parity-checked against ``net`` (:func:`_check_parity`); returns the export.json fields
    every export shares. ``owner`` (the run or cell) names the export in error lines."""
    with torch.inference_mode():
        keys = [k for k in OUTPUT_ORDER if k in net(torch.zeros(1, 3, size, size))]
    onnx_path = out_dir / "model.onnx"
    export_s = _export_file(owner, onnx_path, _write_onnx(net, keys, size, opset, meta), opset)
    diffs, prob_diffs = _check_parity(net, onnx_path, size)
    log.info("exported %s (parity max|diff| %s)", onnx_path, diffs)
    return {
        "onnx": str(onnx_path),
        "opset": opset,
        "exporter": "torch.onnx (TorchScript, dynamo=False)",
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, size, size], "range": [0.0, 1.0]},
        "outputs": keys,
        "parity": _parity_info(diffs, prob_diffs),
        "size_mb": {"fp32": model_mb(onnx_path)},
        "export_seconds": round(export_s, 2),
    }


def export_onnx(
    run: str | Path,
    out: str | Path | None = None,
    int8: bool = False,
    opset: int = 17,
    calib_images: int = 32,
) -> dict[str, Any]:
    """Export ``RUN/model.pt`` to ONNX, check parity, optionally quantise; returns export.json.

    ``out`` is the folder for the files (default ``RUN/export``). Parity: ONNX Runtime vs
    PyTorch on 4 random images must agree to ``1e-4`` (max abs difference per output, on the
    logits and on the probabilities), else MedtlError with the measured difference. ``int8`` adds ``model.int8.onnx`` and
    measures on the validation split the Dice (and accuracy) of fp32 vs int8 ONNX and the
    speed of both at batch 8 (see :func:`medtl.exporting.quantise.quantise_int8`).
    A stored temperature (``RUN/calibration.json``) divides the ``cls`` logits in the graph;
    export.json's ``calibration`` records it with the file's sha256 and mtime
    (:func:`medtl.exporting.staleness.calibration_record`).
    """
    from medtl.exporting.staleness import calibration_record
    from medtl.inference.decisions import calibrated
    from medtl.runs.folder import load_bundle

    run = Path(run)
    if not run.is_dir():
        raise MedtlError(f"{run}: no such run folder; give the folder 'medtl train' printed")
    net, cfg, classes = load_bundle(run)
    net = calibrated(net.eval(), run)  # a stored temperature divides the cls logits in the graph
    out_dir = Path(out) if out is not None else run / "export"
    size = cfg.data.image_size
    record = calibration_record(run)
    meta = graph_meta(cfg.task, classes, size, record)
    graph = write_graph(net, out_dir, size, opset, meta, run)
    info: dict[str, Any] = {
        "run": str(run),
        **graph,
        "task": cfg.task,
        "classes": classes,
        "temperature": record["temperature"],  # None: uncalibrated logits
        "calibration": record,
        "int8": None,
    }
    onnx_path = Path(graph["onnx"])
    if int8:
        info["int8"] = quantise_int8(run, onnx_path, out_dir / "model.int8.onnx", cfg, calib_images)
        info["size_mb"]["int8"] = info["int8"]["size_mb"]
    else:  # an int8 file from an earlier export would no longer match model.onnx
        (out_dir / "model.int8.onnx").unlink(missing_ok=True)
    write_export(out_dir, info)
    files = [onnx_path, out_dir / "model.int8.onnx", out_dir / "export.json"]
    log_run_artifacts(run, files, "export")  # train.logger=mlflow
    return info
