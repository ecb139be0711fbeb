"""Verified duplicate links between samples, their groups, and the chaining guard.

:func:`find_links` runs both stages: candidate pairs from the hashes
(:mod:`medtl.data.duplicates.candidates`), then each pair verified on the pixels
(:mod:`medtl.data.duplicates.verify`) on forked worker processes (threads where forking
is unsafe). Each pair is compared on
the <= 256 px grey views of its images: those the caller kept from its one decode (the
audit does), else only the images in some candidate pair are read again, so a data set
without near-duplicates costs the hashes only. A :class:`Link` says which relation holds:

- ``same``: one acquisition (an exact copy, or re-cropped, re-encoded, resized,
  brightness-shifted or annotated);
- ``patient``: likely the same patient (pixel-registered images whose edges coincide:
  neighbouring slices, registered sequences of one slice).

Pairs verified as neither are not links. Groups are connected components of the links
(:func:`link_groups`); :func:`oversized` names the groups larger than
:data:`MAX_GROUP` with their weakest links, so a chain never merges a data set silently.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from medtl.data.duplicates.candidates import Candidate, candidate_pairs
from medtl.data.duplicates.verify import ORB_MIN_SIDE, View, verify, view_of
from medtl.data.layouts import Sample
from medtl.data.readers import io
from medtl.utils.parallel import imap_ordered, map_ordered

log = logging.getLogger("medtl")

MAX_GROUP = 10
"""Duplicate groups with more members are reported with their weakest links."""
RELATIONS = {"same": "the same image", "patient": "likely the same patient"}


@dataclass(frozen=True)
class Link:
    """A verified pair ``i < j``: ``relation`` (``same``/``patient``), ``kind`` (``exact``
    pixels or ``near``), ``similarity`` (NCC of the aligned views, 1.0 for exact) and the
    alignment ``method`` that gave it."""

    i: int
    j: int
    relation: str
    kind: str
    similarity: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


class UnionFind:
    """Disjoint sets over ``0..n-1`` (path halving; a set's root is its smallest member)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        """The root of ``i``'s set."""
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        """Join the sets of ``i`` and ``j``."""
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def groups(self) -> list[list[int]]:
        """Components with more than one member, each sorted, ordered by first member."""
        comps: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            comps[self.find(i)].append(i)
        return sorted((c for c in comps.values() if len(c) > 1), key=lambda c: c[0])


def _judge(c: Candidate, views: dict[int, View]) -> Link | None:
    a, b = views[c.i], views[c.j]
    if c.exact:
        return Link(c.i, c.j, "same", "exact", 1.0, "exact") if a.informative else None
    v = verify(a, b, c.window, c.i_in_j)
    if not v.relation:
        return None
    return Link(c.i, c.j, v.relation, "near", v.similarity, v.method)


def find_links(
    samples: Sequence[Sample],
    hashes: Sequence[tuple],
    read: Callable[[Sample], np.ndarray] | None = None,
    views: Sequence[View | None] | None = None,
) -> list[Link]:
    """Verified links among ``samples`` (``hashes`` from
    :func:`medtl.data.duplicates.hashes.hashes_of`, None for an unreadable image), sorted
    by ``(i, j)``. ``views``: per sample its :func:`~medtl.data.duplicates.verify.view_of`
    kept from the decode that hashed it (None where missing); an image without one is
    decoded again by ``read`` (default :func:`medtl.data.readers.io.read_image`)."""
    if len(hashes) != len(samples):
        raise ValueError(f"{len(hashes)} hashes for {len(samples)} samples")
    key = (tuple(str(s.image) for s in samples), tuple(h and h[:2] for h in hashes), read)
    if key not in _RECENT:
        _RECENT[key] = _find(samples, hashes, read, views)
        while len(_RECENT) > 2:  # grouping and the leak check ask for the same data set
            _RECENT.pop(next(iter(_RECENT)))
    return list(_RECENT[key])


_RECENT: dict[tuple, list[Link]] = {}


def _find(
    samples: Sequence[Sample],
    hashes: Sequence[tuple],
    read: Callable[[Sample], np.ndarray] | None,
    kept: Sequence[View | None] | None,
) -> list[Link]:
    ok = [k for k, h in enumerate(hashes) if h is not None]
    cands = [
        Candidate(ok[c.i], ok[c.j], c.exact, c.window, c.i_in_j)
        for c in candidate_pairs([hashes[k] for k in ok])
    ]
    if not cands:
        return []
    reader = read or (lambda s: io.read_image(s.image))
    involved = sorted({c.i for c in cands} | {c.j for c in cands})
    views = {k: kept[k] for k in involved if kept is not None and kept[k] is not None}
    missing = [k for k in involved if k not in views]
    views.update(
        zip(missing, map_ordered(lambda k: view_of(reader(samples[k])), missing), strict=True)
    )
    _SHARED.update(views)  # forked workers inherit them: only indices and results travel
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # workers inherit it: OpenCV inline, no pool per worker on full cores
    try:  # keypoints once per view, then the pairs (else each worker finds its views' own)
        keys = [k for k, v in views.items() if v.informative and min(v.grey.shape) >= ORB_MIN_SIDE]
        for k, f in zip(keys, imap_ordered(_features_shared, keys, processes=True), strict=True):
            views[k]._features = f
        judged = list(imap_ordered(_judge_shared, cands, processes=True))
    finally:
        _SHARED.clear()
        cv2.setNumThreads(threads)
    return [link for link in judged if link is not None]


_SHARED: dict[int, View] = {}
"""The views of the pairs being verified, while :func:`_find` runs them on its workers."""


def _judge_shared(c: Candidate) -> Link | None:
    return _judge(c, _SHARED)


def _features_shared(k: int) -> tuple:
    return _SHARED[k].features()


def link_groups(n: int, links: Sequence[Link]) -> list[list[int]]:
    """Connected components (more than one member) of ``links`` over ``n`` samples."""
    uf = UnionFind(n)
    for link in links:
        uf.union(link.i, link.j)
    return uf.groups()


def oversized(groups: Sequence[list[int]], links: Sequence[Link]) -> list[dict[str, Any]]:
    """Groups larger than :data:`MAX_GROUP`: ``members`` (indices), ``size`` and the three
    ``weakest`` links (lowest similarity) that hold them together."""
    out = []
    for g in groups:
        if len(g) <= MAX_GROUP:
            continue
        inside = set(g)
        held = sorted((x for x in links if x.i in inside), key=lambda x: x.similarity)
        out.append({"members": g, "size": len(g), "weakest": [x.to_dict() for x in held[:3]]})
    return out


def warn_oversized(big: Sequence[dict[str, Any]], samples: Sequence[Sample]) -> None:
    """One warning line per oversized group (``train.log``), naming its weakest link."""
    for g in big:
        if not g["weakest"]:  # held by patient ids alone: no duplicate link to name
            continue
        w = g["weakest"][0]
        log.warning(
            f"duplicate group of {g['size']} images (more than {MAX_GROUP}; e.g. "
            f"{samples[g['members'][0]].image}); weakest link {samples[w['i']].image} ~ "
            f"{samples[w['j']].image} ({w['relation']}, similarity {w['similarity']:.2f}); "
            "check it with 'medtl audit' or set data.group_duplicates=false"
        )
