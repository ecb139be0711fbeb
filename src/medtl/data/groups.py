"""Patient groups from file names, so one patient's slices never straddle a split.

``data.group_pattern`` is a regular expression searched in each image's file stem; its
first group is the patient (or volume) id. Every image must match: a pattern that misses
some names is an error naming the first one. Samples that already carry a group (a CSV
``group`` column, a volume, a multi-frame DICOM) keep it.

Without a pattern, :func:`group_by_names` tries the common slice namings
(:data:`AUTO_PATTERNS`: ``<id>_slice<k>`` then ``<id>_<k>``) and takes a pattern as
"patient" only on evidence (:func:`judge`): it matches every ungrouped image stem, yields
many groups (at least :data:`MIN_GROUPS`) of a few images each (median at most
:data:`MAX_MEDIAN_GROUP`, none holding more than half of the images: ``img_001 .. img_100``
is not one patient), no id is a class or folder name (``benign/benign_0001.png`` is not a
patient called benign) and the groups do not reproduce the class or split folders
(``Training/glioma/Tr-gl_0001.jpg`` gives one "patient" per class and split: each group
inside one folder, fewer than :data:`MIN_GROUPS` groups per folder). ``data.group_pattern=none`` switches names
off. What was decided, why, and the group sizes are returned as a :class:`GroupDecision`
(training writes it to run.json, ``data.grouping``; the audit shows it) and logged.

Example::

    >>> from pathlib import Path
    >>> from medtl.data.layouts import Sample
    >>> names = [f"p{p}_slice0{k}" for p in (1, 2, 3) for k in (1, 2)]
    >>> samples, decision = group_by_names([Sample(Path(f"{n}.png")) for n in names])
    >>> [s.group for s in samples]
    ['p1', 'p1', 'p2', 'p2', 'p3', 'p3']
    >>> decision.source, decision.n_groups, decision.sizes
    ('auto', 3, {'min': 2, 'median': 2, 'max': 2})
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


#: evidence needed to take name ids for patients (see :func:`judge`)
MIN_GROUPS = 3
MAX_MEDIAN_GROUP = 200


@dataclass(frozen=True)
class GroupDecision:
    """How samples were grouped by name: ``source`` is ``data.group_pattern``, ``auto``
    or ``none``; ``pattern`` the regex used (None for ``none``); ``sizes`` the images per
    group (``min``, ``median``, ``max``) of the pattern used or, for ``none``, of the
    candidate turned down; ``reason`` why (one sentence)."""

    source: str
    pattern: str | None
    n_groups: int
    n_images: int
    sizes: dict[str, float] | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what run.json's ``data.grouping`` holds)."""
        return asdict(self)

    def line(self) -> str:
        """The log line."""
        if self.source == "none":
            return f"patient groups from names: none ({self.reason})"
        return (
            f"patient groups from names ({self.source}): {self.n_images} images in "
            f"{self.n_groups} groups by pattern {self.pattern} ({_sizes_text(self.sizes)})"
        )


def _sizes_text(sizes: dict[str, float] | None) -> str:
    if not sizes:
        return "no sizes"
    return (
        f"images per group: min {sizes['min']:g}, median {sizes['median']:g}, max {sizes['max']:g}"
    )


def group_sizes(ids: Sequence[str | None]) -> dict[str, float]:
    """``{"min", "median", "max"}`` images per group of ``ids`` (None ids left out)."""
    counts = sorted(Counter(i for i in ids if i is not None).values())
    if not counts:
        return {"min": 0, "median": 0, "max": 0}
    mid = len(counts) // 2
    median = counts[mid] if len(counts) % 2 else (counts[mid - 1] + counts[mid]) / 2
    return {
        "min": counts[0],
        "median": int(median) if median == int(median) else median,
        "max": counts[-1],
    }


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


def _folder(s: Sample) -> tuple[str | None, str | None, str]:
    return (s.label, s.split, s.image.parent.name)


def judge(ids: Sequence[str | None], samples: Sequence[Sample]) -> str | None:
    """Why these name ids are not patients (one phrase), or None when the evidence holds
    (rule in the module docstring)."""
    if not ids:
        return "no image names"
    missed = sum(i is None for i in ids)
    if missed:
        return f"{missed} of {len(ids)} names do not match"
    names = {n.lower() for s in samples for n in (s.label, s.split, s.image.parent.name) if n}
    same = sorted({i for i in ids if i and i.lower() in names})
    if same:
        return f"the id '{same[0]}' is a class or folder name"
    counts = Counter(ids)
    sizes = group_sizes(ids)
    if len(counts) < MIN_GROUPS:
        return f"only {len(counts)} groups (at least {MIN_GROUPS} needed)"
    if sizes["max"] == 1:
        return "every group holds one image"
    if sizes["max"] * 2 > len(ids):
        return f"one group holds {sizes['max']:g} of {len(ids)} images"
    if sizes["median"] > MAX_MEDIAN_GROUP:
        return f"groups of {sizes['median']:g} images (median) are not one patient's images"
    cells: dict[str, set] = {}
    for gid, s in zip(ids, samples, strict=True):
        cells.setdefault(str(gid), set()).add(_folder(s))
    folders = {_folder(s) for s in samples}
    if all(len(c) == 1 for c in cells.values()) and len(counts) < MIN_GROUPS * len(folders):
        return (
            f"the {len(counts)} groups reproduce the {len(folders)} class/split folders "
            f"(fewer than {MIN_GROUPS} per folder, each inside one)"
        )
    return None


def detect_pattern(samples: Sequence[Sample]) -> tuple[str | None, str, dict | None]:
    """``(pattern, reason, sizes)``: the first of :data:`AUTO_PATTERNS` whose ids pass
    :func:`judge` (reason ""), else None with why the nearest candidate was turned down
    and its group sizes."""
    stems = [_stem(s) for s in samples]
    first: tuple[str, dict | None] | None = None
    for pattern in AUTO_PATTERNS:
        ids = ids_for(stems, pattern)
        why = judge(ids, samples)
        if why is None:
            return pattern, "", group_sizes(ids)
        if first is None and not any(i is None for i in ids):
            first = (f"pattern {pattern}: {why}", group_sizes(ids))
    if first is None:
        return None, "no name pattern matches every image name", None
    return None, first[0], first[1]


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
    reason, sizes = "", None
    if pattern:
        ids = ids_for(stems, pattern)
        _check_matches(
            pattern,
            [samples[i].image for i, g in zip(todo, ids, strict=True) if g is None],
            len(todo),
        )
        reason = "given by data.group_pattern"
    elif not auto:
        reason = "data.group_pattern=none"
    elif not stems:
        reason = "every image has a group from the layout or manifest"
    else:
        pattern, reason, sizes = detect_pattern([samples[i] for i in todo])
        reason = reason or "many groups of a few images each, not the folders"
    out = list(samples)
    if pattern is None:
        decision = GroupDecision("none", None, 0, len(todo), sizes, reason)
    else:
        ids = ids_for(stems, pattern)
        for i, gid in zip(todo, ids, strict=True):
            out[i] = replace(out[i], group=gid, meta={**out[i].meta, "group_from": pattern})
        decision = GroupDecision(
            source, pattern, len(set(ids)), len(todo), group_sizes(ids), reason
        )
    if todo:
        log.info(decision.line())
    return out, decision


def _check_matches(pattern: str, missed: list, n: int) -> None:
    if missed and len(missed) == n:
        raise DataError(
            f"data.group_pattern={pattern!r} matches none of the image names (e.g. "
            f"{missed[0].name}); fix the regex, its first (group) is the patient id"
        )
    if missed:
        raise DataError(
            f"{missed[0]}: name does not match data.group_pattern={pattern!r}; "
            "rename it or widen the regex"
        )


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
