"""The decoded-sample cache holds exactly what decoding + resizing gives."""

from __future__ import annotations

import torch

from medtl.data.dataset import SampleCache
from medtl.data.dedup import hashes_of
from medtl.data.layouts import discover
from medtl.data.readers.io import read_image, read_mask
from medtl.data.transforms import resize_pair


def test_cache_returns_exactly_the_decoded_bytes(phantoms):
    samples = discover(phantoms).samples
    cache = SampleCache(samples, 48, with_masks=True)
    for i, s in enumerate(samples):
        image = read_image(s.image)
        img, mask = resize_pair(image, read_mask(s.masks, image.shape[:2]), 48)
        assert torch.equal(cache.images[i], img) and torch.equal(cache.masks[i], mask)
        assert cache.sizes[i] == image.shape[:2]
        assert cache.hashes[i] == hashes_of(image)  # from the same decode
    assert cache.nbytes == len(samples) * 4 * 48 * 48
