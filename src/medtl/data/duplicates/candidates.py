"""Cheap candidate pairs from the hashes: exact copies, pHash, crop and rotation neighbours.

Thresholds favour recall; verification (:mod:`medtl.data.duplicates.verify`) removes the
false candidates. Measured on BUSI (780 images, 150 edited copies per edit): re-encoded
(JPEG 50-95), resized, brightness-shifted and annotated copies lie within 8 bits of their
original's pHash (:data:`PHASH_DISTANCE` is 12), copies rotated by up to 5 degrees within
12 bits for 90 % (20 at most); a 5-25 % crop moves the pHash by 20 bits (median) but its
full-frame hash lies within 4 bits (median; 6-8 at the 90th percentile, 10 at most) of
the nearest of the original's 125 window hashes, on BUSI and on 275 chest X-rays (60
crops each). In one standard pose (chest X-rays) other images' windows lie as near, so
the crop candidates are ranked by the sum of their three nearest windows' distances
(the nearest alone ties often): the :data:`WINDOW_NEIGHBOURS` best within
:data:`WINDOW_DISTANCE` bits held the original for 97.8 % of 550 crops of the 275 chest
X-rays (5 neighbours: 96.4 %; ranked by the nearest window alone: 95.6 and 93.5 %; BUSI:
100 %). Where every image shares one outline (fundus photographs: a round field of view
on black) the plain windows rank other eyes as near as the original; the rank then adds
the three nearest *edge* windows' distances (:func:`medtl.data.duplicates.hashes.edge_view`),
which read the vessels instead: with them the original was among the 8 for 30 and 29 of
30 crops of DRIVE's 40 fundus images (two draws; without them 24 and 24), as many brain MRI
and chest X-ray crops as before (28 and 30, 29 and 30 of 30), with the number of candidate
pairs within 2 % of before. The window handed to verification is the one nearest in
both. Copies rotated by up to 5 degrees move the full-frame hash by up to 20 bits; the
hashes of each image's thumbnail turned by +-3.5 degrees
(:data:`medtl.data.duplicates.hashes.ROTATIONS`) put them within :data:`ROTATED_DISTANCE`
bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medtl.data.duplicates.hashes import ROTATIONS, WINDOWS, _popcount, near_pairs

PHASH_DISTANCE = 12
"""Largest pHash distance (of 64 bits) proposed as a candidate."""
WINDOW_DISTANCE = 10
"""Largest distance between a full-frame hash and another image's window hash proposed."""
WINDOW_NEIGHBOURS = 8
"""Crop candidates per image: its nearest images by window distance (within the bound)."""
ROTATED_DISTANCE = 8
"""Largest distance between an image's rotated full-frame hashes and another's full-frame
hash proposed (rotated copies: 8 at most; among the 275 chest X-rays 62 pairs beyond the
pHash bound, among BUSI's 780 images none)."""
_BLOCK = 256  # rows of the rotated-hash distances computed at once (memory ~ 16 x n bytes each)


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
    for c in _crop_pairs(hashes) + _rotated_pairs(hashes):
        if hashes[c.i][0] != hashes[c.j][0]:
            had = found.setdefault((c.i, c.j), c)
            if had.window is None and c.window is not None:  # a pHash neighbour that is
                found[(c.i, c.j)] = c  # also a crop: verification needs the window
    return sorted(found.values(), key=lambda c: (c.i, c.j))


class _Windows:
    """One window-hash set of ``n`` images laid out for :func:`_crop_pairs`: a full-frame
    hash per image and the other windows' hashes, (W-1) x n, with preallocated buffers."""

    def __init__(self, rows: list[Sequence[int]]):
        wins = np.asarray(rows, dtype=np.uint64)  # (n, W)
        self.n = len(wins)
        self.full = wins[:, 0].copy()
        self.rest = np.ascontiguousarray(wins[:, 1:].T).ravel()
        self.xor, self.bits = np.empty_like(self.rest), np.empty(self.rest.shape, np.uint8)

    def distances(self, a: int) -> np.ndarray:
        """``(W-1, n)``: image ``a``'s full-frame hash against every image's windows."""
        np.bitwise_xor(self.rest, self.full[a], out=self.xor)
        return _popcount_into(self.xor, self.bits).reshape(-1, self.n)


def _crop_pairs(hashes: Sequence[tuple]) -> list[Candidate]:
    """Pairs where one image's full-frame hash is near another's window hash: the images
    within :data:`WINDOW_DISTANCE` bits, ranked by their three nearest windows' distances,
    plus their edge windows' where every image has them (the window then is the one
    nearest in both)."""
    have = [k for k, h in enumerate(hashes) if len(h) > 2 and _layout(h[2])]
    if len(have) < 2:
        return []
    plain = _Windows([hashes[k][2][: len(WINDOWS)] for k in have])
    with_edges = all(_layout(hashes[k][2]) == "edges" for k in have)
    edges = _Windows([hashes[k][2][-len(WINDOWS) :] for k in have]) if with_edges else None
    out = []
    for a in range(len(have)):  # one row at a time: preallocated n*W buffers
        dist = plain.distances(a)
        d = dist.min(axis=0)
        d[a] = 99
        close = np.flatnonzero(d <= WINDOW_DISTANCE)  # ranked by their 3 nearest windows
        near = dist[:, close]
        rank = _nearest3(near)
        if edges is not None:
            far = edges.distances(a)[:, close]
            rank += _nearest3(far)
            near = near + far
        for c in np.argsort(rank, kind="stable")[:WINDOW_NEIGHBOURS]:
            i, j = have[a], have[int(close[c])]  # i's full frame ~ window of j
            w = int(near[:, c].argmin()) + 1
            out.append(Candidate(min(i, j), max(i, j), window=w, i_in_j=i < j))
    return out


def _nearest3(dist: np.ndarray) -> np.ndarray:
    """Per column of ``(W-1, m)`` distances, the sum of its three smallest."""
    return np.partition(dist, 2, axis=0)[:3].sum(axis=0, dtype=np.int64)


def _popcount_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x, out=out)
    return _popcount(x)


def _layout(signature: Sequence[int]) -> str:
    """What a hash tuple's third item holds: ``"edges"`` (windows, rotated hashes, edge
    windows), ``"rotated"`` (windows, then rotated hashes), ``"windows"`` (windows only),
    ``""`` (another layout: none is read)."""
    if len(signature) == 2 * len(WINDOWS) + len(ROTATIONS):
        return "edges"
    if len(signature) == len(WINDOWS) + len(ROTATIONS):
        return "rotated"
    return "windows" if len(signature) == len(WINDOWS) else ""


def _rotated_pairs(hashes: Sequence[tuple]) -> list[Candidate]:
    """Pairs where one image's rotated full-frame hashes lie within
    :data:`ROTATED_DISTANCE` of the other's full-frame hash (copies rotated by a few
    degrees, which move every hash beyond the other bounds)."""
    turns = slice(len(WINDOWS), len(WINDOWS) + len(ROTATIONS))
    turned_in = ("rotated", "edges")
    have = [k for k, h in enumerate(hashes) if len(h) > 2 and _layout(h[2]) in turned_in]
    if len(have) < 2:
        return []
    sig = np.asarray([hashes[k][2][: turns.stop] for k in have], dtype=np.uint64)
    full, turned = sig[:, 0], sig[:, turns]  # (n,), (n, R)
    out = []
    for start in range(0, len(have), _BLOCK):
        rows = turned[start : start + _BLOCK]
        dist = _popcount(rows[:, :, None] ^ full[None, None, :]).min(axis=1)  # (rows, n)
        for r, b in zip(*np.nonzero(dist <= ROTATED_DISTANCE), strict=True):
            if start + r != b:
                i, j = sorted((have[start + int(r)], have[int(b)]))
                out.append(Candidate(i, j))
    return out
