"""Rotated copies: the thumbnail's turned hashes propose them, verification accepts them,
and patients of one pose stay apart."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medtl.data.duplicates.candidates import PHASH_DISTANCE, ROTATED_DISTANCE, candidate_pairs
from medtl.data.duplicates.hashes import ROTATIONS, WINDOWS, hashes_of
from medtl.data.duplicates.links import find_links
from medtl.data.duplicates.verify import verify, view_of
from medtl.data.layouts import Sample
from tests.data.test_dedup import anatomy, scan


def _turned(a: np.ndarray, degrees: float) -> np.ndarray:
    h, w = a.shape
    return cv2.warpAffine(a, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h))


def _bits(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def _patients() -> list[np.ndarray]:
    """Ten patients of one template shape in one pose, each with its own noise."""
    return [scan(anatomy(p, size=160), 40 + p) for p in range(10)]


def test_a_rotated_copy_beyond_the_phash_bound_is_proposed_and_verified() -> None:
    patients = _patients()
    copy = _turned(patients[5], -5.0)
    hashes = [hashes_of(x) for x in patients + [copy]]
    assert _bits(hashes[5][1], hashes[10][1]) == 18  # beyond the pHash bound
    assert 18 > PHASH_DISTANCE
    turned = min(_bits(hashes[10][1], t) for t in hashes[5][2][len(WINDOWS) :][: len(ROTATIONS)])
    assert turned <= ROTATED_DISTANCE
    assert (5, 10) in {(c.i, c.j) for c in candidate_pairs(hashes)}
    without = [(h[0], h[1], h[2][: len(WINDOWS)]) for h in hashes]  # a cache without them
    assert (5, 10) not in {(c.i, c.j) for c in candidate_pairs(without)}
    v = verify(view_of(patients[5]), view_of(copy))
    assert v.relation == "same" and v.method == "features" and v.similarity >= 0.8


def test_rotated_copies_link_to_their_own_patient_only() -> None:
    """Every patient and a copy of it turned by -5..5 degrees: each copy is linked to its
    original, and no two patients of the one pose are linked."""
    patients = _patients()
    angles = np.linspace(-5, 5, len(patients))
    images = patients + [_turned(a, d) for a, d in zip(patients, angles, strict=True)]
    samples = [Sample(Path(f"mem/{k}.png")) for k in range(len(images))]
    by_path = {s.image: a for s, a in zip(samples, images, strict=True)}
    links = find_links(samples, [hashes_of(a) for a in images], read=lambda s: by_path[s.image])
    pairs = {(x.i, x.j) for x in links if x.relation == "same"}
    assert pairs == {(k, k + 10) for k in range(10)}
    assert len(links) == 10


def test_the_signature_holds_the_windows_the_turned_hashes_then_the_edge_windows() -> None:
    a = scan(anatomy(1), 3)
    h = hashes_of(a)
    assert len(h[2]) == 2 * len(WINDOWS) + len(ROTATIONS) and h[2][0] == h[1]
    assert all(isinstance(x, int) for x in h[2])  # a disk cache's JSON keeps them
