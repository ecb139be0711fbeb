"""Cheap candidate pairs from the hashes: exact copies, pHash neighbours, crop neighbours.

Thresholds favour recall; verification (:mod:`medtl.data.duplicates.verify`) removes the
false candidates. Measured on BUSI (780 images, 150 edited copies per edit): re-encoded
(JPEG 50-95), resized, brightness-shifted and annotated copies lie within 8 bits of their
original's pHash (:data:`PHASH_DISTANCE` is 12), copies rotated by up to 5 degrees within
12 bits for 90 % (18 at most); a 5-25 % crop moves the pHash by 20 bits (median) but its
full-frame hash lies within 4 bits (median; 6-8 at the 90th percentile, 10 at most) of
the nearest of the original's 125 window hashes, on BUSI and on 275 chest X-rays (60
crops each). In one standard pose (chest X-rays) other images' windows lie as near, so
the crop candidates are ranked: the nearest :data:`WINDOW_NEIGHBOURS` images within
:data:`WINDOW_DISTANCE` bits hold the original for 95 % of the crops (3: 92 %, 8: 97 %;
BUSI: 98-100 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medtl.data.duplicates.hashes import WINDOWS, _popcount, near_pairs

PHASH_DISTANCE = 12
"""Largest pHash distance (of 64 bits) proposed as a candidate."""
WINDOW_DISTANCE = 10
"""Largest distance between a full-frame hash and another image's window hash proposed."""
WINDOW_NEIGHBOURS = 5
"""Crop candidates per image: its nearest images by window distance (within the bound)."""


@dataclass(frozen=True)
class Candidate:
    """Pair ``i < j`` to verify; ``window``: index of the matching window (crop
    candidates, else None), of ``j`` when ``i_in_j`` else of ``i``; ``exact``: equal pixels."""

    i: int
    j: int
    exact: bool = False
    window: int | None = None
    i_in_j: bool = True


def candidate_pairs(hashes: Sequence[tuple]) -> list[Candidate]:
    """All candidate pairs of ``hashes`` (:func:`medtl.data.duplicates.hashes.hashes_of`
    tuples), each pair once, exact copies as a star from the first copy."""
    found: dict[tuple[int, int], Candidate] = {}
    first: dict[str, int] = {}
    for k, h in enumerate(hashes):
        f = first.setdefault(h[0], k)
        if f != k:
            found[(f, k)] = Candidate(f, k, exact=True)
    for i, j in near_pairs([h[1] for h in hashes], PHASH_DISTANCE):
        if hashes[i][0] != hashes[j][0]:  # copies of one image: the star holds them
            found.setdefault((int(i), int(j)), Candidate(int(i), int(j)))
    for c in _crop_pairs(hashes):
        if hashes[c.i][0] != hashes[c.j][0]:
            found.setdefault((c.i, c.j), c)
    return sorted(found.values(), key=lambda c: (c.i, c.j))


def _crop_pairs(hashes: Sequence[tuple]) -> list[Candidate]:
    """Pairs where one image's full-frame hash is near another's window hash."""
    have = [k for k, h in enumerate(hashes) if len(h) > 2 and len(h[2]) == len(WINDOWS)]
    if len(have) < 2:
        return []
    wins = np.asarray([hashes[k][2] for k in have], dtype=np.uint64)  # (n, W)
    full, rest = wins[:, 0].copy(), np.ascontiguousarray(wins[:, 1:].T).ravel()  # (W-1) x n
    xor, bits = np.empty_like(rest), np.empty(rest.shape, np.uint8)
    out = []
    for a in range(len(have)):  # one row at a time: two preallocated n*W buffers
        np.bitwise_xor(rest, full[a], out=xor)
        dist = _popcount_into(xor, bits).reshape(-1, len(have))  # (W-1, n)
        d = dist.min(axis=0).astype(np.int64)
        d[a] = 99
        near = np.argsort(d, kind="stable")[:WINDOW_NEIGHBOURS]
        for b in near[d[near] <= WINDOW_DISTANCE]:
            i, j = have[a], have[int(b)]  # i's full frame ~ window of j
            w = int(dist[:, b].argmin()) + 1
            out.append(Candidate(min(i, j), max(i, j), window=w, i_in_j=i < j))
    return out


def _popcount_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x, out=out)
    return _popcount(x)
