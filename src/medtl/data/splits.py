"""Seeded splits and k-folds, stratified by class and grouped (a group never straddles).

A sample's group is ``Sample.group`` (patient id, duplicate group from the audit) or the
sample itself. Stratification is by class label, or by "has a lesion" when unlabelled.
Pre-made ``train``/``test`` folders are respected: test stays test, val is carved from train.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.layouts import Sample
from medtl.utils.errors import DataError
from medtl.utils.files import atomic_write_json
from medtl.utils.records import Shape, load_json


def _strata(samples: Sequence[Sample]) -> list[str]:
    return [s.label if s.label is not None else ("lesion" if s.masks else "-") for s in samples]


def _groups(samples: Sequence[Sample]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[s.group if s.group is not None else f"#{i}"].append(i)
    return dict(groups)


def _assign(
    indices: Sequence[int], samples: Sequence[Sample], weights: Sequence[float], seed: int
) -> list[list[int]]:
    """Distribute samples (by group) into len(weights) bins with those target fractions,
    stratified: each stratum's groups are shuffled and dealt greedily to the bin furthest
    below its target, largest groups first. Ties go to the bin furthest below its target
    over all strata so far (else every one-sample class would land in bin 0)."""
    rng = np.random.default_rng(seed)
    subset = [samples[i] for i in indices]
    groups = _groups(subset)
    strata = _strata(subset)
    by_stratum: dict[str, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        # a group's stratum is its most common label (duplicates across classes are rare)
        labels = [strata[m] for m in members]
        by_stratum[max(sorted(set(labels)), key=labels.count)].append(members)
    bins: list[list[int]] = [[] for _ in weights]
    w = np.asarray(weights, dtype=float) / sum(weights)
    seen = 0  # samples of the strata dealt so far, this one included
    overall = np.zeros(len(w))
    for stratum in sorted(by_stratum):
        glist = by_stratum[stratum]
        order = rng.permutation(len(glist))
        glist = sorted((glist[o] for o in order), key=len, reverse=True)
        total = sum(len(g) for g in glist)
        seen += total
        filled = np.zeros(len(w))
        for members in glist:
            deficit = w * total - filled
            tied = np.flatnonzero(deficit >= deficit.max() - 1e-9)
            b = int(tied[np.argmax((w * seen - overall)[tied])])
            bins[b].extend(indices[m] for m in members)
            filled[b] += len(members)
            overall[b] += len(members)
    return [sorted(b) for b in bins]


def make_splits(
    samples: Sequence[Sample], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """``{"train": [...], "val": [...], "test": [...]}`` indices into ``samples``.

    A split that cannot be made is a DataError naming the cause: no images in the train
    folder of a pre-made split, or too few independent groups (how many, how they were
    formed, the largest, and what to change)."""
    premade = {s.split for s in samples}
    if premade & {"train", "test", "val"}:
        train_pool = [i for i, s in enumerate(samples) if s.split not in ("test", "val")]
        test = [i for i, s in enumerate(samples) if s.split == "test"]
        given_val = [i for i, s in enumerate(samples) if s.split == "val"]
        if not train_pool:
            raise _no_training_images(samples)
        if given_val:
            return {"train": train_pool, "val": given_val, "test": test}
        if test:  # val is carved from the pre-made train folder
            train, val = _assign(train_pool, samples, [1 - val_fraction, val_fraction], seed)
        else:  # only train/ given: carve test as well, as for unsplit data
            weights = [1.0 - val_fraction - test_fraction, val_fraction, test_fraction]
            train, val, test = _assign(train_pool, samples, weights, seed)
        _check_split(train, val, [samples[i] for i in train_pool], val_fraction)
        return {"train": train, "val": val, "test": test}
    weights = [1.0 - val_fraction - test_fraction, val_fraction, test_fraction]
    train, val, test = _assign(list(range(len(samples))), samples, weights, seed)
    _check_split(train, val, samples, val_fraction)
    return {"train": train, "val": val, "test": test}


def _no_training_images(samples: Sequence[Sample]) -> DataError:
    counts = ", ".join(f"{k}={n}" for k, n in sorted(Counter(s.split for s in samples).items()))
    return DataError(
        f"the pre-made split has no training images ({counts}); put the training images in a "
        "train/ (or training/) folder beside the others, or set their split in a CSV manifest"
    )


def _group_source(s: Sample) -> str:
    if s.meta.get("group_from"):
        return f"file names (pattern {s.meta['group_from']})"
    if "patient" in s.meta:
        return "DICOM patients (PatientID, else StudyInstanceUID)"
    if "volume" in s.meta:
        return "volumes"
    if "frame" in s.meta:
        return "multi-frame DICOM files"
    if str(s.group).startswith("dup-"):
        return "duplicate images"
    return "a group column or duplicates joining patients"


def describe_groups(samples: Sequence[Sample]) -> str:
    """How ``samples`` fall into independent groups, e.g. ``5712 images in 8 independent
    groups: 8 from file names (pattern ...); largest 'Tr-gl' with 1321 images``."""
    sizes = Counter(s.group for s in samples if s.group is not None)
    alone = sum(1 for s in samples if s.group is None)
    n_groups = len(sizes) + alone
    text = f"{len(samples)} images in {n_groups} independent group{'s' if n_groups != 1 else ''}"
    if not sizes:
        return text
    how: dict[str, set] = defaultdict(set)
    for smp in samples:
        if smp.group is not None:
            how[_group_source(smp)].add(smp.group)
    parts = [f"{len(g)} from {src}" for src, g in sorted(how.items(), key=lambda kv: -len(kv[1]))]
    parts += [f"{alone} single images"] if alone else []
    gid, n = sizes.most_common(1)[0]
    return f"{text}: {', '.join(parts)}; largest '{gid}' with {n} images"


def _check_split(
    train: list[int], val: list[int], pool: Sequence[Sample], val_fraction: float
) -> None:
    if train and (val_fraction == 0 or val):
        return
    grouped = any(s.group is not None for s in pool)
    if grouped and all("patient" in s.meta for s in pool):  # DICOM patients: no guess to undo
        fix = "add images of more patients (a patient's images stay in one split)"
    elif grouped:
        fix = (
            "set data.group_pattern=none if the names are not patients, "
            "data.group_duplicates=false, or add images"
        )
    else:
        fix = "add images or lower data.val_fraction"
    raise DataError(
        f"cannot split into train/val with val_fraction={val_fraction}: "
        f"{describe_groups(pool)}; {fix}"
    )


def kfold(samples: Sequence[Sample], k: int, seed: int) -> list[dict[str, list[int]]]:
    """K stratified, grouped folds: fold f validates on bin f and trains on the rest."""
    if k < 2:
        raise DataError(f"--folds must be >= 2, got {k}")
    n_groups = len(_groups(samples))
    if n_groups < k:
        raise DataError(f"{describe_groups(samples)} cannot fill {k} folds; use fewer folds")
    bins = _assign(list(range(len(samples))), samples, [1.0] * k, seed)
    if not all(bins):
        raise DataError(
            f"{len(samples)} images in {n_groups} groups leave a fold empty with k={k}; use fewer folds"
        )
    folds = []
    for f in range(k):
        train = sorted(i for b, members in enumerate(bins) if b != f for i in members)
        folds.append({"train": train, "val": bins[f], "test": []})
    return folds


def save_splits(
    path: Path, samples: Sequence[Sample], splits: dict[str, list[int]], extra: dict | None = None
) -> None:
    """Write ``splits.json``: file lists per split, their labels and groups (atomic)."""
    doc = {
        name: [
            {"image": str(samples[i].image), "label": samples[i].label, "group": samples[i].group}
            for i in idx
        ]
        for name, idx in splits.items()
    }
    doc["counts"] = {name: len(idx) for name, idx in splits.items()}
    doc.update(extra or {})
    atomic_write_json(path, doc)


_SPLIT_NAMES = ("train", "val", "test")


def _splits_fix(path: Path) -> str:
    return f"restore the splits.json 'medtl train' wrote into {Path(path).parent}"


@dataclass(frozen=True)
class SplitsFile:
    """``RUN/splits.json`` as written by :func:`save_splits` (``doc``: the whole file):
    ``entries`` holds each split's ``{image, label, group}`` records."""

    doc: dict[str, Any]
    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seed: int | None = None
    layout: str | None = None
    classes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, doc: Any, path: str | Path) -> SplitsFile:
        """The record of a loaded ``doc`` after checking its shape."""
        shape = Shape(path, _splits_fix(Path(path)))
        doc = shape.mapping(doc)
        entries: dict[str, list[dict[str, Any]]] = {}
        for name in _SPLIT_NAMES:
            entries[name] = shape.listing(doc.get(name), name, optional=True)
            for i, e in enumerate(entries[name]):
                e = shape.mapping(e, f"{name}[{i}]")
                shape.text(shape.get(e, "image", f"{name}[{i}]"), f"{name}[{i}].image")
                shape.text(e.get("label"), f"{name}[{i}].label", optional=True)
                if isinstance(e.get("group"), (dict, list)):
                    shape.text(e.get("group"), f"{name}[{i}].group")
        shape.numbers(doc.get("counts"), "counts")
        return cls(
            doc=doc,
            entries=entries,
            seed=shape.integer(doc.get("seed"), "seed", lo=None, optional=True),
            layout=shape.text(doc.get("layout"), "layout", optional=True),
            classes=shape.texts(doc.get("classes"), "classes", optional=True),
        )

    @classmethod
    def read(cls, path: str | Path, missing_ok: bool = False) -> SplitsFile:
        """The splits file at ``path``; a missing one is a DataError, or an empty record
        with ``missing_ok``."""
        path = Path(path)
        if not path.is_file():
            if missing_ok:
                return cls(doc={}, entries={n: [] for n in _SPLIT_NAMES})
            raise DataError(f"{path} not found; it is written by 'medtl train' into the run folder")
        return cls.of(load_json(path, _splits_fix(path)), path)


def load_splits(path: Path, samples: Sequence[Sample]) -> dict[str, list[int]]:
    """Re-map a saved ``splits.json`` onto ``samples`` (by image path); missing files -> DataError."""
    record = SplitsFile.read(path)
    # match by absolute path: a run may be evaluated from another working directory
    where = {str(Path(s.image).resolve()): i for i, s in enumerate(samples)}
    out: dict[str, list[int]] = {}
    for name in _SPLIT_NAMES:
        out[name] = []
        for entry in record.entries[name]:
            key = str(Path(entry["image"]).resolve())
            if key not in where:
                raise DataError(
                    f"{path}: {entry['image']} is no longer in the data; use the same data.root"
                )
            out[name].append(where[key])
    return out
