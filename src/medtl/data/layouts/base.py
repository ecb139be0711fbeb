"""What every layout shares: :class:`Sample`, :class:`Dataset`, file kinds and split folders.

Split folders are found by their usual names, case-insensitive (:data:`SPLIT_NAMES`):
``train``/``training``, ``val``/``valid``/``validation``/``dev``, ``test``/``testing``;
a sample's ``split`` is always the canonical name (``train``, ``val``, ``test``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")
#: what a mask file may be: any image type, and GIF (``<name>_mask.gif``, as in car and
#: medical sets with that layout; :func:`medtl.data.readers.io.read_array` reads its colours)
MASK_EXTS = (*IMAGE_EXTS, ".gif")
SPLIT_DIRS = ("train", "val", "test")
#: folder names (lower case) taken for each split, in every layout
SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}
_SPLIT_OF = {name: split for split, names in SPLIT_NAMES.items() for name in names}
#: ``fullmatch`` with DOTALL: a stem may hold any character, a newline included; a mask is
#: ``<name>_mask``, ``<name>_mask_<k>`` or ``<name>@`` (OpenIST's chest X-rays)
_MASK_RE = re.compile(r"(?P<stem>.+?)(?:_mask(?:_(?P<k>\d+))?|@)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Sample:
    """One image with its masks (possibly several, merged by union), class label and group.

    ``split`` is set when the data set came with pre-made ``train``/``test`` folders.
    ``group`` ties samples that must stay on the same side of a split (patient id,
    duplicate group); ``None`` means the sample is its own group.
    """

    image: Path
    masks: tuple[Path, ...] = ()
    label: str | None = None
    group: str | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        """A stable identifier: the image path as given."""
        return str(self.image)


@dataclass
class Dataset:
    """The result of layout discovery: the samples and what was found."""

    root: Path
    layout: str
    samples: list[Sample]
    classes: list[str]
    problems: list[str] = field(default_factory=list)
    grouping: dict | None = None
    """What :func:`medtl.data.groups.group_by_names` decided (``GroupDecision.to_dict()``)."""
    window: tuple[float, float] | None = None
    """The (centre, width) DICOM/volume window in force (``data.window``), or None."""
    fallback_window: tuple[float, float] | None = None
    """The data-set-wide window for DICOMs without one (:func:`medtl.data.readers.dicom.dataset_range`)."""
    mask_scheme: object = None
    """What the masks mean (:class:`medtl.data.masks.scheme.MaskScheme`, ``data.mask_mode``), or None."""
    unused: list[str] = field(default_factory=list)
    """Folders and files under the root that the layout found but did not use, one line
    each (:func:`medtl.data.layouts.explain.unused_lines`)."""
    label_names: dict[int, str] | None = None
    """Label value -> name given by the data set itself (an MSD ``dataset.json``), or None."""

    @property
    def has_masks(self) -> bool:
        return any(s.masks for s in self.samples)

    @property
    def has_labels(self) -> bool:
        return any(s.label is not None for s in self.samples)

    def summary(self) -> str:
        """One line: layout, counts per class and split."""
        by_class = Counter(s.label or "-" for s in self.samples)
        by_split = Counter(s.split or "unsplit" for s in self.samples)
        classes = ", ".join(f"{c}={n}" for c, n in sorted(by_class.items()))
        splits = ", ".join(f"{k}={n}" for k, n in sorted(by_split.items()))
        masks = sum(1 for s in self.samples if s.masks)
        return (
            f"{self.root}: layout={self.layout}, {len(self.samples)} images "
            f"({masks} with masks); classes: {classes}; splits: {splits}"
        )


def is_image(path: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> bool:
    """An image file (``exts``: :data:`MASK_EXTS` for a mask), not a hidden one."""
    return path.is_file() and path.suffix.lower() in exts and not path.name.startswith(".")


def mask_stem(path: Path) -> tuple[str, int] | None:
    """``('name', k)`` when ``path`` is a mask file (``name_mask`` or ``name@`` -> 0,
    ``name_mask_2`` -> 2)."""
    m = _MASK_RE.fullmatch(path.stem)
    if not m:
        return None
    return m.group("stem"), int(m.group("k") or 0)


def images_in(folder: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> list[Path]:
    """The image files directly in ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if is_image(p, exts))


def split_of(name: str) -> str | None:
    """The canonical split a folder name stands for (``Training`` -> ``train``), else None."""
    return _SPLIT_OF.get(name.lower())


def split_dirs(root: Path) -> list[tuple[Path, str]]:
    """``[(folder, split)]`` for the split folders directly under ``root`` (any usual name,
    any case), in train, val, test order."""
    if not root.is_dir():
        return []
    found = [(d, s) for d in root.iterdir() if d.is_dir() and (s := split_of(d.name))]
    return sorted(found, key=lambda f: (SPLIT_DIRS.index(f[1]), f[0].name))


def split_roots(root: Path) -> list[tuple[Path, str | None]]:
    """The split folders under ``root`` (:func:`split_dirs`), or ``[(root, None)]``."""
    return list(split_dirs(root)) or [(root, None)]


def child(base: Path, name: str) -> Path | None:
    """The folder ``base/name``, its name matched case-insensitively, else None."""
    exact = base / name
    if exact.is_dir():
        return exact
    if not base.is_dir():
        return None
    for d in sorted(base.iterdir()):
        if d.is_dir() and d.name.lower() == name.lower():
            return d
    return None
