"""``data.classes``: train, audit and plan on some of a data set's classes only.

The same filter runs wherever the data is read (training's pipeline, the audit, the plan's
fingerprint), so all three see the same images.

    >>> class_list("[benign, 'malignant']")
    ['benign', 'malignant']
"""

from __future__ import annotations

from medtl.configuration.loading import unwrapped
from medtl.data.layouts import Dataset
from medtl.utils.errors import DataError


def class_list(text: str) -> list[str]:
    """``data.classes`` as names: ``benign,malignant``, or the bracketed form the comparison's
    grid keeps as one value, ``[benign,malignant]`` (quotes around a name are dropped)."""
    names = (c.strip().strip("'\"") for c in unwrapped(str(text).strip()).split(","))
    return [c for c in names if c]


def keep_classes(ds: Dataset, text: str | None) -> None:
    """Keep only the samples and classes ``text`` names (``data.classes``; empty: all of them);
    a DataError names the classes the data does not have."""
    if not text:
        return
    keep = class_list(text)
    unknown = sorted(set(keep) - set(ds.classes))
    if unknown:
        raise DataError(
            f"{ds.root}: data.classes names {unknown}, not among {ds.classes}; fix the list"
        )
    ds.samples = [s for s in ds.samples if s.label in keep]
    ds.classes = [c for c in ds.classes if c in keep]
