"""int8: static quantisation of an exported model, with its Dice and speed cost measured.

:func:`quantise_int8` writes ``model.int8.onnx`` (QDQ, per-channel int8 weights, int8
activations, MinMax calibration on the run's training images) and scores fp32 and int8 on
the validation split, the images that were not calibrated on.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.exporting.runtime import INPUT_NAME, OnnxPredictor, model_mb
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write

log = logging.getLogger("medtl")
BENCH_SECONDS = 0.5  # minimum timed seconds per model in the int8 speed measurement


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
    from medtl.runs.folder import run_scheme

    cfg.data.group_duplicates = False  # grouping only matters for splitting
    data = prepare(cfg, scheme=run_scheme(cfg))  # the run's masks: no file is scanned
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


def _dice(logits: np.ndarray, truth: np.ndarray, seg_scores: Any) -> float:
    """One image's Dice: sigmoid(z) > 0.5 for one channel; for a label-map run the mean
    over the foreground labels of the argmax's per-label Dice."""
    if logits.shape[0] == 1:
        return seg_scores(logits[0] > 0, truth > 0)["dice"]
    pred = logits.argmax(0)
    per = [seg_scores(pred == k, truth == k)["dice"] for k in range(1, logits.shape[0])]
    return float(np.nanmean(per)) if not np.isnan(per).all() else float("nan")


def _scores(
    predictor: OnnxPredictor, images: torch.Tensor, masks: torch.Tensor | None, labels: list[int]
) -> dict[str, float]:
    """Mean per-image Dice (masks at the cached size) and accuracy on the given images."""
    from medtl.metrics import seg_scores

    dice: list[float] = []
    correct: list[bool] = []
    row = 0
    for x in _batches(images, 8):
        res = predictor(x)
        for j in range(len(x)):
            if "seg" in res and masks is not None:
                dice.append(_dice(res["seg"][j], masks[row + j, 0].numpy(), seg_scores))
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


def _calibration_reader(calib: torch.Tensor):
    """An onnxruntime CalibrationDataReader over ``calib`` (uint8 images), batches of 8."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(_batches(calib, 8))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {INPUT_NAME: x}

    return Reader()


def _write_int8(
    fp32_path: Path, int8_path: Path, calib: torch.Tensor, excluded: list[str], reduce_range: bool
) -> None:
    """Pre-process (shape inference + fusion, as onnxruntime recommends) and quantise
    ``fp32_path`` into ``int8_path`` atomically; a failure is one MedtlError line."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        except Exception as exc:
            log.warning("quantisation pre-processing skipped (%s)", exc.__class__.__name__)
            pre = fp32_path

        def write(path: Path) -> None:
            quantize_static(
                str(pre),
                str(path),
                _calibration_reader(calib),
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


def _speed(fp32: OnnxPredictor, q8: OnnxPredictor, images: torch.Tensor) -> dict[str, Any]:
    """img/s of both models at batch 8 (the validation images, cycled) and their ratio."""
    x8 = (images[torch.arange(8) % len(images)].float() / 255).numpy()
    speed = {
        "batch": 8,
        "threads": fp32.session.get_session_options().intra_op_num_threads,
        "img_per_s_fp32": round(throughput(lambda: fp32(x8), 8), 2),
        "img_per_s_int8": round(throughput(lambda: q8(x8), 8), 2),
    }
    speed["speedup"] = round(speed["img_per_s_int8"] / speed["img_per_s_fp32"], 3)
    return speed


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
    from medtl.runs.folder import read_config

    cfg = cfg if cfg is not None else read_config(run)
    images, masks, labels, train_images = _val_data(run, cfg)
    calib = train_images[:calib_images]
    # s8s8 does not saturate without VNNI as u8s8 can, so full-range weights are safe
    reduce_range = False
    excluded = _output_producers(fp32_path)
    _write_int8(fp32_path, int8_path, calib, excluded, reduce_range)
    fp32, q8 = OnnxPredictor(fp32_path), OnnxPredictor(int8_path)
    s_fp32, s_int8 = _scores(fp32, images, masks, labels), _scores(q8, images, masks, labels)
    info: dict[str, Any] = {
        "onnx": str(int8_path),
        "method": "static QDQ of convolutions and linear layers, per-channel int8 weights, int8 "
        "activations, MinMax calibration on training images",
        "reduce_range": reduce_range,
        "fp32_layers": excluded,
        "calibration_images": len(calib),
        "size_mb": model_mb(int8_path),
        "val": {
            "n_images": len(images),
            "image_size": cfg.data.image_size,
            "fp32": s_fp32,
            "int8": s_int8,
        },
        "speed": _speed(fp32, q8, images),
    }
    if "dice" in s_fp32:
        info["dice_drop"] = s_fp32["dice"] - s_int8["dice"]
    if "accuracy" in s_fp32:
        info["accuracy_drop"] = s_fp32["accuracy"] - s_int8["accuracy"]
    return info
