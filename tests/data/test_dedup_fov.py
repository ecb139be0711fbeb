"""Crops where every image shares one outline: fundus-like phantoms (the same round field
of view on black, each eye its own faint vessels). The plain window hashes see the field of
view, so other eyes' windows lie as near to a crop as its original's; the edge windows see
the vessels and bring the original among the crop's candidates."""

from __future__ import annotations

import cv2
import numpy as np

from medtl.data.duplicates.candidates import candidate_pairs
from medtl.data.duplicates.hashes import ROTATIONS, WINDOWS, hashes_of

SIZE = 128


def eye(seed: int) -> np.ndarray:
    """A round field of view on black, shaded, with 12 faint random vessels and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIZE, :SIZE] - SIZE / 2
    r = np.hypot(x, y) / (SIZE * 0.45)
    vessels = np.zeros((SIZE, SIZE), np.float32)
    for _ in range(12):
        start = rng.uniform(SIZE * 0.25, SIZE * 0.75, 2)
        pts = np.cumsum(rng.normal(0, 4, (30, 2)), axis=0) + start
        cv2.polylines(vessels, [pts.astype(np.int32)], False, 1.0, 1)
    img = 150 - 40 * r**2 - 20 * vessels + rng.normal(0, 2, r.shape)
    img[r >= 1] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def cropped(a: np.ndarray, frac: float) -> np.ndarray:
    """The lower-right part of ``a`` without ``frac`` of each side, resized back."""
    c = int(SIZE * frac)
    return cv2.resize(a[c:, c:], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def test_edge_windows_propose_the_original_of_a_crop_in_one_field_of_view() -> None:
    eyes = [eye(s) for s in range(20)]
    crops = [cropped(a, 0.1 + 0.01 * (k % 10)) for k, a in enumerate(eyes)]
    base = [hashes_of(a) for a in eyes]
    found = plain = 0
    for k, c in enumerate(crops):
        hashes = base + [hashes_of(c)]
        found += (k, 20) in {(p.i, p.j) for p in candidate_pairs(hashes)}
        without = [(h[0], h[1], h[2][: len(WINDOWS) + len(ROTATIONS)]) for h in hashes]
        plain += (k, 20) in {(p.i, p.j) for p in candidate_pairs(without)}
    assert found == 20  # with the edge windows, every original is a candidate
    assert plain <= 16  # without them (an older cache's hashes) several are not
