"""``export_onnx(run)``: a deployable ONNX model, parity-checked against PyTorch, optionally
quantised to int8 (static, calibrated on the run's training images) with its Dice and speed
cost measured; ``OnnxPredictor`` and ``predict_onnx`` run it without PyTorch models.

Files (all written atomically) under ``RUN/export/``::

    model.onnx        input "image" float (N, 3, S, S) in [0, 1]; outputs "seg" and/or "cls"
    model.int8.onnx   with int8=True (QDQ, per-channel weights; the output layers stay fp32)
    export.json       paths, opset, parity max|diff| per output, sizes, int8 Dice and speed
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.errors import MedtlError
from medtl.io_utils import atomic_write, atomic_write_json

log = logging.getLogger("medtl")
PARITY_TOL = 1e-4
INPUT_NAME = "image"
OUTPUT_ORDER = ("seg", "cls")  # fixed order of the tuple the exported graph returns
META_PREFIX = "medtl."
THREADS: int | None = None  # ONNX Runtime intra-op threads; None: os.cpu_count()
BENCH_SECONDS = 0.5  # minimum timed seconds per model in the int8 speed measurement


class _TupleNet(nn.Module):
    """The Net with a tuple output (ONNX graphs return positional outputs, not dicts)."""

    def __init__(self, net: nn.Module, keys: list[str]):
        super().__init__()
        self.net = net
        self.keys = keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return tuple(out[k] for k in self.keys)


def _mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 3)


# ----------------------------------------------------------------------------- runtime


class OnnxPredictor:
    """An ONNX Runtime session on the CPU: ``predictor(x)`` -> ``{"seg": ..., "cls": ...}``.

    ``x`` is float32 ``(N, 3, S, S)`` in [0, 1] with ``S == predictor.image_size``; outputs
    are the same logits as ``Net.forward`` as numpy arrays. ``classes``, ``task`` and
    ``image_size`` come from the metadata ``export_onnx`` stores in the model.

    Example::

        pred = OnnxPredictor("RUN/export/model.onnx")
        logits = pred(np.zeros((2, 3, pred.image_size, pred.image_size), np.float32))["seg"]
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise MedtlError(f"{self.path} not found; create it with 'medtl export RUN'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or THREADS or os.cpu_count() or 1
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise MedtlError(
                f"{self.path}: ONNX Runtime cannot load it ({exc.__class__.__name__}); re-export "
                "with 'medtl export RUN'"
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        shape_size = inp.shape[2] if isinstance(inp.shape[2], int) else None
        self.image_size: int | None = (
            int(meta.get(META_PREFIX + "image_size", shape_size or 0)) or None
        )
        self.classes: list[str] = json.loads(meta.get(META_PREFIX + "classes", "[]"))
        self.task: str | None = meta.get(META_PREFIX + "task")

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        s = self.image_size
        if x.ndim != 4 or x.shape[1] != 3 or (s is not None and x.shape[2:] != (s, s)):
            raise MedtlError(
                f"{self.path}: input shape {tuple(x.shape)} does not fit; give (N, 3, {s}, {s}) "
                "float32 images in [0, 1]"
            )
        outs = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outs, strict=True))


def _flip_tta(predictor: Callable[[np.ndarray], dict[str, np.ndarray]], x: np.ndarray, tta: bool):
    out = predictor(x)
    if tta:  # same rule as medtl.inference.infer: average with the horizontally flipped input
        flipped = predictor(np.ascontiguousarray(x[..., ::-1]))
        if "seg" in out:
            out["seg"] = (out["seg"] + flipped["seg"][..., ::-1]) / 2
        if "cls" in out:
            out["cls"] = (out["cls"] + flipped["cls"]) / 2
    return out


# ----------------------------------------------------------------------------- export


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


def _parity(net: nn.Module, predictor: OnnxPredictor, size: int) -> dict[str, float]:
    """max |ONNX - PyTorch| per output on 4 seeded random images (batch 4; exported with 2,
    so this also checks the dynamic batch axis)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, size, size, generator=gen)
    with torch.inference_mode():
        ref = net(x)
    got = predictor(x.numpy())
    return {k: float(np.abs(got[k] - ref[k].numpy()).max()) for k in ref}


def export_onnx(
    run: str | Path,
    out: str | Path | None = None,
    int8: bool = False,
    opset: int = 17,
    calib_images: int = 32,
) -> dict[str, Any]:
    """Export ``RUN/model.pt`` to ONNX, check parity, optionally quantise; returns export.json.

    ``out`` is the folder for the files (default ``RUN/export``). Parity: ONNX Runtime vs
    PyTorch on 4 random images must agree to ``1e-4`` (max abs logit difference per output),
    else MedtlError with the measured difference. ``int8`` adds ``model.int8.onnx`` and
    measures on the validation split the Dice (and accuracy) of fp32 vs int8 ONNX and the
    speed of both at batch 8 (see :func:`quantise_int8`).
    """
    from medtl.runs import load_bundle

    run = Path(run)
    if not run.is_dir():
        raise MedtlError(f"{run}: no such run folder; give the folder 'medtl train' printed")
    net, cfg, classes = load_bundle(run)
    net.eval()
    out_dir = Path(out) if out is not None else run / "export"
    size = cfg.data.image_size
    with torch.inference_mode():
        keys = [k for k in OUTPUT_ORDER if k in net(torch.zeros(1, 3, size, size))]
    meta = {"task": cfg.task, "classes": json.dumps(classes), "image_size": str(size)}
    onnx_path = out_dir / "model.onnx"
    t0 = time.perf_counter()
    try:
        atomic_write(onnx_path, _write_onnx(net, keys, size, opset, meta))
    except MedtlError:
        raise
    except Exception as exc:  # the exporter's errors name ops, not the fix
        raise MedtlError(
            f"{run}: ONNX export failed at opset {opset} ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); try another opset (e.g. 18)"
        ) from None
    export_s = time.perf_counter() - t0
    predictor = OnnxPredictor(onnx_path)
    diffs = _parity(net, predictor, size)
    worst = max(diffs, key=diffs.get)
    if diffs[worst] >= PARITY_TOL:
        onnx_path.unlink()  # never leave a model behind that 'predict --onnx' could pick up
        raise MedtlError(
            f"{onnx_path}: ONNX Runtime differs from PyTorch by {diffs[worst]:.3g} on '{worst}' "
            f"(tolerance {PARITY_TOL:g}); try another opset (e.g. 18) or report the model"
        )
    info: dict[str, Any] = {
        "run": str(run),
        "onnx": str(onnx_path),
        "opset": opset,
        "exporter": "torch.onnx (TorchScript, dynamo=False)",
        "task": cfg.task,
        "classes": classes,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, size, size], "range": [0.0, 1.0]},
        "outputs": keys,
        "parity": {"n_images": 4, "tolerance": PARITY_TOL, "max_abs_diff": diffs},
        "size_mb": {"fp32": _mb(onnx_path)},
        "export_seconds": round(export_s, 2),
        "int8": None,
    }
    if int8:
        info["int8"] = quantise_int8(run, onnx_path, out_dir / "model.int8.onnx", cfg, calib_images)
        info["size_mb"]["int8"] = info["int8"]["size_mb"]
    else:  # an int8 file from an earlier export would no longer match model.onnx
        (out_dir / "model.int8.onnx").unlink(missing_ok=True)
    atomic_write_json(out_dir / "export.json", info)
    log.info("exported %s (parity max|diff| %s)", onnx_path, diffs)
    return info


# ----------------------------------------------------------------------------- int8


def _output_producers(path: Path) -> list[str]:
    """Names of the nodes that produce graph outputs (the heads' last conv / linear)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    outs = {o.name for o in model.graph.output}
    producers: dict[str, Any] = {o: n for n in model.graph.node for o in n.output}
    names = []
    for name in outs:
        node = producers.get(name)
        # walk back over shape-preserving no-ops to the layer that computes the logits
        while node is not None and node.op_type in ("Identity", "Reshape", "Flatten"):
            node = producers.get(node.input[0])
        if node is not None and node.name:
            names.append(node.name)
    return sorted(names)


def _val_data(
    run: Path, cfg: Any
) -> tuple[torch.Tensor, torch.Tensor | None, list[int], torch.Tensor]:
    """Validation images (uint8 N,3,S,S), masks and labels from the run's own splits, and
    the training images (for calibration: the scored images are not the calibrated ones)."""
    from medtl.data.pipeline import prepare
    from medtl.data.splits import load_splits

    cfg.data.group_duplicates = False  # grouping only matters for splitting
    data = prepare(cfg)
    splits = load_splits(run / "splits.json", data.dataset.samples)
    idx = splits.get("val") or splits.get("test") or splits.get("train") or []
    if not idx:
        raise MedtlError(f"{run}/splits.json lists no images; int8 calibration needs some")
    images = data.cache.images[idx]
    masks = data.cache.masks[idx] if data.cache.masks is not None else None
    labels = [data.labels[i] for i in idx] if data.labels else []
    train = data.cache.images[splits.get("train") or idx]
    return images, masks, labels, train


def _batches(images: torch.Tensor, batch: int):
    for i in range(0, len(images), batch):
        yield (images[i : i + batch].float() / 255).numpy()


def _scores(
    predictor: OnnxPredictor, images: torch.Tensor, masks: torch.Tensor | None, labels: list[int]
) -> dict[str, float]:
    """Mean per-image Dice (masks at the cached size) and accuracy on the given images."""
    from medtl.engine.metrics import seg_scores

    dice: list[float] = []
    correct: list[bool] = []
    row = 0
    for x in _batches(images, 8):
        res = predictor(x)
        for j in range(len(x)):
            if "seg" in res and masks is not None:
                pred = res["seg"][j, 0] > 0  # sigmoid(z) > 0.5
                dice.append(seg_scores(pred, masks[row + j, 0].numpy() > 0)["dice"])
            if "cls" in res and labels and labels[row + j] >= 0:
                correct.append(int(res["cls"][j].argmax()) == labels[row + j])
        row += len(x)
    scores = {}
    if dice:
        scores["dice"] = float(np.nanmean(dice))
    if correct:
        scores["accuracy"] = float(np.mean(correct))
    return scores


def throughput(
    fn: Callable[[], Any], batch: int, min_seconds: float | None = None, min_reps: int = 3
) -> float:
    """Images per second of ``fn`` (one batch per call) after one warm-up call, timed over
    at least ``min_reps`` calls and ``min_seconds`` (default :data:`BENCH_SECONDS`)."""
    min_seconds = BENCH_SECONDS if min_seconds is None else min_seconds
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - t0 < min_seconds:
        fn()
        reps += 1
    return batch * reps / (time.perf_counter() - t0)


#: the only ops int8 quantises (Add/Concat/Resize of the skip paths stay fp32; see below)
QUANTISED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def quantise_int8(
    run: Path, fp32_path: Path, int8_path: Path, cfg: Any = None, calib_images: int = 32
) -> dict[str, Any]:
    """Static int8 quantisation of the convolutions and linear layers (QDQ, per-channel int8
    weights, int8 activations, MinMax calibration on up to ``calib_images`` training
    images); the layers that produce the outputs stay fp32, and so do additions,
    concatenations and resizes: quantising the U-Net skip paths cost 0.06 Dice on BUSI
    (EfficientNet-Lite0, docs/performance.md), convolutions alone about 0. Returns sizes,
    the fp32-vs-int8 Dice/accuracy on the validation split and the img/s of both at batch 8
    (ONNX Runtime, CPU)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from medtl.runs import read_config

    cfg = cfg if cfg is not None else read_config(run)
    images, masks, labels, train_images = _val_data(run, cfg)
    calib = train_images[:calib_images]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(_batches(calib, 8))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {INPUT_NAME: x}

    # s8s8 does not saturate without VNNI as u8s8 can, so full-range weights are safe
    reduce_range = False
    excluded = _output_producers(fp32_path)
    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # shape inference + graph fusion first, as onnxruntime recommends
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        except Exception as exc:
            log.warning("quantisation pre-processing skipped (%s)", exc.__class__.__name__)
            pre = fp32_path

        def write(path: Path) -> None:
            quantize_static(
                str(pre),
                str(path),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(QUANTISED_OPS),
                nodes_to_exclude=excluded,
            )

        try:
            atomic_write(int8_path, write)
        except Exception as exc:
            raise MedtlError(
                f"{fp32_path}: int8 quantisation failed ({exc.__class__.__name__}); export "
                "without --int8"
            ) from None
    fp32, q8 = OnnxPredictor(fp32_path), OnnxPredictor(int8_path)
    s_fp32, s_int8 = _scores(fp32, images, masks, labels), _scores(q8, images, masks, labels)
    size = cfg.data.image_size
    x8 = (images[torch.arange(8) % len(images)].float() / 255).numpy()
    speed = {
        "batch": 8,
        "threads": fp32.session.get_session_options().intra_op_num_threads,
        "img_per_s_fp32": round(throughput(lambda: fp32(x8), 8), 2),
        "img_per_s_int8": round(throughput(lambda: q8(x8), 8), 2),
    }
    speed["speedup"] = round(speed["img_per_s_int8"] / speed["img_per_s_fp32"], 3)
    info: dict[str, Any] = {
        "onnx": str(int8_path),
        "method": "static QDQ of convolutions and linear layers, per-channel int8 weights, int8 "
        "activations, MinMax calibration on training images",
        "reduce_range": reduce_range,
        "fp32_layers": excluded,
        "calibration_images": len(calib),
        "size_mb": _mb(int8_path),
        "val": {"n_images": len(images), "image_size": size, "fp32": s_fp32, "int8": s_int8},
        "speed": speed,
    }
    if "dice" in s_fp32:
        info["dice_drop"] = s_fp32["dice"] - s_int8["dice"]
    if "accuracy" in s_fp32:
        info["accuracy_drop"] = s_fp32["accuracy"] - s_int8["accuracy"]
    return info


# ----------------------------------------------------------------------------- predict


def predict_onnx(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    tta: bool = False,
    model: str | Path | None = None,
    batch_size: int = 8,
) -> list[str]:
    """``medtl predict --onnx``: like :func:`medtl.predict.predict` but through ONNX Runtime
    on ``model`` (default ``RUN/export/model.onnx``; ``RUN/export/model.int8.onnx`` works too),
    ``batch_size`` images per call."""
    path = Path(model) if model is not None else Path(run) / "export" / "model.onnx"
    if not path.is_file():
        raise MedtlError(f"{path} not found; run 'medtl export {run}' first")
    predictor = OnnxPredictor(path)
    if predictor.image_size is None:
        raise MedtlError(f"{path} has no medtl metadata; re-export it with 'medtl export {run}'")

    def infer_fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in _flip_tta(predictor, x.numpy(), tta).items()}

    from medtl.predict import write_predictions

    return write_predictions(
        infer_fn, predictor.image_size, predictor.classes, inputs, Path(out), batch_size
    )
