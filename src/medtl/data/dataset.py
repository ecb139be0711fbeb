"""Torch datasets over decoded, resized, cached samples.

Every sample is decoded and resized once (:class:`medtl.data.cache.decode.SampleCache`, placed by
``data.cache``: :mod:`medtl.data.cache.modes`) to uint8 tensors, so epochs after the first never
touch PNG/JPEG decoding; augmentation runs on the cached tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from medtl.data.cache.decode import SampleCache
from medtl.data.layouts import Sample
from medtl.data.transforms import apply_augment, build_augment, to_float

__all__ = ["CachedDataset", "SampleCache", "class_counts", "label_indices"]


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
