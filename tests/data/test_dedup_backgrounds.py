"""Slices on a black background (MRI): the noise test reads the slice, not the background;
a crop that is also a pHash neighbour is verified with its crop window."""

from __future__ import annotations

import numpy as np
import pytest

import medtl.data.duplicates.verify as verify_module
from medtl.data.duplicates.candidates import PHASH_DISTANCE, candidate_pairs
from medtl.data.duplicates.hashes import hashes_of
from medtl.data.duplicates.verify import verify, view_of
from tests.data.test_dedup import _jpeg, anatomy, scan


def _on_black(a: np.ndarray) -> np.ndarray:
    """``a`` with everything outside a centred ellipse (a third of the image) set to 0."""
    h, w = a.shape
    y, x = np.mgrid[:h, :w] / np.array([h, w])[:, None, None] - 0.5
    out = a.copy()
    out[(x / 0.3) ** 2 + (y / 0.36) ** 2 >= 1] = 0
    return out


def test_two_acquisitions_of_one_slice_on_black_are_not_the_same_image(monkeypatch) -> None:
    body = anatomy(3, size=192)
    first, second = _on_black(scan(body, 1)), _on_black(scan(body, 2))
    assert (first == 0).mean() > 0.6  # most pixels are background
    assert verify(view_of(first), view_of(second)).relation != "same"
    copy = verify(view_of(first), view_of(_jpeg(first, 85)))
    assert copy.relation == "same" and copy.noise >= verify_module.RESIDUAL_NCC
    # read on the flatter half of all pixels, the noise test sees only background
    monkeypatch.setattr(verify_module, "_CONSTANT_GRAD", -1.0)
    assert verify(view_of(first), view_of(second)).relation == "same"


def test_a_crop_that_is_also_a_phash_neighbour_keeps_its_window() -> None:
    image = scan(anatomy(5, size=192), 7)
    crop = image[10:182, 10:182]  # 10 % of each side
    hashes = [hashes_of(image), hashes_of(crop)]
    assert bin(hashes[0][1] ^ hashes[1][1]).count("1") <= PHASH_DISTANCE  # a pHash pair too
    (pair,) = candidate_pairs(hashes)
    assert pair.window is not None and not pair.i_in_j  # crop (j) lies in a window of i
    v = verify(view_of(image), view_of(crop), pair.window, pair.i_in_j)
    assert v.relation == "same" and v.method == "window"


@pytest.mark.parametrize("value", [0, 255])
def test_a_constant_slice_is_still_never_linked(value: int) -> None:
    flat = np.full((96, 96), value, np.uint8)
    assert verify(view_of(flat), view_of(flat.copy())).relation == ""
