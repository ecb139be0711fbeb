"""``predict(run, inputs, out)``: masks and overlays at each image's original size, and
labels/probabilities (predictions.csv) for classification. Output names are sanitised and
can never escape ``out``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medtl.data.io import read_image
from medtl.data.layouts import is_image, mask_stem
from medtl.data.transforms import resize_pair, to_float
from medtl.engine.cpu import set_threads
from medtl.errors import ConfigError, DataError
from medtl.inference import infer, inference_net, mask_at_size, overlay, safe_name, save_png
from medtl.io_utils import atomic_write_text, csv_text
from medtl.runs import load_bundle


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Image files given directly or found (recursively) in folders; mask files skipped."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if is_image(f) and mask_stem(f) is None)
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; give image files or folders to predict")
    if not found:
        raise DataError(
            f"no images found in {', '.join(map(str, inputs))}; give PNG/JPEG/TIFF/BMP files"
        )
    return found


def predict(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    tta: bool = False,
    optimise: bool = True,
    batch_size: int = 8,
) -> list[str]:
    """Predict every input image with the run's PyTorch model; returns the written paths.

    ``optimise`` runs the CPU-optimised network (:func:`medtl.inference.inference_net`:
    Conv-BN folded, channels_last; ``False`` = eager); images go through it
    ``batch_size`` at a time."""
    net, cfg, classes = load_bundle(Path(run))
    set_threads(cfg)
    net = inference_net(net, "cpu", optimise)
    return write_predictions(
        lambda x: infer(net, x, tta), cfg.data.image_size, classes, inputs, Path(out), batch_size
    )


def write_predictions(
    infer_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    size: int,
    classes: list[str],
    inputs: list[str | Path],
    out: Path,
    batch_size: int = 8,
) -> list[str]:
    """Predict every input with ``infer_fn`` (float batch (B,3,S,S) in [0,1] -> logits dict,
    PyTorch or ONNX Runtime), ``batch_size`` images per call; writes masks, overlays and
    predictions.csv into ``out``."""
    if batch_size < 1:
        raise ConfigError(
            f"batch size must be >= 1, got {batch_size} (medtl predict --batch-size 8)"
        )
    written: list[str] = []
    rows: list[dict] = []
    used: set[str] = set()
    for path, image, res in _batched(infer_fn, size, collect_inputs(inputs), batch_size):
        name = safe_name(path.stem)
        base, k = name, 1
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        row: dict[str, Any] = {"image": str(path)}
        if "seg" in res:
            mask = mask_at_size(res["seg"][0], image.shape[0], image.shape[1])
            for target, arr in (
                (out / f"{name}_mask.png", mask),
                (out / f"{name}_overlay.png", overlay(image, mask)),
            ):
                save_png(target, arr)
                written.append(str(target))
            row["lesion_pixels"] = int(mask.sum())
        if "cls" in res:
            p = torch.softmax(res["cls"][0].float(), 0)
            row["label"] = classes[int(p.argmax())]
            row.update(
                {f"p_{c}": round(float(v), 6) for c, v in zip(classes, p.tolist(), strict=True)}
            )
        rows.append(row)
    atomic_write_text(out / "predictions.csv", csv_text(rows))
    written.append(str(out / "predictions.csv"))
    return written


def _batched(infer_fn, size: int, paths: list[Path], batch_size: int):
    """``(path, decoded image, its logits with a batch axis of 1)`` for every path, in order,
    running ``infer_fn`` on ``batch_size`` images at a time."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [read_image(p) for p in chunk]
        x = torch.stack([to_float(resize_pair(im, None, size)[0]) for im in images])
        res = infer_fn(x)
        for j, (path, image) in enumerate(zip(chunk, images, strict=True)):
            yield path, image, {k: v[j : j + 1] for k, v in res.items()}
