"""Duplicate groups for splitting: verified links joined with the patient ids a data set gives.

Training (:func:`medtl.data.pipeline.load_samples`, ``data.group_duplicates``) puts every
group in one split. Patient ids from DICOM, names, volumes or a CSV come first: a link
between two samples filed under *different* patient ids does not merge those patients
(it is reported by ``medtl audit`` and the leak check instead), so a chain of look-alike
images can never tie a data set's patients into one group.

Example::

    >>> groups = duplicate_groups(discover(root).samples)   # doctest: +SKIP
    >>> samples = assign_groups(discover(root).samples)     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from medtl.data.duplicates.hashes import image_hashes
from medtl.data.duplicates.links import (
    MAX_GROUP,
    Link,
    UnionFind,
    find_links,
    link_groups,
    oversized,
    warn_oversized,
)
from medtl.data.layouts import Sample

log = logging.getLogger("medtl")


def duplicate_groups(
    samples: Sequence[Sample],
    hashes: Sequence[tuple] | None = None,
    links: Sequence[Link] | None = None,
) -> list[list[int]]:
    """Groups of sample indices joined by verified links (same image or likely the same
    patient): connected components, singletons omitted, each sorted, ordered by first
    index. Pass ``hashes`` (:func:`image_hashes`) or ``links`` (:func:`find_links`) to
    skip that work."""
    if links is None:
        links = find_links(samples, image_hashes(samples) if hashes is None else hashes)
    return link_groups(len(samples), links)


def assign_groups(
    samples: Sequence[Sample],
    hashes: Sequence[tuple] | None = None,
    links: Sequence[Link] | None = None,
) -> list[Sample]:
    """Samples with ``group`` set so that linked samples and same-group samples share one id.

    A user-given group (a patient id) and the verified links are unioned, except a link
    between two different patient ids (counted in the log). The new id is the user group
    when the component has one (several joined by ``+``, sorted), else ``dup-<sha1 prefix>``
    of its first image (``dup-<index>`` when only ``links`` are given); samples tied to nothing keep ``group=None``. Groups larger than
    :data:`medtl.data.duplicates.links.MAX_GROUP` are logged with their weakest link.
    """
    if hashes is None and links is None:
        hashes = image_hashes(samples)
    if links is None:
        links = find_links(samples, hashes)
    uf = UnionFind(len(samples))
    crossing = 0
    for x in links:
        gi, gj = samples[x.i].group, samples[x.j].group
        if gi is not None and gj is not None and gi != gj:
            crossing += 1
            continue
        uf.union(x.i, x.j)
    by_user: dict[str, int] = {}
    for i, s in enumerate(samples):
        if s.group is not None:
            uf.union(by_user.setdefault(s.group, i), i)
    if crossing:
        log.info(
            f"{crossing} duplicate link(s) join images of different patient ids; the ids "
            "are kept apart ('medtl audit' lists the pairs)"
        )
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(samples)):
        members[uf.find(i)].append(i)
    chained = [c for c in members.values() if _units(c, samples) > MAX_GROUP]
    warn_oversized(oversized(chained, links), samples)
    out = list(samples)
    for comp in members.values():
        user = sorted({samples[i].group for i in comp if samples[i].group is not None})
        key = hashes[comp[0]][0][:12] if hashes is not None else str(comp[0])
        gid = "+".join(user) if user else (f"dup-{key}" if len(comp) > 1 else None)
        for i in comp:
            if out[i].group != gid:
                out[i] = replace(out[i], group=gid)
    return out


def _units(component: Sequence[int], samples: Sequence[Sample]) -> int:
    """What duplicate links joined in ``component``: its patient ids (one unit each, however
    many images a patient has) plus its images without an id."""
    ids = {samples[i].group for i in component if samples[i].group is not None}
    return len(ids) + sum(1 for i in component if samples[i].group is None)
