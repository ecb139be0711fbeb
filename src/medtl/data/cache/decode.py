"""The one decode: an image file becomes its resized uint8 rows, its original size and its
duplicate hashes, all from one :func:`medtl.data.readers.io.read_image` call (:func:`decode_item`).

:class:`SampleCache` holds the rows of a data set: in RAM (``data.cache=memory``), over a
memory-mapped file (``disk``, :mod:`medtl.data.cache.disk`) or decoded on access
(``none``, :func:`streamed`); :func:`fill` decodes a data set on worker processes or
threads, in order (:mod:`medtl.utils.parallel`). :mod:`medtl.data.cache.modes` picks the mode and
reuses decodes.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medtl.data.dedup import hashes_of
from medtl.data.layouts import Sample
from medtl.data.readers import io
from medtl.data.transforms import resize_pair
from medtl.utils.parallel import imap_ordered, map_ordered, progress


@dataclass(frozen=True)
class DecodeSpec:
    """How samples are decoded: target size, whether masks are read, the DICOM windows."""

    size: int
    with_masks: bool
    window: tuple[float, float] | None = None
    fallback: tuple[float, float] | None = None
    masks: Any = None  # medtl.data.masks.scheme.MaskScheme: label maps read as label indices


@dataclass
class Item:
    """What one decode of a sample gives."""

    image: torch.Tensor  # uint8 (3, S, S)
    mask: torch.Tensor | None  # uint8 (1, S, S)
    shape: tuple[int, int]  # original (H, W)
    hashes: tuple  # exact sha1, pHash, window hashes (medtl.data.duplicates.hashes)


def decode_item(sample: Sample, spec: DecodeSpec) -> Item:
    """Decode ``sample`` once: resized image and mask, original size, duplicate hashes."""
    image = io.read_image(sample.image, spec.window, spec.fallback)
    mask = io.read_mask(sample.masks, image.shape[:2], spec.masks) if spec.with_masks else None
    img_t, mask_t = resize_pair(image, mask, spec.size)
    return Item(img_t, mask_t, (int(image.shape[0]), int(image.shape[1])), hashes_of(image))


def _decoded(
    sample: Sample, spec: DecodeSpec, rows: bool
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int], tuple[str, int]]:
    """:func:`decode_item` as numpy rows (None without ``rows``), size and hashes: what a
    worker process hands back."""
    item = decode_item(sample, spec)
    mask = item.mask.numpy() if rows and item.mask is not None else None
    return (item.image.numpy() if rows else None), mask, item.shape, item.hashes


def fill(
    samples: Sequence[Sample],
    spec: DecodeSpec,
    images: torch.Tensor | None,
    masks: torch.Tensor | None,
) -> tuple[list[tuple[int, int]], list[tuple[str, int]]]:
    """Decode every sample (on forked worker processes where
    :func:`medtl.utils.parallel.fork_is_safe`, else threads; in order) into rows of
    ``images``/``masks`` (either may be None: then only sizes and hashes are kept);
    returns ``(sizes, hashes)``."""
    sizes: list[tuple[int, int]] = []
    hashes: list[tuple[str, int]] = []
    rows = images is not None or masks is not None
    one = functools.partial(_decoded, spec=spec, rows=rows)
    decoded = imap_ordered(one, samples, processes=True)
    # numpy copies rows in this thread; a torch copy would wake its OpenMP pool, whose
    # spinning threads take the cores from the workers and slow the whole fill down
    image_rows = None if images is None else images.numpy()
    mask_rows = None if masks is None else masks.numpy()
    for i, (image, mask, shape, hashed) in enumerate(
        progress(decoded, total=len(samples), desc="decoding images")
    ):
        if image_rows is not None:
            image_rows[i] = image
        if mask_rows is not None:
            mask_rows[i] = mask
        sizes.append(shape)
        hashes.append(hashed)
    return sizes, hashes


class SampleCache:
    """Decoded, resized samples as uint8 rows, with each image's original size and hashes.

    ``images`` is ``(N, 3, S, S)`` uint8 (a tensor in RAM, a tensor over a memory-mapped
    file, or rows decoded on access), ``masks`` ``(N, 1, S, S)`` or None; ``sizes`` holds
    each image's original ``(H, W)`` for mapping predictions back; ``hashes`` the exact and
    perceptual hash of each full-size image (:mod:`medtl.data.dedup`), from the same decode.
    Constructed directly it decodes ``samples`` into memory; :func:`cached_samples` picks the
    mode and reuses earlier decodes.
    """

    mode = "memory"

    def __init__(
        self,
        samples: Sequence[Sample],
        size: int,
        with_masks: bool,
        window: tuple[float, float] | None = None,
        fallback: tuple[float, float] | None = None,
        masks: Any = None,
    ):
        self.samples = list(samples)
        self.size = size
        n = len(self.samples)
        self.images: Any = torch.empty((n, 3, size, size), dtype=torch.uint8)
        self.masks: Any = torch.empty((n, 1, size, size), dtype=torch.uint8) if with_masks else None
        spec = DecodeSpec(size, with_masks, window, fallback, masks)
        self.sizes, self.hashes = fill(self.samples, spec, self.images, self.masks)

    @classmethod
    def of(
        cls,
        samples: Sequence[Sample],
        size: int,
        images: Any,
        masks: Any,
        sizes: list[tuple[int, int]],
        hashes: list[tuple[str, int]],
        mode: str,
    ) -> SampleCache:
        """A cache over rows that exist already (memory-mapped or streamed)."""
        self = cls.__new__(cls)
        self.samples, self.size, self.images, self.masks = list(samples), size, images, masks
        self.sizes, self.hashes, self.mode = list(sizes), list(hashes), mode
        return self

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def nbytes(self) -> int:
        """Bytes of decoded arrays held in RAM (0 for the disk and streaming modes)."""
        if self.mode != "memory":
            return 0
        return self.images.numel() + (self.masks.numel() if self.masks is not None else 0)

    def with_samples(self, samples: Sequence[Sample]) -> SampleCache:
        """The same rows for ``samples`` (the same files, e.g. with groups assigned since)."""
        out = copy.copy(self)
        out.samples = list(samples)
        return out


class _Stream:
    """Rows decoded on access (``data.cache=none``); the last row is kept, so that an
    item's image and mask (read one after the other) cost one decode."""

    def __init__(self, samples: Sequence[Sample], spec: DecodeSpec):
        self.samples, self.spec = list(samples), spec
        self._last: tuple[int, Item] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # for processes that get the dataset pickled
        return {"samples": self.samples, "spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["samples"], state["spec"])

    def item(self, row: int) -> Item:
        with self._lock:
            last = self._last
        if last is not None and last[0] == row:
            return last[1]
        got = decode_item(self.samples[row], self.spec)
        with self._lock:
            self._last = (row, got)
        return got

    def rows(self, index: Any) -> list[int]:
        if isinstance(index, slice):
            return list(range(len(self.samples)))[index]
        if isinstance(index, torch.Tensor):
            index = index.tolist()
        return [int(i) for i in index]


class _StreamView:
    """``images`` or ``masks`` of a streamed cache: ``view[i]`` decodes row ``i``."""

    def __init__(self, stream: _Stream, part: str):
        self.stream, self.part = stream, part
        channels = 3 if part == "image" else 1
        self.shape = (len(stream.samples), channels, stream.spec.size, stream.spec.size)

    def __len__(self) -> int:
        return self.shape[0]

    def numel(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2] * self.shape[3]

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, int | np.integer) or (
            isinstance(index, torch.Tensor) and index.ndim == 0
        ):
            return getattr(self.stream.item(int(index)), self.part)
        rows = self.stream.rows(index)
        items = map_ordered(self.stream.item, rows)
        if not items:
            return torch.empty((0, *self.shape[1:]), dtype=torch.uint8)
        return torch.stack([getattr(it, self.part) for it in items])


def streamed(samples: Sequence[Sample], spec: DecodeSpec) -> SampleCache:
    """``data.cache=none``: one pass for sizes and hashes, then rows decoded on access."""
    sizes, hashes = fill(samples, spec, None, None)
    stream = _Stream(samples, spec)
    masks = _StreamView(stream, "mask") if spec.with_masks else None
    return SampleCache.of(
        samples, spec.size, _StreamView(stream, "image"), masks, sizes, hashes, "none"
    )


def read_originals(
    samples: Sequence[Sample],
    rows: Sequence[int],
    window: tuple[float, float] | None = None,
    fallback: tuple[float, float] | None = None,
    masks: Any = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{row: (uint8 (H, W, 3) image, bool (H, W) mask)}`` at the original size, decoded on
    the decoding threads (evaluation maps predictions back to these)."""

    def one(row: int) -> tuple[np.ndarray, np.ndarray]:
        image = io.read_image(samples[row].image, window, fallback)
        return image, io.read_mask(samples[row].masks, image.shape[:2], masks)

    return dict(zip(rows, map_ordered(one, rows), strict=True))
