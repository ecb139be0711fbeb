"""Class activation maps of a trained run through ``grad-cam`` (pytorch-grad-cam).

``explain(run, images, out)`` writes, for every image at its original size,
``<name>_cam.png`` (the heat map over the image) and ``<name>_cam.npy`` (the raw map,
float32 in [0, 1]); a multitask run also gets ``<name>_seg_cam.png`` / ``.npy`` for its
mask head. The target is the predicted class (or ``target``) for a classification head
and the predicted mask for a segmentation head (the whole image's lesion logits when
nothing is predicted). The maps are taken on the network as trained (the eager model,
not the Conv-BN-folded one), at the encoder's deepest stage unless ``layer`` names another
module (see :func:`target_layer`). Example::

    from medtl.inference.explain import Explainer
    explainer = Explainer("runs/cls-resnet18-...")
    result = explainer.explain(image)  # numpy (H, W[, 3]) or PIL image
    result.maps["cls"]                 # float32 (H, W) in [0, 1]

The module imports ``pytorch_grad_cam`` only when a map is computed, so medtl works
without the ``[explain]`` extra; asking for a map without it is a one-line error.
"""

from __future__ import annotations

import importlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.data.readers.io import pixel_cap, read_image
from medtl.inference.engine import safe_name, save_png
from medtl.inference.predictor import (
    Prediction,
    as_rgb_uint8,
    collect_inputs,
    model_input,
    result_of,
)
from medtl.models.stages import encoder_stages
from medtl.runs.folder import load_bundle, run_scheme
from medtl.runtime.cpu import threads_for
from medtl.runtime.device import resolve_device
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write, atomic_write_text, csv_text

log = logging.getLogger("medtl")

# --method name -> pytorch_grad_cam class name (gradient-free ones marked in the help)
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
}
# modules that only resample or pass through: a CAM on them is the CAM of the layer before
_PASS_THROUGH = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Dropout)


def require_extra(module: str, extra: str) -> Any:
    """Import ``module`` or raise the one-line error naming ``pip install medtl[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MedtlError(
            f"this needs the '{extra}' extra ({module} is not installed); "
            f"run 'pip install medtl[{extra}]'"
        ) from None


def target_layer(net: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """The module the maps are taken at and its name in ``net``.

    ``name`` (``--layer``) picks any module by its dotted name, e.g. ``encoder.layer3``.
    Otherwise it is the last module of the encoder's deepest stage
    (:func:`medtl.models.stages.encoder_stages`, one split per encoder family): ResNet
    ``layer4``, DenseNet ``features.norm5`` (after the last dense block), MobileNet and
    EfficientNet the last conv block, VGG the last conv block's ReLU (the pool after it
    is skipped, it only resamples the same map)."""
    if name:
        try:
            return name, net.get_submodule(name)
        except AttributeError:
            raise MedtlError(
                f"--layer {name}: no such module in the network; give a dotted name such as "
                "encoder.layer4 (print(net) lists them)"
            ) from None
    encoder = getattr(net, "encoder", None)
    try:
        stages = [g for g in encoder_stages(encoder) if g]
    except (TypeError, AttributeError):
        stages = []
    modules = [m for m in (stages[-1] if stages else []) if not isinstance(m, _PASS_THROUGH)]
    if not modules:
        raise MedtlError(
            f"no Grad-CAM layer known for the {type(encoder).__name__} encoder; "
            "name one with --layer (e.g. --layer encoder.stages.3)"
        )
    names = {id(m): n for n, m in net.named_modules()}
    return names[id(modules[-1])], modules[-1]


class _Head(nn.Module):
    """The network with one output (``"cls"`` or ``"seg"``), as pytorch-grad-cam wants."""

    def __init__(self, net: nn.Module, key: str):
        super().__init__()
        self.net, self.key = net, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[self.key]


class _MaskTarget:
    """Sum of the lesion logits inside ``mask`` (pytorch-grad-cam's
    SemanticSegmentationTarget for a one-channel head, built without a numpy copy)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[0] * self.mask).sum()


@dataclass
class Explanation:
    """One image's maps: ``maps[head]`` float32 ``(H, W)`` in [0, 1] at the input's size,
    ``targets[head]`` what the map explains, and the prediction itself."""

    image: np.ndarray
    prediction: Prediction
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)

    def overlay(self, head: str) -> np.ndarray:
        """The image with ``maps[head]`` as a heat map on it (uint8 RGB)."""
        from pytorch_grad_cam.utils.image import show_cam_on_image

        return show_cam_on_image(
            self.image.astype(np.float32) / 255.0, self.maps[head], use_rgb=True
        )


class Explainer:
    """A run's network held for maps: ``explain(image)`` -> :class:`Explanation`.

    ``method`` is a key of :data:`METHODS`; ``target`` a class name that replaces the
    predicted class for the classification head; ``layer`` see :func:`target_layer`."""

    def __init__(
        self,
        run: str | Path,
        method: str = "gradcam",
        target: str | None = None,
        layer: str | None = None,
        bundle: tuple[nn.Module, Any, list[str]] | None = None,
        device: str = "auto",
    ):
        self.cam_module = require_extra("pytorch_grad_cam", "explain")
        if method not in METHODS:
            raise MedtlError(f"--method {method}: choose one of {', '.join(METHODS)}")
        # ``bundle`` = load_bundle's (net, cfg, classes), for a network not saved as a run
        self.net, self.cfg, self.classes = bundle or load_bundle(Path(run))
        self.scheme = run_scheme(self.cfg)  # what the run's masks mean (structures: a mask each)
        self.device = resolve_device(device)  # auto: CUDA, else MPS, else CPU
        self.net = self.net.to(self.device)
        if target is not None and target not in self.classes:
            known = ", ".join(self.classes) or "none (segmentation run)"
            raise MedtlError(f"--target {target}: not a class of this run (classes: {known})")
        self.method, self.target = method, target
        self.layer_name, self.layer = target_layer(self.net, layer)
        self.size = self.cfg.data.image_size
        for p in self.net.parameters():  # gradients must reach the layer's activations
            p.requires_grad_(True)

    def describe(self) -> str:
        """E.g. ``"gradcam at encoder.layer4 (ResNetEncoder)"`` (printed by the CLI)."""
        return f"{self.method} at {self.layer_name} ({type(self.net.encoder).__name__})"

    def explain(self, image: Any) -> Explanation:
        """Maps of one numpy array or PIL image (see :func:`medtl.inference.predictor.as_rgb_uint8`)."""
        arr = as_rgb_uint8(image)
        h, w = arr.shape[:2]
        x = model_input([arr], self.size).to(self.device)
        with threads_for(self.cfg):
            with torch.no_grad():
                out = {k: v.cpu() for k, v in self.net(x).items()}
            multilabel = self.scheme.multilabel
            result = Explanation(arr, result_of(out, h, w, self.classes, multilabel=multilabel))
            if "cls" in out:
                k = self.classes.index(self.target) if self.target else int(out["cls"][0].argmax())
                from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

                result.maps["cls"] = self._map(x, "cls", ClassifierOutputTarget(k), h, w)
                result.targets["cls"] = self.classes[k]
            if "seg" in out:
                mask = (torch.sigmoid(out["seg"][0, 0]) > 0.5).float()
                result.targets["seg"] = "predicted mask" if mask.any() else "whole image"
                if not mask.any():  # nothing predicted: explain the lesion score everywhere
                    mask = torch.ones_like(mask)
                result.maps["seg"] = self._map(x, "seg", _MaskTarget(mask.to(self.device)), h, w)
        return result

    def _map(self, x: torch.Tensor, key: str, target: Any, h: int, w: int) -> np.ndarray:
        cam_class = getattr(self.cam_module, METHODS[self.method])
        with cam_class(model=_Head(self.net, key), target_layers=[self.layer]) as cam:
            grey = cam(input_tensor=x, targets=[target])[0]
        full = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(grey, np.float32))[None, None],
            size=(h, w),
            mode="bilinear",
            align_corners=False,
        )[0, 0]
        return full.clamp(0, 1).numpy()


def _npy_bytes(array: np.ndarray) -> bytes:
    # np.save on a path appends ".npy" to a temporary name; a buffer keeps the name
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def explain(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    method: str = "gradcam",
    target: str | None = None,
    layer: str | None = None,
    device: str = "auto",
) -> list[str]:
    """Maps of every input image into ``out`` (see the module docstring), computed on
    ``device``; returns the written paths (``explanations.csv`` last: image, head, target, files)."""
    explainer = Explainer(run, method=method, target=target, layer=layer, device=device)
    log.info("Grad-CAM: %s", explainer.describe())
    out = Path(out)
    written: list[str] = []
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for path in collect_inputs(inputs):
        name = safe_name(path.stem)
        base, k = name, 1
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        with pixel_cap(explainer.cfg.data.max_pixels):
            image = read_image(path)
        result = explainer.explain(image)
        for head, cam in result.maps.items():
            stem = f"{name}_seg_cam" if head == "seg" and "cls" in result.maps else f"{name}_cam"
            save_png(out / f"{stem}.png", result.overlay(head))
            atomic_write(out / f"{stem}.npy", lambda p, cam=cam: p.write_bytes(_npy_bytes(cam)))
            written += [str(out / f"{stem}.png"), str(out / f"{stem}.npy")]
            rows.append(
                {"image": str(path), "head": head, "target": result.targets[head]}
                | {"method": method, "layer": explainer.layer_name, "file": f"{stem}.png"}
            )
    atomic_write_text(out / "explanations.csv", csv_text(rows))
    return [*written, str(out / "explanations.csv")]


# ----------------------------------------------------------------------------- evaluation grid
def cam_cases(rows: list[dict[str, Any]], classes: list[str], k: int = 4) -> dict[str, list[int]]:
    """Indices of the ``k`` best and ``k`` worst classified rows of per_image.csv: ranked by
    the probability the model gave the true class (rows of unknown class are left out)."""
    scored = [
        (float(r[f"p_{r['class']}"]), i)
        for i, r in enumerate(rows)
        if r.get("class") in classes and f"p_{r['class']}" in r
    ]
    scored.sort(key=lambda t: (-t[0], t[1]))
    k = min(k, len(scored) // 2) if len(scored) > 1 else len(scored)
    return {"best": [i for _, i in scored[:k]], "worst": [i for _, i in scored[::-1][:k]]}


def write_cam_grid(
    run: str | Path, rows: list[dict[str, Any]], out_dir: str | Path, k: int = 4
) -> Path | None:
    """``out_dir/cam_grid.png``: Grad-CAM of the best and worst classified cases of an
    evaluation (``rows`` as in per_image.csv). None, with a log line, when the
    ``[explain]`` extra is missing or the run has no classification head."""
    try:
        explainer = Explainer(run)
    except MedtlError as exc:
        log.info("cam_grid.png skipped: %s", exc)
        return None
    picked = cam_cases(rows, explainer.classes, k)
    items = []
    for group in ("best", "worst"):
        for i in picked[group]:
            row = rows[i]
            result = explainer.explain(read_image(row["image"]))
            if "cls" not in result.maps:
                return None
            p = float(row[f"p_{row['class']}"])
            caption = f"{group}: {Path(row['image']).stem} ({row['class']}) p={p:.2f}"
            caption += f" -> {result.targets['cls']}"
            items.append((caption, result.overlay("cls")))
    if not items:
        return None
    from medtl import plots

    title = f"Grad-CAM ({explainer.describe()}) of the predicted class"
    return plots.overlay_grid(items, Path(out_dir) / "cam_grid.png", title=title)


__all__ = [
    "METHODS",
    "Explainer",
    "Explanation",
    "cam_cases",
    "explain",
    "require_extra",
    "target_layer",
    "write_cam_grid",
]
