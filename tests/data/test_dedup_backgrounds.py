"""Slices on a black background (MRI): the noise test reads the slice, not the background;
a crop that is also a pHash neighbour is verified with its crop window."""

from __future__ import annotations

from pathlib import Path

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


def _eye(patient: int, size: int = 192) -> np.ndarray:
    """A fundus-like picture: a round field of view on black, a bright disc at about the same
    place for every patient, the patient's own vessels (random smooth curves) and noise."""
    import cv2

    rng = np.random.default_rng(500 + patient)
    y, x = np.mgrid[:size, :size] / size - 0.5
    img = 120 + 40 * (0.5 - np.hypot(x, y))  # illumination falls off from the centre
    cx, cy = 0.18 + rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02)
    img += 90 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.004)  # the optic disc
    vessels = np.zeros((size, size), np.uint8)
    for _ in range(8):  # vessels leave the disc in the patient's own directions
        pts = [((0.68 + cx) * size, (0.5 + cy) * size)]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            angle += rng.normal(0, 0.35)
            pts.append((pts[-1][0] + 8 * np.cos(angle), pts[-1][1] + 8 * np.sin(angle)))
        cv2.polylines(vessels, [np.int32(pts)], False, 1, thickness=2)
    img -= 50 * cv2.GaussianBlur(vessels.astype(np.float32), (0, 0), 0.8)
    img += rng.normal(0, 4, img.shape)
    img[np.hypot(x, y) >= 0.45] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def test_eyes_of_different_patients_are_never_linked_and_a_copy_is():
    from medtl.data.duplicates.links import find_links
    from medtl.data.layouts import Sample

    eyes = [_eye(p) for p in range(12)] + [_jpeg(_eye(3), 80)]
    samples = [Sample(Path(f"mem/{k}.png")) for k in range(len(eyes))]
    by_path = {s.image: a for s, a in zip(samples, eyes, strict=True)}
    links = find_links(samples, [hashes_of(a) for a in eyes], read=lambda s: by_path[s.image])
    assert [(x.i, x.j, x.relation) for x in links] == [(3, 12, "same")]
