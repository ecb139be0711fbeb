"""A tiny chest-X-ray-like set with one binary mask per structure: heart, lungs and clavicles
(the clavicles overlap the lungs), in the ``structures`` layout's two forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

STRUCTURES = ("heart", "left_clavicle", "left_lung", "right_clavicle", "right_lung")


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def chest(seed: int, size: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One picture and its structures (positions jittered by ``seed``): lungs dark, heart
    bright, clavicles brighter; the clavicles cover the lungs' tops."""
    rng = np.random.default_rng(seed)
    j = rng.uniform(-0.04, 0.04, 6) * size
    s = size
    masks = {
        "left_lung": _ellipse(s, 0.48 * s + j[0], 0.30 * s + j[1], 0.30 * s, 0.14 * s),
        "right_lung": _ellipse(s, 0.48 * s + j[0], 0.70 * s + j[2], 0.30 * s, 0.14 * s),
        "heart": _ellipse(s, 0.66 * s + j[3], 0.55 * s + j[4], 0.14 * s, 0.16 * s),
    }
    y, x = np.mgrid[:s, :s]
    bar = np.abs(y - (0.22 * s + j[5])) <= max(1, 0.05 * s)
    masks["left_clavicle"] = bar & (x >= 0.12 * s) & (x < 0.46 * s)
    masks["right_clavicle"] = bar & (x >= 0.54 * s) & (x < 0.88 * s)
    image = np.full((s, s), 150.0)
    image[masks["left_lung"] | masks["right_lung"]] = 60
    image[masks["heart"]] = 200
    image[masks["left_clavicle"] | masks["right_clavicle"]] = 240
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), masks


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_structures(root: Path, n: int = 12, size: int = 32, flat: bool = False) -> Path:
    """``root/images/xNN.png`` + ``root/masks/<structure>/xNN.png`` (0/255), or with
    ``flat`` ``root/masks/xNN_<structure>.png``."""
    for i in range(n):
        image, masks = chest(i, size)
        _save(root / "images" / f"x{i:02d}.png", image)
        for name, m in masks.items():
            target = f"x{i:02d}_{name}.png" if flat else f"{name}/x{i:02d}.png"
            _save(root / "masks" / target, m.astype(np.uint8) * 255)
    return root
