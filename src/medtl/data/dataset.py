"""Torch datasets over decoded, resized, cached samples.

Every sample is decoded and resized once (``SampleCache``) to uint8 tensors, so epochs after
the first never touch PNG/JPEG decoding; augmentation runs on the cached tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from medtl.data.io import read_image, read_mask
from medtl.data.layouts import Sample
from medtl.data.transforms import apply_augment, build_augment, resize_pair, to_float


def load_sample(
    sample: Sample,
    size: int,
    with_mask: bool,
    window: tuple[float, float] | None = None,
    fallback: tuple[float, float] | None = None,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor | None]:
    """Decode and resize one sample -> (full-size uint8 image, uint8 (3,S,S), uint8 mask (1,S,S) or None).

    ``window`` / ``fallback``: the DICOM/volume windows (:func:`medtl.data.io.read_image`)."""
    image = read_image(sample.image, window, fallback)
    mask = read_mask(sample.masks, image.shape[:2]) if with_mask else None
    img_t, mask_t = resize_pair(image, mask, size)
    return image, img_t, mask_t


class SampleCache:
    """Decoded, resized samples held in memory as uint8 tensors (decode once, reuse).

    ``images`` is one ``(N, 3, S, S)`` uint8 tensor, ``masks`` ``(N, 1, S, S)`` or None;
    ``sizes`` holds each image's original ``(H, W)`` for mapping predictions back;
    ``hashes`` (when ``with_hashes``) the exact and perceptual hash of each full-size image,
    computed during the same decode so duplicate grouping costs no second decode.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        size: int,
        with_masks: bool,
        with_hashes: bool = False,
        window: tuple[float, float] | None = None,
        fallback: tuple[float, float] | None = None,
    ):
        from medtl.data.dedup import hashes_of

        self.samples = list(samples)
        self.size = size
        n = len(self.samples)
        self.images = torch.empty((n, 3, size, size), dtype=torch.uint8)
        self.masks = torch.empty((n, 1, size, size), dtype=torch.uint8) if with_masks else None
        self.sizes: list[tuple[int, int]] = []
        self.hashes: list[tuple[str, int]] = []
        for i, s in enumerate(self.samples):
            full, img, mask = load_sample(s, size, with_masks, window, fallback)
            self.images[i] = img
            if self.masks is not None:
                self.masks[i] = mask
            self.sizes.append((full.shape[0], full.shape[1]))
            if with_hashes:
                self.hashes.append(hashes_of(full))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def nbytes(self) -> int:
        return self.images.numel() + (self.masks.numel() if self.masks is not None else 0)


class CachedDataset(TorchDataset):
    """Items ``(image float (3,S,S) in [0,1], mask float (1,S,S), label int, cache row)``.

    ``indices`` select rows of the shared cache (train/val/test views share memory).
    Label is -1 when the task has no classes; the mask is all zeros when masks are absent.
    """

    def __init__(
        self,
        cache: SampleCache,
        indices: Sequence[int],
        labels: Sequence[int] | None = None,
        augment: str = "none",
    ):
        self.cache = cache
        self.indices = list(indices)
        self.labels = list(labels) if labels is not None else None
        self.augment = build_augment(augment)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        # i >= len(self) is distributed-evaluation padding (see data.samplers): the item of
        # i - len(self), returned with index -1 so that metrics skip it
        pad = i >= len(self.indices)
        row = self.indices[i - len(self.indices) if pad else i]
        image = self.cache.images[row]
        mask = self.cache.masks[row] if self.cache.masks is not None else None
        image, mask = apply_augment(self.augment, image, mask)
        x = to_float(image)
        y = mask.float() if mask is not None else torch.zeros((1, *x.shape[1:]))
        label = self.labels[row] if self.labels is not None else -1
        return x, y, label, -1 if pad else row


def label_indices(samples: Sequence[Sample], classes: Sequence[str]) -> list[int]:
    """Class index per sample (-1 when the sample has no label)."""
    lookup = {c: i for i, c in enumerate(classes)}
    return [lookup.get(s.label, -1) if s.label is not None else -1 for s in samples]


def class_counts(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """How many samples carry each class index."""
    return np.bincount([lab for lab in labels if lab >= 0], minlength=n_classes)
