"""Folder layouts -> ``list[Sample]``.

Layouts (``data.layout``; ``auto`` tries them in the order of :data:`DETECTORS`):

- ``csv``: a manifest ``*.csv`` in the root with columns ``image`` and optional ``mask``,
  ``label``, ``group``, ``split``, ``spacing`` (pixel mm, ``0.7`` or ``0.7x0.8``; paths
  relative to the CSV; several masks joined by ``;``).
- ``msd``: the Medical Segmentation Decathlon / nnU-Net folder (``imagesTr/``,
  ``labelsTr/``, ``imagesTs/``, ``dataset.json``; :mod:`medtl.data.layouts.msd`).
- ``paired``: ``images/`` + ``masks/``; a mask has the image's stem, or stem + ``_mask``.
  Split folders above them are respected as pre-made splits.
- ``volumes``: ``images/`` + ``labels/`` NIfTI volumes with matching names, read as 2D
  slices (rules in :mod:`medtl.data.readers.volumes`); every slice of a volume in one group.
- ``siblings``: ``train/`` + ``train_masks/`` (and ``test/`` + ``test_masks/``).
- ``class_masks``: ``<class>/<name>.png`` + ``<name>_mask.png`` (or ``<name>@.png``) beside
  it; extra ``<name>_mask_1.png``, ``_mask_2.png``... are merged with it by union (BUSI).
  Without class folders, images and masks side by side in the root (or in a split folder)
  are one folder without classes.
- ``imagefolder``: ``<class>/*.png`` without masks (classification), optionally below
  split folders.
- ``structures``: ``images/`` + ``masks/<structure>/<name>.*`` (or ``masks/<name>_<structure>.*``),
  one binary mask per structure, structures may overlap (:mod:`medtl.data.layouts.structures`).
- ``dicom``: a PACS/CD export tree, files recognised by content, grouped by PatientID
  (:mod:`medtl.data.layouts.dicom_tree`).

Split folders have their usual names in any case (``train``/``training``, ``val``/
``valid``/``validation``/``dev``, ``test``/``testing``; :data:`SPLIT_NAMES`). Folders and
files a layout finds but does not use are listed in ``Dataset.unused`` (and by the audit).
When no layout fits, the error shows the first levels of the tree and the nearest layout
with the one change that would make it fit (:mod:`medtl.data.layouts.explain`).

Masks may be any of :data:`MASK_EXTS` (.png .jpg .jpeg .tif .tiff .bmp .dcm .gif), e.g.
``train/car_01.jpg`` + ``train_masks/car_01_mask.gif``.

Multi-frame DICOM images (in any layout) become one sample per frame, grouped by file;
their masks must be multi-frame DICOMs with as many frames.

A new layout is a function ``root -> (samples, problems)`` registered in :data:`LAYOUTS`
and, when ``auto`` should find it, a ``(name, root -> bool)`` entry in :data:`DETECTORS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medtl.data.layouts.base import (
    IMAGE_EXTS,
    MASK_EXTS,
    SPLIT_DIRS,
    SPLIT_NAMES,
    Dataset,
    Sample,
    child,
    images_in,
    is_image,
    mask_stem,
    split_of,
    split_roots,
)
from medtl.data.layouts.dicom_tree import discover_dicom, looks_like_tree
from medtl.data.layouts.explain import describe_tree, nearest_layout, short, unused_lines
from medtl.data.layouts.folders import (
    class_dirs,
    discover_class_masks,
    discover_csv,
    discover_imagefolder,
    discover_paired,
    discover_siblings,
    discover_volumes,
    expand_frames,
    mask_folders,
    paired_dirs,
    sibling_dirs,
)
from medtl.data.layouts.msd import dataset_labels, discover_msd, is_msd
from medtl.data.layouts.structures import discover_structures, looks_like_structures
from medtl.utils.errors import DataError

__all__ = [
    "DETECTORS",
    "IMAGE_EXTS",
    "LAYOUTS",
    "MASK_EXTS",
    "SPLIT_DIRS",
    "SPLIT_NAMES",
    "Dataset",
    "Sample",
    "discover",
    "discover_csv",
    "expand_frames",
    "is_image",
    "mask_stem",
    "split_of",
]

#: layouts whose discovery takes ``slice_axis`` and ``empty_slice_fraction`` (volumes)
SLICED = {"volumes", "msd"}

LAYOUTS: dict[str, Callable[..., tuple[list[Sample], list[str]]]] = {
    "csv": discover_csv,
    "msd": discover_msd,
    "paired": discover_paired,
    "siblings": discover_siblings,
    "class_masks": discover_class_masks,
    "imagefolder": discover_imagefolder,
    "volumes": discover_volumes,
    "structures": discover_structures,
    "dicom": discover_dicom,
}


def _has_csv(root: Path) -> bool:
    return (root.is_file() and root.suffix.lower() == ".csv") or any(root.glob("*.csv"))


def _has_paired(root: Path) -> bool:
    return any(paired_dirs(base) for base, _ in split_roots(root))


def _has_volumes(root: Path) -> bool:
    from medtl.data.readers.volumes import is_volume

    for base, _ in split_roots(root):
        images = child(base, "images")
        if images is not None and any(is_volume(p) for p in images.iterdir()):
            return True
    return False


def _class_dirs_found(root: Path) -> list[Path]:
    return [d for base, _ in split_roots(root) for d in class_dirs(base)]


def _has_class_masks(root: Path) -> bool:
    """A ``<name>_mask`` file beside its ``<name>`` image in a class folder (a folder of
    ``*_mask`` files alone, such as DRIVE's field-of-view ``mask/``, is not evidence)."""
    for d in (d for base, _ in split_roots(root) for d, _ in mask_folders(base)):
        files = images_in(d, MASK_EXTS)
        stems = {f.stem for f in files if f.suffix.lower() in IMAGE_EXTS and not mask_stem(f)}
        if any((m := mask_stem(f)) and m[0] in stems for f in files):
            return True
    return False


def _images_beside_other(base: Path) -> bool:
    """``images/`` beside another folder of pictures: the paired shape with its masks under
    another name (DRIVE's ``1st_manual/``), not one class per folder."""
    images = child(base, "images")
    return images is not None and any(
        d != images and images_in(d, MASK_EXTS) for d in class_dirs(base)
    )


def _has_imagefolder(root: Path) -> bool:
    return any(
        images_in(d)
        for base, _ in split_roots(root)
        if not _images_beside_other(base)
        for d in class_dirs(base)
    )


#: ``auto`` takes the first layout whose test holds for the root (order matters: a CSV
#: manifest wins, ``paired`` before ``volumes`` ...)
DETECTORS: list[tuple[str, Callable[[Path], bool]]] = [
    ("csv", _has_csv),
    ("msd", is_msd),
    ("structures", looks_like_structures),
    ("paired", _has_paired),
    ("volumes", _has_volumes),
    ("siblings", lambda root: bool(sibling_dirs(root))),
    ("dicom", looks_like_tree),
    ("class_masks", _has_class_masks),
    ("imagefolder", _has_imagefolder),
]


def detect(root: Path) -> str | None:
    """The layout ``auto`` picks for ``root`` (:data:`DETECTORS`), else None."""
    for name, test in DETECTORS:
        if test(root):
            return name
    return None


def _nothing_fits(root: Path) -> DataError:
    return DataError(
        f"no known layout under {root}; found: {describe_tree(root)}; {nearest_layout(root)} "
        "(layouts: README 'Data layouts')"
    )


def discover(
    root: str | Path,
    layout: str = "auto",
    slice_axis: int = 2,
    empty_slice_fraction: float = 1.0,
) -> Dataset:
    """Find the samples under ``root``; raise DataError naming the path and the fix.

    Images without a mask (or masks without an image) in a mask layout are reported in
    ``Dataset.problems`` and left out; the caller decides whether that is fatal.
    ``slice_axis`` and ``empty_slice_fraction`` apply to the ``volumes`` and ``msd`` layouts.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data root {root} does not exist; set data.root to a folder of images")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"data root {root} is empty; put images there or run 'medtl synth {root}'")
    if layout == "auto":
        layout = detect(root) or ""
        if not layout:
            raise _nothing_fits(root)
    if layout not in LAYOUTS:
        raise DataError(
            f"unknown data.layout '{layout}'; choose auto or one of {', '.join(LAYOUTS)}"
        )
    if layout in SLICED:
        samples, problems = LAYOUTS[layout](root, slice_axis, empty_slice_fraction)
    else:
        samples, problems = LAYOUTS[layout](root)
        if any(s.image.suffix.lower() == ".dcm" for s in samples):
            samples = expand_frames(samples)
    unused = unused_lines(root, samples) if root.is_dir() else []
    if not samples:
        raise _found_nothing(root, layout, problems, unused)
    classes = sorted({s.label for s in samples if s.label is not None})
    return Dataset(
        root=root,
        layout=layout,
        samples=samples,
        classes=classes,
        problems=problems,
        unused=unused,
        label_names=dataset_labels(root) if layout == "msd" else None,
    )


def _found_nothing(root: Path, layout: str, problems: list[str], unused: list[str]) -> DataError:
    detail = f" ({problems[0]})" if problems else ""
    if root.is_dir():
        detail += f"; found: {describe_tree(root)}"
        detail += f"; not used: {short(unused)}" if unused else ""
        detail += f"; {nearest_layout(root)}"
    return DataError(f"no usable images found under {root} with layout '{layout}'{detail}")
