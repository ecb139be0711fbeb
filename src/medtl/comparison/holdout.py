"""The test split of a cross-validated comparison: held out before the folds are made.

With ``--folds K`` the images are first split into a **test** set that no fold ever sees
and the rest, which the K folds split into train/val (grouped and stratified, as
:func:`medtl.data.splits.kfold`). The test set is

- the data set's own ``test/`` folder when it has one (pre-made split), else
- ``data.test_fraction`` of the images, carved grouped (duplicate groups, patients) and
  stratified (class, or lesion / no lesion) by :func:`medtl.data.splits.make_splits`;
- nothing with ``data.test_fraction=0`` (``medtl compare --test-fraction 0``): every image
  goes into the folds, the behaviour before the test split existed.

Every fold's ``splits.json`` lists the same ``test`` images.

Example:
    >>> from medtl.data.layouts import Sample
    >>> from pathlib import Path
    >>> samples = [Sample(Path(f"{i}.png"), label="ab"[i % 2]) for i in range(20)]
    >>> folds = cv_splits(samples, 2, 0.2, seed=0)
    >>> len(folds[0]["test"]), folds[0]["test"] == folds[1]["test"]
    (4, True)
    >>> sorted(folds[0]["val"] + folds[1]["val"] + folds[0]["test"]) == list(range(20))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from medtl.data.layouts import Sample
from medtl.data.splits import kfold, make_splits

__all__ = ["cv_splits", "held_out_test"]


def held_out_test(samples: Sequence[Sample], test_fraction: float, seed: int) -> list[int]:
    """Indices of the test images no fold sees (see the module docstring)."""
    if test_fraction <= 0:
        return []
    premade = [i for i, s in enumerate(samples) if s.split == "test"]
    if premade:
        return premade
    # make_splits carves train/val/test; with val_fraction=0 it is train/test, grouped
    unsplit = [s if s.split is None else _without_split(s) for s in samples]
    return make_splits(unsplit, 0.0, test_fraction, seed)["test"]


def _without_split(s: Sample) -> Sample:
    from dataclasses import replace

    return replace(s, split=None)


def cv_splits(
    samples: Sequence[Sample], folds: int, test_fraction: float, seed: int
) -> list[dict[str, list[int]]]:
    """K grouped, stratified folds of the images outside the held-out test set; every
    fold's ``test`` is that set. Indices point into ``samples``."""
    test = held_out_test(samples, test_fraction, seed)
    held = set(test)
    rest = [i for i in range(len(samples)) if i not in held]
    out = []
    for fold in kfold([samples[i] for i in rest], folds, seed):
        out.append(
            {
                "train": [rest[j] for j in fold["train"]],
                "val": [rest[j] for j in fold["val"]],
                "test": list(test),
            }
        )
    return out
