"""Mask files read once per data preparation.

The mask scan (:func:`medtl.data.masks.scan.scan`) must read every mask file before the
decode, to decide what the values mean; inside :func:`keeping` (entered by
:func:`medtl.data.cache.modes.reuse_decoded`, so by every ``prepare``) it keeps each file's
pixels and facts here, and the decode (:func:`medtl.data.readers.io.read_mask`) takes the
pixels instead of opening the file again. A training thus opens each mask file once.

The kept pixels are those the scan decided on, so the decision and the decoded rows come
from the same read. Two-valued masks (binary ones) are kept one bit a pixel; pixels beyond
:data:`LIMIT_MB` in all are not kept (the decode reads those files again); what is kept is
released when the outermost block ends. Forked decoding
workers inherit the kept arrays, threads share them; outside a block nothing is kept.

Example::

    >>> with keeping():                          # doctest: +SKIP
    ...     facts = scan(paths)                  # reads and keeps every mask
    ...     mask = read_mask([paths[0]], shape)  # takes the kept pixels: no read
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: the most mask pixels (in MiB, as read: before any resize) kept for the decode at once
LIMIT_MB = 1024

_depth = [0]
_bytes = [0]
_arrays: dict[str, Any] = {}  # path -> np.ndarray or _TwoValues
_facts: dict[str, Any] = {}


@contextmanager
def keeping() -> Iterator[None]:
    """Within this block (nested blocks join the outer one) the mask scan keeps what it
    read for the decode; everything kept is released when the outermost block ends."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if _depth[0] == 0:
            _arrays.clear()
            _facts.clear()
            _bytes[0] = 0


def active() -> bool:
    """Whether a :func:`keeping` block is open."""
    return _depth[0] > 0


def _key(path: str | Path) -> str:
    return os.fspath(path)


class _TwoValues:
    """A one-channel integer array of two values, one bit a pixel (a binary mask: 1/8 of
    its 8-bit size)."""

    def __init__(self, arr: np.ndarray, lo: Any, hi: Any):
        self.shape, self.dtype, self.lo, self.hi = arr.shape, arr.dtype, lo, hi
        self.bits = np.packbits(arr == hi)
        self.nbytes = self.bits.nbytes

    def unpack(self) -> np.ndarray:
        size = int(np.prod(self.shape))
        hit = np.unpackbits(self.bits, count=size).reshape(self.shape).astype(bool)
        out = np.full(self.shape, self.lo, self.dtype)
        out[hit] = self.hi
        return out


def _packed(arr: np.ndarray) -> np.ndarray | _TwoValues:
    if arr.ndim != 2 or arr.dtype.kind not in "uib" or not arr.size:
        return arr
    lo, hi = arr.min(), arr.max()
    return _TwoValues(arr, lo, hi) if ((arr == lo) | (arr == hi)).all() else arr


def keep(path: str | Path, pixels: np.ndarray, facts: Any) -> None:
    """Keep ``path``'s pixels (while under :data:`LIMIT_MB`; two-valued masks one bit a
    pixel) and facts, inside a block."""
    if not active():
        return
    key = _key(path)
    _facts[key] = facts
    stored = _packed(pixels)
    if key not in _arrays and _bytes[0] + stored.nbytes <= LIMIT_MB * 2**20:
        _arrays[key] = stored
        _bytes[0] += stored.nbytes


def take(path: str | Path) -> np.ndarray | None:
    """``path``'s kept pixels, as read, handed over once (later reads open the file); None
    when nothing is kept."""
    got = _arrays.pop(_key(path), None)
    if got is None:
        return None
    _bytes[0] -= got.nbytes
    return got.unpack() if isinstance(got, _TwoValues) else got


def facts(path: str | Path) -> Any:
    """What the scan found in ``path`` within this block, or None."""
    return _facts.get(_key(path))
