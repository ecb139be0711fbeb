"""Batched inference shared by evaluate and predict: inference_mode, optional flip TTA,
and mapping of segmentation logits back to each image's original size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medtl.data.transforms import resize_logits_to
from medtl.models.build import Net


@torch.inference_mode()
def infer(net: Net, x: torch.Tensor, tta: bool = False) -> dict[str, torch.Tensor]:
    """Logits for a float batch in [0, 1]; ``tta`` averages with the horizontally flipped input."""
    net.eval()
    out = net(x)
    if tta:
        flipped = net(torch.flip(x, dims=[3]))
        if "seg" in out:
            out["seg"] = (out["seg"] + torch.flip(flipped["seg"], dims=[3])) / 2
        if "cls" in out:
            out["cls"] = (out["cls"] + flipped["cls"]) / 2
    return out


def mask_at_size(
    seg_logits: torch.Tensor, height: int, width: int, threshold: float = 0.5
) -> np.ndarray:
    """One image's ``(1, S, S)`` logits -> bool mask at ``height x width``."""
    full = resize_logits_to(seg_logits[None].float(), height, width)[0, 0]
    return (torch.sigmoid(full) > threshold).numpy()


def overlay(
    image: np.ndarray, pred: np.ndarray | None, truth: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """RGB uint8 image with the prediction tinted red and the truth's outline in green."""
    out = image.astype(np.float32).copy()
    if pred is not None:
        out[pred] = (1 - alpha) * out[pred] + alpha * np.array([255, 40, 40], np.float32)
    if truth is not None:
        edge = truth & ~_erode(truth)
        out[edge] = np.array([40, 255, 40], np.float32)
    return out.clip(0, 255).astype(np.uint8)


def _erode(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask, 1)
    return m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()\-]+")


def safe_name(name: str, fallback: str = "image") -> str:
    """A file name that cannot leave its folder (no separators, no '..', printable)."""
    stem = _UNSAFE.sub("_", Path(name).name).strip(" .")
    return stem or fallback


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8/bool array as PNG (atomically)."""
    from medtl.io_utils import atomic_write

    arr = array.astype(np.uint8) * 255 if array.dtype == bool else array
    atomic_write(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))
