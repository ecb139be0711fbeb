"""``data.image_size`` against the pixel cap and this machine's memory, checked before a
run starts so that an impossible size is one line (exit 2), not a crash mid-epoch.

- The pixel cap (``data.max_pixels``, 150 million by default) bounds every image medtl
  decodes; a network input of ``image_size^2`` pixels above it is refused the same way.
- Memory: a training step keeps every layer's activations for the backward pass. A
  ResNet18-UNet keeps 1676 bytes per input pixel (float32, measured with
  ``torch.autograd.graph.saved_tensors_hooks`` between 64 and 128 px); the check uses a
  floor below any medtl network (:data:`BYTES_PER_PIXEL`: 1024 for segmentation, 256 for
  classification) times ``train.batch_size x image_size^2``, against the machine's RAM,
  so it refuses only what cannot fit.
"""

from __future__ import annotations

import math
import os
from typing import Any

from medtl.utils.errors import ConfigError

#: a floor on the bytes a training step keeps per input pixel and image
BYTES_PER_PIXEL = {"classification": 256, "segmentation": 1024, "multitask": 1024}


def total_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_pixel_cap(size: int, max_pixels: int) -> None:
    """ConfigError when an ``size x size`` network input is over ``data.max_pixels``."""
    if size * size > max_pixels:
        largest = math.isqrt(max_pixels) // 16 * 16
        raise ConfigError(
            f"data.image_size={size}: {size}x{size} = {size * size:,} pixels per image, over "
            f"data.max_pixels ({max_pixels:,}); use data.image_size <= {largest}"
        )


def check_training_memory(cfg: Any, memory: int | None = None) -> None:
    """ConfigError when a training batch of ``data.image_size`` images cannot fit in RAM
    by the floor of the module docstring (``memory``: bytes, default this machine's)."""
    memory = total_memory() if memory is None else memory
    size, batch = int(cfg.data.image_size), int(cfg.train.batch_size)
    per = BYTES_PER_PIXEL.get(cfg.task, 256)
    need = batch * size * size * per
    if memory and need > memory:
        largest = max(16, math.isqrt(memory // (batch * per)) // 16 * 16)
        raise ConfigError(
            f"data.image_size={size} with train.batch_size={batch}: one training batch keeps at "
            f"least {need / 2**30:,.0f} GB of activations ({per} bytes per pixel per image), this "
            f"machine has {memory / 2**30:,.0f} GB; use data.image_size <= {largest} or a "
            "smaller train.batch_size"
        )
