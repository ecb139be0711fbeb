"""Helpers of the data tests: smooth random pictures, near copies of them, saving, and the
one-line error check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZE = 40


def smooth_image(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth random grey image (values 40..200) with a little fine noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (5, 5)).astype(np.uint8)
    big = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    return np.clip(big.astype(int) + rng.integers(-8, 9, big.shape), 0, 255).astype(np.uint8)


def near_copy(arr: np.ndarray, seed: int = 99) -> np.ndarray:
    """Brightened by 10 and re-noised: the same picture, different pixels."""
    rng = np.random.default_rng(seed)
    return np.clip(arr.astype(int) + 10 + rng.integers(-3, 4, arr.shape), 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    """Write ``arr`` as an image at ``path`` (its folder made), in ``mode`` when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    """The raised error's message is one line that names ``path``, with no traceback."""
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "Traceback" not in msg, msg
