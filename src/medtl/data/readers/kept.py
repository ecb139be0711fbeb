"""Mask files read once per data preparation.

The mask scan (:func:`medtl.data.masks.scan.scan`) must read every mask file before the
decode, to decide what the values mean; inside :func:`keeping` (entered by
:func:`medtl.data.cache.modes.reuse_decoded`, so by every ``prepare``) it keeps each file's
pixels and facts here, and the decode (:func:`medtl.data.readers.io.read_mask`) takes the
pixels instead of opening the file again. A training thus opens each mask file once.

The kept pixels are those the scan decided on, so the decision and the decoded rows come
from the same read. Pixels beyond :data:`LIMIT_MB` in all are not kept (the decode reads
those files again); what is kept is released when the outermost block ends. Forked decoding
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
_arrays: dict[str, np.ndarray] = {}
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


def keep(path: str | Path, pixels: np.ndarray, facts: Any) -> None:
    """Keep ``path``'s pixels (while under :data:`LIMIT_MB`) and facts, inside a block."""
    if not active():
        return
    key = _key(path)
    _facts[key] = facts
    if key not in _arrays and _bytes[0] + pixels.nbytes <= LIMIT_MB * 2**20:
        _arrays[key] = pixels
        _bytes[0] += pixels.nbytes


def take(path: str | Path) -> np.ndarray | None:
    """``path``'s kept pixels, handed over once (later reads open the file); None when
    nothing is kept."""
    got = _arrays.pop(_key(path), None)
    if got is not None:
        _bytes[0] -= got.nbytes
    return got


def facts(path: str | Path) -> Any:
    """What the scan found in ``path`` within this block, or None."""
    return _facts.get(_key(path))
