"""Patient groups from file names, so one patient's slices never straddle a split.

``data.group_pattern`` is a regular expression searched in each image's file stem; its
first group is the patient (or volume) id. Every image must match: a pattern that misses
some names is an error naming the first one. Samples that already carry a group (a CSV
``group`` column, a volume, a multi-frame DICOM) keep it.

Without a pattern, :func:`group_by_names` tries the common slice namings
(:data:`AUTO_PATTERNS`: ``<id>_slice<k>`` then ``<id>_<k>``) and uses the first one that
matches every ungrouped image stem and forms real groups: at least two groups, some with
more than one image, no group holding more than half of the images (so ``img_001 ..
img_100`` is not taken for one patient) and no id equal to a class or folder name (so
``benign/benign_0001.png`` is not taken for a patient called benign). What was decided is returned as a
:class:`GroupDecision` (training writes it to run.json, ``data.grouping``) and logged.

Example::

    >>> from pathlib import Path
    >>> from medtl.data.layouts import Sample
    >>> names = ["p1_slice01", "p1_slice02", "p2_slice01", "p2_slice02"]
    >>> samples, decision = group_by_names([Sample(Path(f"{n}.png")) for n in names])
    >>> [s.group for s in samples]
    ['p1', 'p1', 'p2', 'p2']
    >>> decision.source, decision.n_groups
    ('auto', 2)
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from medtl.data.layouts import Sample
from medtl.utils.errors import ConfigError, DataError

log = logging.getLogger("medtl")

AUTO_PATTERNS: tuple[str, ...] = (
    r"^(.+?)[_-]slice[_-]?\d+$",
    r"^(.+?)[_-]\d+$",
)
"""Tried in order by auto-detection: ``<id>_slice<k>`` (also ``-slice-``), ``<id>_<k>``."""


@dataclass(frozen=True)
class GroupDecision:
    """How samples were grouped by name: ``source`` is ``data.group_pattern``, ``auto``
    or ``none``; ``pattern`` the regex used (None for ``none``)."""

    source: str
    pattern: str | None
    n_groups: int
    n_images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what run.json's ``data.grouping`` holds)."""
        return asdict(self)

    def line(self) -> str:
        """The log line."""
        if self.source == "none":
            return "patient groups from names: none (no pattern matched every image name)"
        return (
            f"patient groups from names ({self.source}): {self.n_images} images in "
            f"{self.n_groups} groups by pattern {self.pattern}"
        )


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"data.group_pattern={pattern!r} is not a valid regex ({exc})") from None
    if rx.groups < 1:
        raise ConfigError(
            f"data.group_pattern={pattern!r} needs a (group) for the patient id, e.g. '^(.+)_slice'"
        )
    return rx


def ids_for(stems: Sequence[str], pattern: str) -> list[str | None]:
    """The first group of ``pattern`` searched in each stem (None where it does not match)."""
    rx = _compile(pattern)
    out: list[str | None] = []
    for stem in stems:
        m = rx.search(stem)
        out.append(m.group(1) if m and m.group(1) else None)
    return out


def _forms_groups(ids: Sequence[str | None], samples: Sequence[Sample]) -> bool:
    if not ids or any(i is None for i in ids):
        return False
    # 'benign_0001' in benign/: the id is the class, not a patient
    names = {n.lower() for s in samples for n in (s.label, s.image.parent.name) if n}
    if any(i.lower() in names for i in ids if i):
        return False
    counts = Counter(ids)
    return len(counts) >= 2 and max(counts.values()) > 1 and max(counts.values()) * 2 <= len(ids)


def detect_pattern(samples: Sequence[Sample]) -> str | None:
    """The first of :data:`AUTO_PATTERNS` that groups the samples' image stems (rule in the
    module docstring), else None."""
    stems = [_stem(s) for s in samples]
    for pattern in AUTO_PATTERNS:
        if _forms_groups(ids_for(stems, pattern), samples):
            return pattern
    return None


def _stem(s: Sample) -> str:
    return s.image.stem


def group_by_names(
    samples: Sequence[Sample], pattern: str | None = None, auto: bool = True
) -> tuple[list[Sample], GroupDecision]:
    """Samples with ``group`` set from their names; see the module docstring for the rule.

    Raises DataError when ``pattern`` matches no image name at all or misses one.
    """
    todo = [i for i, s in enumerate(samples) if s.group is None]
    stems = [_stem(samples[i]) for i in todo]
    source = "data.group_pattern" if pattern else "auto"
    if pattern:
        ids = ids_for(stems, pattern)
        missed = [samples[i].image for i, g in zip(todo, ids, strict=True) if g is None]
        if missed and len(missed) == len(todo):
            raise DataError(
                f"data.group_pattern={pattern!r} matches none of the image names (e.g. "
                f"{missed[0].name}); fix the regex, its first (group) is the patient id"
            )
        if missed:
            raise DataError(
                f"{missed[0]}: name does not match data.group_pattern={pattern!r}; "
                "rename it or widen the regex"
            )
    else:
        pattern = detect_pattern([samples[i] for i in todo]) if auto and stems else None
        ids = ids_for(stems, pattern) if pattern else [None] * len(stems)
    out = list(samples)
    if pattern is None:
        decision = GroupDecision("none", None, 0, len(todo))
    else:
        for i, gid in zip(todo, ids, strict=True):
            out[i] = replace(out[i], group=gid)
        decision = GroupDecision(source, pattern, len(set(ids)), len(todo))
    if todo and pattern is not None:  # "none" is the default case: run.json says it
        log.info(decision.line())
    return out, decision


_SLICE_NAME = re.compile(r"slice[_-]?\d+$", re.IGNORECASE)


def looks_like_slices(samples: Sequence[Sample], decision: GroupDecision) -> str | None:
    """The audit's warning: names look like slices (``..._slice<k>``) but no patient
    grouping is in force (no pattern, no auto-detection, no group column), else None."""
    if decision.source != "none" or any(s.group is not None for s in samples):
        return None
    sliced = [s.image for s in samples if _SLICE_NAME.search(_stem(s))]
    if not sliced:
        return None
    return (
        f"{len(sliced)} image names look like slices of patients (e.g. {sliced[0]}) but no "
        "patient grouping applies, so one patient's slices can land in train and test; set "
        "data.group_pattern=REGEX (its first group is the patient id) or add a group column"
    )
