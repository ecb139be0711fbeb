"""Folder layouts -> ``list[Sample]``.

Layouts (``data.layout``; ``auto`` tries them in this order):

- ``csv``: a manifest ``*.csv`` in the root with columns ``image`` and optional ``mask``,
  ``label``, ``group``, ``split``, ``spacing`` (pixel mm, ``0.7`` or ``0.7x0.8``; paths
  relative to the CSV; several masks joined by ``;``).
- ``paired``: ``images/`` + ``masks/``; a mask has the image's stem, or stem + ``_mask``.
  ``train/`` and ``test/`` above them are respected as pre-made splits.
- ``siblings``: ``train/`` + ``train_masks/`` (and ``test/`` + ``test_masks/``).
- ``class_masks``: ``<class>/<name>.png`` + ``<name>_mask.png`` beside it; extra
  ``<name>_mask_1.png``, ``_mask_2.png``... are merged with it by union (BUSI).
- ``imagefolder``: ``<class>/*.png`` without masks (classification), optionally below
  ``train/`` / ``test/``.
- ``volumes``: ``images/`` + ``labels/`` NIfTI volumes with matching names, read as 2D
  slices (rules in :mod:`medtl.data.readers.volumes`); every slice of a volume in one group.

Masks may be any of :data:`MASK_EXTS` (.png .jpg .jpeg .tif .tiff .bmp .dcm .gif), e.g.
``train/car_01.jpg`` + ``train_masks/car_01_mask.gif``.

Multi-frame DICOM images (in any layout) become one sample per frame, grouped by file;
their masks must be multi-frame DICOMs with as many frames.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from medtl.utils.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")
#: what a mask file may be: any image type, and GIF (``<name>_mask.gif``, as in car and
#: medical sets with that layout; :func:`medtl.data.readers.io.read_array` reads its colours)
MASK_EXTS = (*IMAGE_EXTS, ".gif")
SPLIT_DIRS = ("train", "val", "test")
#: ``fullmatch`` with DOTALL: a stem may hold any character, a newline included
_MASK_RE = re.compile(r"(?P<stem>.+?)_mask(?:_(?P<k>\d+))?", re.IGNORECASE | re.DOTALL)


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
    """``('name', k)`` when ``path`` is a mask file (``name_mask`` -> 0, ``name_mask_2`` -> 2)."""
    m = _MASK_RE.fullmatch(path.stem)
    if not m:
        return None
    return m.group("stem"), int(m.group("k") or 0)


def _images(folder: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image(p, exts))


def _split_roots(root: Path) -> list[tuple[Path, str | None]]:
    """``[(root/train, 'train'), (root/test, 'test')]`` if pre-made split folders exist."""
    found = [(root / s, s) for s in SPLIT_DIRS if (root / s).is_dir()]
    return found or [(root, None)]


def _by_stem(paths: list[Path]) -> dict[str, Path]:
    return {p.stem: p for p in paths}


def _pair_in(img_dir: Path, mask_dir: Path, split: str | None, problems: list[str]) -> list[Sample]:
    masks: dict[str, list[tuple[int, Path]]] = {}
    for m in _images(mask_dir, MASK_EXTS):
        parsed = mask_stem(m)
        stem, k = parsed if parsed else (m.stem, 0)
        masks.setdefault(stem, []).append((k, m))
    samples = []
    for img in _images(img_dir):
        found = sorted(masks.pop(img.stem, []))
        if not found:
            problems.append(
                f"image without mask: {img} (expected {mask_dir / (img.stem + '.png')})"
            )
            continue
        samples.append(Sample(img, tuple(p for _, p in found), split=split))
    for stem, found in masks.items():
        problems.append(f"mask without image: {found[0][1]} (no {img_dir / stem}.*)")
    return samples


def discover_paired(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for base, split in _split_roots(root):
        if (base / "images").is_dir() and (base / "masks").is_dir():
            samples += _pair_in(base / "images", base / "masks", split, problems)
    return samples, problems


def discover_siblings(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for split in SPLIT_DIRS:
        if (root / split).is_dir() and (root / f"{split}_masks").is_dir():
            samples += _pair_in(root / split, root / f"{split}_masks", split, problems)
    return samples, problems


def _class_dirs(base: Path) -> list[Path]:
    return sorted(
        d
        for d in base.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and d.name not in SPLIT_DIRS
        and not d.name.endswith("_masks")
    )


def discover_class_masks(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for base, split in _split_roots(root):
        for cdir in _class_dirs(base):
            files = _images(cdir, MASK_EXTS)
            masks: dict[str, list[tuple[int, Path]]] = {}
            images = []
            for f in files:
                parsed = mask_stem(f)
                if parsed:
                    masks.setdefault(parsed[0], []).append((parsed[1], f))
                elif f.suffix.lower() in IMAGE_EXTS:
                    images.append(f)
            for img in images:
                found = sorted(masks.pop(img.stem, []))
                if not found:
                    problems.append(
                        f"image without mask: {img} (expected {img.stem}_mask.png beside it)"
                    )
                    continue
                samples.append(
                    Sample(img, tuple(p for _, p in found), label=cdir.name, split=split)
                )
            for stem, found in masks.items():
                problems.append(f"mask without image: {found[0][1]} (no {cdir / stem}.*)")
    return samples, problems


def discover_imagefolder(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    for base, split in _split_roots(root):
        for cdir in _class_dirs(base):
            for img in _images(cdir):
                if mask_stem(img) is None:
                    samples.append(Sample(img, (), label=cdir.name, split=split))
    return samples, []


def discover_csv(root: Path) -> tuple[list[Sample], list[str]]:
    manifests = sorted(root.glob("*.csv")) if root.is_dir() else [root]
    if not manifests:
        return [], []
    path = manifests[0]
    base = path.parent
    samples: list[Sample] = []
    problems: list[str] = []
    # utf-8-sig: spreadsheet programs save CSV with a byte-order mark before 'image'
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "image" not in reader.fieldnames:
            raise DataError(f"manifest {path} needs an 'image' column (image,mask,label,group)")
        for i, row in enumerate(reader, start=2):
            img = base / row["image"].strip()
            if not img.is_file():
                problems.append(f"{path} line {i}: image {img} not found")
                continue
            masks = tuple(base / m.strip() for m in (row.get("mask") or "").split(";") if m.strip())
            missing = [m for m in masks if not m.is_file()]
            if missing:
                problems.append(f"{path} line {i}: mask {missing[0]} not found")
                continue
            split = (row.get("split") or "").strip().lower() or None
            if split is not None and split not in SPLIT_DIRS:
                # an unknown split would silently put the row into the train pool
                raise DataError(
                    f"{path} line {i}: split '{split}' is not one of {', '.join(SPLIT_DIRS)} (or empty)"
                )
            samples.append(
                Sample(
                    img,
                    masks,
                    label=(row.get("label") or "").strip() or None,
                    group=(row.get("group") or "").strip() or None,
                    split=split,
                    # pixel size in mm, "0.7" or "0.7x0.8" (medtl.evaluation.segmentation.parse_spacing)
                    meta={"spacing": s} if (s := (row.get("spacing") or "").strip()) else {},
                )
            )
    return samples, problems


def discover_volumes(
    root: Path, slice_axis: int = 2, empty_slice_fraction: float = 1.0
) -> tuple[list[Sample], list[str]]:
    """The ``volumes`` layout: one sample per kept slice, grouped by volume id."""
    from medtl.data.readers.volumes import find_volumes, volume_slices

    samples: list[Sample] = []
    problems: list[str] = []
    for base, split in _split_roots(root):
        if not (base / "images").is_dir():
            continue
        pairs, found = find_volumes(base)
        problems += found
        for image, label in pairs:
            for ref, mask, meta in volume_slices(image, label, slice_axis, empty_slice_fraction):
                masks = (mask,) if mask is not None else ()
                samples.append(Sample(ref, masks, group=meta["volume"], split=split, meta=meta))
    return samples, problems


def expand_frames(samples: list[Sample]) -> list[Sample]:
    """Multi-frame DICOM samples -> one sample per frame (group = the file, unless set)."""
    from medtl.data.readers.dicom import n_frames
    from medtl.data.refs import slice_ref

    out: list[Sample] = []
    for s in samples:
        frames = n_frames(s.image) if s.image.suffix.lower() == ".dcm" else 1
        if frames <= 1:
            out.append(s)
            continue
        for m in s.masks:
            if m.suffix.lower() != ".dcm" or n_frames(m) != frames:
                raise DataError(
                    f"{m}: mask of the {frames}-frame DICOM {s.image} needs {frames} frames; "
                    "save the masks as a multi-frame DICOM of the same length"
                )
        group = s.group or f"{s.image.parent.name}/{s.image.stem}"
        for k in range(frames):
            masks = tuple(slice_ref(m, "f", k, "mask") for m in s.masks)
            meta = {**s.meta, "frame": k}
            out.append(
                replace(s, image=slice_ref(s.image, "f", k), masks=masks, group=group, meta=meta)
            )
    return out


LAYOUTS: dict[str, Callable[..., tuple[list[Sample], list[str]]]] = {
    "csv": discover_csv,
    "paired": discover_paired,
    "siblings": discover_siblings,
    "class_masks": discover_class_masks,
    "imagefolder": discover_imagefolder,
    "volumes": discover_volumes,
}


def _detect(root: Path) -> str | None:
    if root.is_file() and root.suffix.lower() == ".csv":
        return "csv"
    if any(root.glob("*.csv")):
        return "csv"
    for base, _ in _split_roots(root):
        if (base / "images").is_dir() and (base / "masks").is_dir():
            return "paired"
    from medtl.data.readers.volumes import is_volume

    for base, _ in _split_roots(root):
        if (base / "images").is_dir() and any(is_volume(p) for p in (base / "images").iterdir()):
            return "volumes"
    if any((root / s).is_dir() and (root / f"{s}_masks").is_dir() for s in SPLIT_DIRS):
        return "siblings"
    class_dirs = [d for base, _ in _split_roots(root) for d in _class_dirs(base)]
    if class_dirs:
        has_masks = any(mask_stem(f) for d in class_dirs for f in _images(d, MASK_EXTS))
        return "class_masks" if has_masks else "imagefolder"
    return None


def discover(
    root: str | Path,
    layout: str = "auto",
    slice_axis: int = 2,
    empty_slice_fraction: float = 1.0,
) -> Dataset:
    """Find the samples under ``root``; raise DataError naming the path and the fix.

    Images without a mask (or masks without an image) in a mask layout are reported in
    ``Dataset.problems`` and left out; the caller decides whether that is fatal.
    ``slice_axis`` and ``empty_slice_fraction`` apply to the ``volumes`` layout.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data root {root} does not exist; set data.root to a folder of images")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"data root {root} is empty; put images there or run 'medtl synth {root}'")
    if layout == "auto":
        detected = _detect(root)
        if detected is None:
            raise DataError(
                f"no known layout under {root}; use images/+masks/, train/+train_masks/, "
                f"<class>/ folders, images/+labels/ volumes or a CSV manifest (see README 'Data layouts')"
            )
        layout = detected
    if layout not in LAYOUTS:
        raise DataError(
            f"unknown data.layout '{layout}'; choose auto or one of {', '.join(LAYOUTS)}"
        )
    if layout == "volumes":
        samples, problems = discover_volumes(root, slice_axis, empty_slice_fraction)
    else:
        samples, problems = LAYOUTS[layout](root)
        if any(s.image.suffix.lower() == ".dcm" for s in samples):
            samples = expand_frames(samples)
    if not samples:
        detail = f" ({problems[0]})" if problems else ""
        raise DataError(f"no usable images found under {root} with layout '{layout}'{detail}")
    classes = sorted({s.label for s in samples if s.label is not None})
    return Dataset(root=root, layout=layout, samples=samples, classes=classes, problems=problems)
