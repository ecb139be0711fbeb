"""Leaks across a split: val/test images linked to a training image, and how.

medtl's own splits never leak (linked images stay on one side,
:mod:`medtl.data.duplicates.grouping`), but a data set's pre-made ``train/``/``test/``
folders can: a public MRI set ships 594 duplicate groups spanning them. Training finds
these images from the verified duplicate links (:func:`medtl.data.duplicates.links.find_links`
on the hashes its decode already computed), logs their number in train.log and writes
``RUN/leaks.json``, which names each leaked image's relation to the training side:
``same`` (the same image: a copy, re-crop, re-encode) or ``patient`` (likely the same
patient: a neighbouring slice, a registered sequence). Evaluation then reports the full
split and, beside it, the leak-free subset.

``data.premade_split`` decides what happens to them:

- ``keep`` (default): the split as given, with the warning and the leak-free number;
- ``drop_leaked``: the leaked val/test images are left out of val/test (not trained on);
- ``regroup``: they move to the training side with their duplicates (whole groups on
  one side); val/test keep only images without a duplicate in training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from medtl.data.duplicates.links import UnionFind, find_links, link_groups
from medtl.data.layouts import Sample
from medtl.utils.files import atomic_write_json
from medtl.utils.records import Shape, load_json

__all__ = [
    "LEAKS_FILE",
    "POLICIES",
    "apply_policy",
    "leak_relations",
    "leaked_images",
    "read_leaks",
    "write_leaks",
]

log = logging.getLogger("medtl")
LEAKS_FILE = "leaks.json"
POLICIES = ("keep", "drop_leaked", "regroup")
Splits = dict[str, list[int]]


def leak_relations(
    samples: Sequence[Sample], splits: Splits, hashes: Sequence[tuple]
) -> dict[str, dict[int, str]]:
    """Per held-out split (val, test): ``{index: relation}`` of its images linked (directly
    or through other images) to a training image; ``same`` when a chain of same-image
    links reaches the training side, else ``patient``."""
    train = set(splits.get("train", []))
    links = find_links(samples, hashes)
    same = UnionFind(len(samples))
    for x in links:
        if x.relation == "same":
            same.union(x.i, x.j)
    same_train = {same.find(i) for i in train}
    tied: set[int] = set()
    for group in link_groups(len(samples), links):
        if train.intersection(group):
            tied.update(group)
    return {
        name: {
            i: ("same" if same.find(i) in same_train else "patient")
            for i in splits.get(name, [])
            if i in tied
        }
        for name in ("val", "test")
    }


def leaked_images(
    samples: Sequence[Sample], splits: Splits, hashes: Sequence[tuple]
) -> dict[str, list[int]]:
    """Per held-out split (val, test), its images linked to a training image."""
    return {k: sorted(v) for k, v in leak_relations(samples, splits, hashes).items()}


def apply_policy(
    policy: str, samples: Sequence[Sample], splits: Splits, hashes: Sequence[tuple]
) -> Splits:
    """``splits`` after ``data.premade_split`` (see the module docstring)."""
    if policy == "keep":
        return splits
    leaked = leaked_images(samples, splits, hashes)
    out = {k: list(v) for k, v in splits.items()}
    for name, idx in leaked.items():
        gone = set(idx)
        out[name] = [i for i in out.get(name, []) if i not in gone]
        if policy == "regroup":
            out["train"] = sorted(out["train"] + idx)
    n = sum(len(v) for v in leaked.values())
    where = "moved to train" if policy == "regroup" else "left out"
    log.info(f"data.premade_split={policy}: {n} leaked val/test image(s) {where}")
    return out


def read_leaks(run: Path) -> dict[str, list[str]]:
    """``RUN/leaks.json`` as ``{split: [image, ...]}`` after checking its shape, the
    ``relations`` (image -> ``same``/``patient``) included (``{}`` without the file); a
    damaged file is one DataError line."""
    path = Path(run) / LEAKS_FILE
    if not path.is_file():
        return {}
    fix = "delete it; 'medtl train' writes it (or train the run again)"
    shape = Shape(path, fix)
    doc = shape.mapping(load_json(path, fix))
    relations = shape.mapping(doc.get("relations"), "relations", optional=True)
    for image, how in relations.items():
        if how not in ("same", "patient"):
            shape.fail(f"relations[{image!r}] is {how!r}, expected 'same' or 'patient'")
    skip = ("format", "relations")
    return {str(k): shape.texts(v, str(k), optional=True) for k, v in doc.items() if k not in skip}


def write_leaks(
    run: Path, samples: Sequence[Sample], splits: Splits, hashes: Sequence[tuple]
) -> dict[str, list[str]]:
    """Log how many val/test images are linked to train; write ``RUN/leaks.json``
    (``val``/``test``: the image paths; ``relations``: path -> ``same``/``patient``)."""
    rel = leak_relations(samples, splits, hashes)
    doc = {name: [str(samples[i].image) for i in sorted(r)] for name, r in rel.items()}
    relations = {str(samples[i].image): how for r in rel.values() for i, how in r.items()}
    atomic_write_json(run / LEAKS_FILE, {"format": "medtl-leaks-1", **doc, "relations": relations})
    parts = [f"{len(doc[n])} of {len(splits.get(n, []))} {n} images" for n in ("test", "val")]
    n_same = sum(how == "same" for how in relations.values())
    line = (
        f"leak check: {' and '.join(parts)} have a duplicate in train ({n_same} the same "
        f"image, {len(relations) - n_same} likely the same patient)"
    )
    if any(doc.values()):
        log.warning(
            line + "; evaluate reports the leak-free subset beside the full split "
            "(data.premade_split=drop_leaked|regroup removes them)"
        )
    else:
        log.info(line)
    return doc
