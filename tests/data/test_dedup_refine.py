"""Sub-pixel refinement of an alignment (ECC) before the noise test.

A copy turned by a few degrees is alike its original as it is (the band-passed views
correlate) but its noise no longer lines up pixel for pixel, and a keypoint fit (RANSAC,
3 px tolerance) is too coarse for it to line up again. Fundus-like phantoms show it: every
copy turned by 2-5 degrees fails the noise test after the keypoint fit and passes after
the refinement, and no two eyes are called one acquisition."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import medtl.data.duplicates.verify as verification
from medtl.data.duplicates.verify import verify, view_of
from tests.data.test_dedup_fov import eye
from tests.data.test_dedup_rotations import _turned

ANGLES = (-5.0, -4.0, -3.0, -2.0, 2.0, 3.0, 4.0, 5.0)


def _eyes_and_turned() -> tuple[list[np.ndarray], list[np.ndarray]]:
    eyes = [eye(s) for s in range(len(ANGLES))]
    return eyes, [_turned(a, d) for a, d in zip(eyes, ANGLES, strict=True)]


def test_turned_copies_are_the_same_image_once_the_alignment_is_refined() -> None:
    eyes, turned = _eyes_and_turned()
    for a, c in zip(eyes, turned, strict=True):
        v = verify(view_of(a), view_of(c))
        assert v.relation == "same" and v.method == "refined"
        assert v.similarity >= 0.98 and v.noise >= 0.5  # the noise lines up again
    for k, c in enumerate(turned):  # another eye of the same field of view: never one image
        assert verify(view_of(eyes[(k + 1) % len(eyes)]), view_of(c)).relation != "same"


def test_without_the_refinement_the_turned_copies_fail_the_noise_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verification, "REFINE_FROM", 2.0)  # never refine
    eyes, turned = _eyes_and_turned()
    verdicts = [verify(view_of(a), view_of(c)) for a, c in zip(eyes, turned, strict=True)]
    assert not any(v.relation == "same" for v in verdicts)
    assert all(v.noise < verification.RESIDUAL_NCC for v in verdicts if v.relation != "same")


def test_a_window_start_off_by_pixels_is_refined_into_the_crop() -> None:
    """A crop's hash window is a coarse guess (its band-pass NCC near 0 when 3 px off);
    refined from it, the crop lines up with its original."""
    a = eye(3)
    view = view_of(a)
    crop = view_of(a[14:, 12:])  # the lower right, 11 % and 9 % off two sides
    guess = np.array([[1.0, 0.0, -9.0], [0.0, 1.0, -17.0]])  # 3 px off the true map
    as_guessed = verification._warp(crop, view, guess, cv2.INTER_AREA)
    assert as_guessed is not None
    assert verification._tiles(crop.band(), verification._blur(as_guessed[1]), as_guessed[2]) < 0.2
    similarity, pair = verification._refine(crop, view, guess)
    assert similarity >= 0.95 and pair is not None
    assert verification._residual(crop, view, pair) >= verification.RESIDUAL_NCC
