"""Leaks across a split: val/test images with an exact or near duplicate on the training side.

medtl's own splits never leak (duplicate groups stay on one side, :mod:`medtl.data.dedup`),
but a data set's pre-made ``train/``/``test/`` folders can: a public MRI set ships 594
duplicate groups spanning them. Training finds these images with the hashes its decode
already computed (:attr:`medtl.data.cache.decode.SampleCache.hashes`: exact sha1 and pHash within
``NEAR_DUP_MAX_DISTANCE``), logs their number in train.log and writes ``RUN/leaks.json``;
evaluation then reports the full split and, beside it, the leak-free subset.

``data.premade_split`` decides what happens to them:

- ``keep`` (default): the split as given, with the warning and the leak-free number;
- ``drop_leaked``: the leaked val/test images are left out of val/test (not trained on);
- ``regroup``: they move to the training side with their duplicates (whole groups on
  one side); val/test keep only images without a duplicate in training.

Example:
    >>> from medtl.data.layouts import Sample
    >>> from pathlib import Path
    >>> s = [Sample(Path(f"{i}.png")) for i in range(4)]
    >>> hashes = [("a", 0), ("b", 2**40 - 1), ("a", 0), ("c", 0xFFFF0000FFFF0000)]
    >>> leaked_images(s, {"train": [0, 1], "val": [], "test": [2, 3]}, hashes)
    {'val': [], 'test': [2]}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from medtl.data.dedup import duplicate_groups
from medtl.data.layouts import Sample
from medtl.utils.files import atomic_write_json
from medtl.utils.records import Shape, load_json

__all__ = [
    "LEAKS_FILE",
    "POLICIES",
    "apply_policy",
    "leaked_images",
    "read_leaks",
    "write_leaks",
]

log = logging.getLogger("medtl")
LEAKS_FILE = "leaks.json"
POLICIES = ("keep", "drop_leaked", "regroup")
Splits = dict[str, list[int]]


def leaked_images(
    samples: Sequence[Sample], splits: Splits, hashes: Sequence[tuple[str, int]]
) -> dict[str, list[int]]:
    """Per held-out split (val, test), its images with an exact or near duplicate in train."""
    train = set(splits.get("train", []))
    tied: set[int] = set()
    for group in duplicate_groups(samples, hashes=hashes):
        if train.intersection(group):
            tied.update(group)
    return {name: [i for i in splits.get(name, []) if i in tied] for name in ("val", "test")}


def apply_policy(
    policy: str, samples: Sequence[Sample], splits: Splits, hashes: Sequence[tuple[str, int]]
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
    """``RUN/leaks.json`` as ``{split: [image, ...]}`` after checking its shape (``{}``
    without one); a damaged file is one DataError line."""
    path = Path(run) / LEAKS_FILE
    if not path.is_file():
        return {}
    fix = "delete it; 'medtl train' writes it (or train the run again)"
    shape = Shape(path, fix)
    doc = shape.mapping(load_json(path, fix))
    return {str(k): shape.texts(v, str(k), optional=True) for k, v in doc.items() if k != "format"}


def write_leaks(
    run: Path, samples: Sequence[Sample], splits: Splits, hashes: Sequence[tuple[str, int]]
) -> dict[str, list[str]]:
    """Log how many val/test images have a duplicate in train; write ``RUN/leaks.json``."""
    leaked = leaked_images(samples, splits, hashes)
    doc = {name: [str(samples[i].image) for i in idx] for name, idx in leaked.items()}
    atomic_write_json(run / LEAKS_FILE, {"format": "medtl-leaks-1", **doc})
    parts = [f"{len(doc[n])} of {len(splits.get(n, []))} {n} images" for n in ("test", "val")]
    line = f"leak check: {' and '.join(parts)} have an exact or near duplicate in train"
    if any(doc.values()):
        log.warning(
            line + "; evaluate reports the leak-free subset beside the full split "
            "(data.premade_split=drop_leaked|regroup removes them)"
        )
    else:
        log.info(line)
    return doc
