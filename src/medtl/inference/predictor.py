"""``predict(run, inputs, out)``: masks and overlays at each image's original size, and
labels/probabilities (predictions.csv) for classification. Output names are sanitised and
can never escape ``out``.

:class:`Predictor` (``medtl.load(RUN)``) holds the same network in memory and predicts
arrays or PIL images without writing anything; both go through :func:`model_input` and
:func:`result_of`, so their outputs are the same. Example::

    import medtl
    predictor = medtl.load("runs/seg-unet-...")
    result = predictor.predict(image)  # numpy (H, W) / (H, W, C) or a PIL image
    result.mask, result.probabilities, result.label
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.data.layouts import is_image, mask_stem
from medtl.data.masks.scheme import MaskScheme
from medtl.data.readers.dicom import parse_window
from medtl.data.readers.io import pixel_cap, read_image, to_uint8
from medtl.data.readers.volumes import is_volume, slice_refs, volume_id, write_label_volume
from medtl.data.transforms import resize_pair, to_float
from medtl.inference.decisions import calibrated, decision_of, label_at, seg_threshold_of
from medtl.inference.dicom_seg import check_mask_format, seg_writer
from medtl.inference.engine import (
    infer,
    inference_net,
    mask_at_size,
    overlay,
    safe_name,
    save_mask,
    save_png,
)
from medtl.inference.postprocess import apply_rule, parse_rule
from medtl.runs.folder import load_bundle, run_scheme
from medtl.runtime.cpu import threads_for
from medtl.runtime.device import resolve_device
from medtl.utils.errors import ConfigError, DataError
from medtl.utils.files import atomic_write_text, csv_text
from medtl.utils.parallel import map_ordered, progress


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Image files given directly or found (recursively) in folders; mask files skipped."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(
                f for f in p.rglob("*") if (is_image(f) or is_volume(f)) and mask_stem(f) is None
            )
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; give image files or folders to predict")
    if not found:
        raise DataError(
            f"no images found in {', '.join(map(str, inputs))}; give PNG/JPEG/TIFF/BMP files"
        )
    return found


@dataclass
class Prediction:
    """One image's prediction: ``mask`` (bool, the input's height x width) for mask tasks,
    ``probabilities`` (class -> probability) and ``label`` for classification tasks."""

    mask: np.ndarray | None = None
    probabilities: dict[str, float] | None = None
    label: str | None = None


def as_rgb_uint8(image: Any) -> np.ndarray:
    """A numpy array (``(H, W)``, ``(H, W, 1|2|3|4)``, any numeric dtype) or PIL image as
    ``uint8 (H, W, 3)``, by the rule files are read with (:func:`medtl.data.readers.io.read_image`):
    alpha dropped, non-8-bit values rescaled from their own min..max, grey repeated."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL
        keep = ("L", "RGB", "RGBA", "LA", "1", "I;16", "I;16B", "I;16L", "I", "F")
        image = image if image.mode in keep else image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[..., :-1]
    arr = to_uint8(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise DataError(f"image of shape {arr.shape}: give (H, W) grey or (H, W, 3) RGB")
    return np.ascontiguousarray(np.broadcast_to(arr, (*arr.shape[:2], 3)))


def model_input(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """Decoded ``uint8 (H, W, 3)`` images -> the float batch ``(B, 3, S, S)`` in [0, 1]."""
    return torch.stack([to_float(resize_pair(im, None, size)[0]) for im in images])


def result_of(
    res: dict[str, torch.Tensor],
    height: int,
    width: int,
    classes: list[str],
    decision: tuple[int, float] | None = None,
    seg_threshold: float = 0.5,
    multilabel: bool = False,
) -> Prediction:
    """One image's logits (batch axis of 1) -> its :class:`Prediction` at ``height x width``;
    the label by argmax, or by ``decision`` (:func:`medtl.inference.decisions.label_at`); the mask
    where the probability is above ``seg_threshold`` (:mod:`medtl.evaluation.threshold`);
    ``multilabel``: one bit per structure (:func:`medtl.inference.engine.mask_at_size`)."""
    out = Prediction()
    if "seg" in res:
        out.mask = mask_at_size(res["seg"][0], height, width, seg_threshold, multilabel)
    if "cls" in res:
        p = torch.softmax(res["cls"][0].float(), 0)
        out.label = classes[label_at(p.numpy(), decision)]
        out.probabilities = {c: float(v) for c, v in zip(classes, p.tolist(), strict=True)}
    return out


class Predictor:
    """A trained run held in memory: ``predict(image)`` returns a :class:`Prediction` and
    writes nothing. The network and preprocessing are ``medtl predict``'s (the CPU-optimised
    network unless ``optimise=False``; ``tta`` averages with the flipped image; ``device``:
    auto, cpu, cuda or mps, see :func:`medtl.runtime.device.resolve_device`)."""

    def __init__(
        self, run: str | Path, optimise: bool = True, tta: bool = False, device: str = "auto"
    ):
        net, self.cfg, self.classes = load_bundle(Path(run))
        self.scheme = run_scheme(self.cfg)  # what the run's masks mean, built once
        self.device = resolve_device(device)
        self.run = Path(run)
        self.size = self.cfg.data.image_size
        self.tta = tta
        net = net.to(self.device)
        self.net = calibrated(inference_net(net, self.device, optimise), run)  # calibration.json
        self.seg_threshold = seg_threshold_of(run)  # evaluate --seg-threshold's (default 0.5)

    def predict(self, image: Any) -> Prediction:
        """One numpy array or PIL image (see :func:`as_rgb_uint8`) -> its prediction."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[Any]) -> list[Prediction]:
        """Several images in one forward pass (``train.threads`` for the call only)."""
        arrays = [as_rgb_uint8(im) for im in images]
        with threads_for(self.cfg), pixel_cap(self.cfg.data.max_pixels):
            res = infer(self.net, model_input(arrays, self.size), self.tta)
        one = {
            "classes": self.classes,
            "seg_threshold": self.seg_threshold,
            "multilabel": self.scheme.multilabel,
        }
        return [
            result_of({k: v[j : j + 1] for k, v in res.items()}, *im.shape[:2], **one)
            for j, im in enumerate(arrays)
        ]


def load(
    run: str | Path, optimise: bool = True, tta: bool = False, device: str = "auto"
) -> Predictor:
    """``medtl.load(RUN)``: the run's model as an in-memory :class:`Predictor`."""
    return Predictor(run, optimise=optimise, tta=tta, device=device)


def predict(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    tta: bool = False,
    optimise: bool = True,
    batch_size: int = 8,
    threshold: str | float | None = None,
    positive: str | None = None,
    postprocess: str | None = None,
    device: str = "auto",
    mask_format: str = "png",
) -> list[str]:
    """Predict every input image with the run's PyTorch model on ``device`` (auto: CUDA,
    else MPS, else CPU); returns the written paths.
    ``postprocess``: a mask rule of :mod:`medtl.inference.postprocess` (``largest``, ``min_area=A``).
    A stored temperature (``RUN/calibration.json``) scales the probabilities; ``threshold``
    (a probability or ``"stored"``) calls ``positive`` when its probability reaches it
    (:func:`medtl.inference.decisions.decision_of`); masks use the stored ``--seg-threshold``.

    ``optimise`` runs the CPU-optimised network (:func:`medtl.inference.engine.inference_net`:
    Conv-BN folded, channels_last; ``False`` = eager); images go through it
    ``batch_size`` at a time. ``mask_format="seg"`` also writes a DICOM SEG of each DICOM
    input (:mod:`medtl.inference.dicom_seg`)."""
    net, cfg, classes = load_bundle(Path(run))
    check_mask_format(mask_format, cfg.task)
    where = resolve_device(device)
    net = calibrated(inference_net(net.to(where), where, optimise), run)
    decision = decision_of(run, classes, threshold, positive)
    return predict_with(
        net, cfg, classes, inputs, out, tta, batch_size,
        decision=decision,
        postprocess=parse_rule(postprocess),
        seg_threshold=seg_threshold_of(run),  # RUN/calibration.json, default 0.5
        mask_format=mask_format,
        model=f"{cfg.model.arch} {cfg.model.encoder}",
        scheme=run_scheme(cfg),  # label masks in their own encoding
    )  # fmt: skip


def predict_with(
    net: torch.nn.Module,
    cfg: Any,
    classes: list[str],
    inputs: list[str | Path],
    out: str | Path,
    tta: bool,
    batch_size: int,
    **options: Any,
) -> list[str]:
    """:func:`write_predictions` of ``net`` (a run's network or a fold ensemble) with the
    run's size, slicing, window, thread and pixel-cap settings; ``options`` go through
    (``scheme``: the run's mask scheme, :func:`medtl.runs.folder.run_scheme`)."""
    with threads_for(cfg), pixel_cap(cfg.data.max_pixels):
        return write_predictions(
            lambda x: infer(net, x, tta),
            cfg.data.image_size,
            classes,
            inputs,
            Path(out),
            batch_size,
            slice_axis=cfg.data.slice_axis,
            window=parse_window(cfg.data.window),
            **options,
        )


def write_predictions(
    infer_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    size: int,
    classes: list[str],
    inputs: list[str | Path],
    out: Path,
    batch_size: int = 8,
    slice_axis: int = 2,
    window: tuple[float, float] | None = None,
    decision: tuple[int, float] | None = None,
    postprocess: str | None = None,
    seg_threshold: float = 0.5,
    scheme: MaskScheme | None = None,
    mask_format: str = "png",
    model: str = "medtl",
) -> list[str]:
    """Predict every input with ``infer_fn`` (float batch (B,3,S,S) in [0,1] -> logits dict,
    PyTorch or ONNX Runtime), ``batch_size`` images per call; writes masks, overlays and
    predictions.csv into ``out``. A NIfTI volume is predicted slice by slice along
    ``slice_axis`` into ``<id>_mask.nii.gz`` with the input's affine and header.

    ``scheme`` (the run's :func:`~medtl.runs.folder.run_scheme`) writes label masks
    in the training masks' encoding (:func:`medtl.inference.engine.save_mask`: own values, palette,
    colours); None writes label indices as is. ``lesion_pixels``: foreground pixels (every
    label). ``mask_format="seg"``: a DICOM SEG too, naming ``model`` (:mod:`.dicom_seg`)."""
    _check_batch_size(batch_size)
    used: set[str] = set()
    paths = collect_inputs(inputs)
    seg = seg_writer(mask_format, scheme, model, paths)  # checked before anything is written
    volumes = [p for p in paths if is_volume(p)]
    written, rows = _predict_volumes(
        infer_fn, size, classes, volumes, out, batch_size, slice_axis, window, seg_threshold
    )
    paths = [p for p in paths if not is_volume(p)]
    batches = _batched(infer_fn, size, paths, batch_size, window)
    for path, image, res in progress(batches, len(paths), "predicting"):
        name = _unique_name(path, used)
        multilabel = scheme is not None and scheme.multilabel  # one mask per structure
        result = result_of(res, *image.shape[:2], classes, decision, seg_threshold, multilabel)
        if result.mask is not None and postprocess:  # a rule of medtl.inference.postprocess
            result.mask = apply_rule(result.mask, postprocess, multilabel)
        row: dict[str, Any] = {"image": str(path)}
        if result.mask is not None:
            masks = save_mask(out / f"{name}_mask.png", result.mask, scheme)  # own encoding
            shown = scheme.shown(result.mask) if scheme is not None else result.mask
            save_png(out / f"{name}_overlay.png", overlay(image, shown))
            written += [*map(str, masks), str(out / f"{name}_overlay.png")]
            if seg is not None:  # now, or the series' SEG after the last image
                written += map(str, seg.add(path, out / f"{name}_seg.dcm", result.mask))
            row["lesion_pixels"] = int((result.mask > 0).sum())
        if result.probabilities is not None:
            row["label"] = result.label
            row.update({f"p_{c}": round(v, 6) for c, v in result.probabilities.items()})
        rows.append(row)
    written += map(str, seg.finish() if seg is not None else [])
    atomic_write_text(out / "predictions.csv", csv_text(rows))
    return [*written, str(out / "predictions.csv")]


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(
            f"batch size must be >= 1, got {batch_size} (medtl predict --batch-size 8)"
        )


def _unique_name(path: Path, used: set[str]) -> str:
    """``path``'s safe stem, ``-1``, ``-2``, ... appended until it is not in ``used`` (added)."""
    name = base = safe_name(path.stem)
    k = 1
    while name in used:
        name, k = f"{base}-{k}", k + 1
    used.add(name)
    return name


def _predict_volumes(
    infer_fn,
    size: int,
    classes: list[str],
    volumes: list[Path],
    out: Path,
    batch_size: int,
    slice_axis: int,
    window: tuple[float, float] | None,
    seg_threshold: float = 0.5,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Each NIfTI volume slice by slice into ``<id>_mask.nii.gz`` with the input's affine
    and header; returns the written paths and the predictions.csv rows."""
    written: list[str] = []
    rows: list[dict[str, Any]] = []
    for vol in volumes:
        masks = [
            result_of(res, image.shape[0], image.shape[1], classes, None, seg_threshold).mask
            for _, image, res in _batched(
                infer_fn, size, slice_refs(vol, slice_axis), batch_size, window
            )
        ]
        if masks and masks[0] is None:
            raise DataError(f"{vol}: a volume needs a segmentation run; give 2D images instead")
        target = out / f"{safe_name(volume_id(vol))}_mask.nii.gz"
        written.append(str(write_label_volume(masks, vol, target, slice_axis)))
        rows.append({"image": str(vol), "lesion_pixels": int(sum(m.sum() for m in masks))})
    return written, rows


def _batched(infer_fn, size: int, paths: list[Path], batch_size: int, window=None):
    """``(path, decoded image, its logits with a batch axis of 1)`` for every path, in order,
    running ``infer_fn`` on ``batch_size`` images at a time."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = map_ordered(lambda p: read_image(p, window), chunk)  # decoding threads
        res = infer_fn(model_input(images, size))
        for j, (path, image) in enumerate(zip(chunk, images, strict=True)):
            yield path, image, {k: v[j : j + 1] for k, v in res.items()}
