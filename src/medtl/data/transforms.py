"""Resizing and joint image+mask augmentation (torchvision.transforms.v2 + tv_tensors.Mask).

Samples are decoded and resized once (``resize_pair``) and cached as uint8; augmentation
then runs on the small uint8 tensors, so an epoch never decodes a file again.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


def resize_pair(
    image: np.ndarray, mask: np.ndarray | None, size: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decoded ``uint8 (H, W, 3)`` image and ``bool (H, W)`` mask -> uint8 tensors at size x size.

    Images are resized with antialiased bilinear interpolation, masks with nearest neighbour
    (values stay 0/1). Returns ``(3, S, S)`` and ``(1, S, S)`` uint8 tensors.
    """
    img = torch.from_numpy(np.array(image, copy=True)).permute(
        2, 0, 1
    )  # decoded arrays are read-only
    img = F.resize(img, [size, size], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    out_mask = None
    if mask is not None:
        m = torch.from_numpy(mask.astype(np.uint8))[None]
        out_mask = F.resize(m, [size, size], interpolation=v2.InterpolationMode.NEAREST)
    return img.contiguous(), out_mask


def build_augment(level: str) -> v2.Transform | None:
    """Joint augmentation for ``data.augment``: ``none`` | ``light`` | ``standard``.

    light: horizontal flip, small affine (+-10 deg, 5% shift, 0.9-1.1 scale),
    brightness/contrast +-10%. standard: the same with larger ranges (+-20 deg, 10%,
    0.8-1.2, +-20%) and a mild Gaussian blur. Vertical flips are left out on purpose:
    in ultrasound and most 2D medical images "up" is anatomically meaningful.
    """
    if level == "none":
        return None
    strong = level == "standard"
    ops: list[v2.Transform] = [
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply(
            [
                v2.RandomAffine(
                    degrees=20 if strong else 10,
                    translate=(0.1, 0.1) if strong else (0.05, 0.05),
                    scale=(0.8, 1.2) if strong else (0.9, 1.1),
                )
            ],
            p=0.7,
        ),
        v2.ColorJitter(brightness=0.2 if strong else 0.1, contrast=0.2 if strong else 0.1),
    ]
    if strong:
        ops.append(v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.3))
    return v2.Compose(ops)


def apply_augment(
    aug: v2.Transform | None, image: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply one random draw of ``aug`` to image and mask together (same geometry)."""
    if aug is None:
        return image, mask
    if mask is None:
        return aug(tv_tensors.Image(image)).as_subclass(torch.Tensor), None
    img, m = aug(tv_tensors.Image(image), tv_tensors.Mask(mask))
    return img.as_subclass(torch.Tensor), m.as_subclass(torch.Tensor)


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 image -> float32 in [0, 1] (normalisation lives in the model, see build.Net)."""
    return image.float().div_(255.0)


def resize_logits_to(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Map ``(N, C, S, S)`` logits back to an image's original ``height x width`` (bilinear)."""
    return torch.nn.functional.interpolate(
        logits, size=(height, width), mode="bilinear", align_corners=False
    )
