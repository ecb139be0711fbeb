"""The folder layouts: each turns a data root into ``(samples, problems)``.

``problems`` are lines naming a file that the layout left out (an image without its
mask, a mask without its image, a manifest row pointing nowhere); the caller decides
whether they are fatal. Split folders are found by any usual name (:data:`SPLIT_NAMES`).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from medtl.data.layouts.base import (
    IMAGE_EXTS,
    MASK_EXTS,
    SPLIT_NAMES,
    Sample,
    child,
    images_in,
    mask_stem,
    split_dirs,
    split_of,
    split_roots,
)
from medtl.data.readers.volumes import is_volume, volume_id
from medtl.utils.errors import DataError


def _pair_in(img_dir: Path, mask_dir: Path, split: str | None, problems: list[str]) -> list[Sample]:
    masks: dict[str, list[tuple[int, Path]]] = {}
    for m in images_in(mask_dir, MASK_EXTS):
        parsed = mask_stem(m)
        stem, k = parsed if parsed else (m.stem, 0)
        masks.setdefault(stem, []).append((k, m))
    samples = []
    for img in images_in(img_dir):
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


def paired_dirs(base: Path) -> tuple[Path, Path] | None:
    """``(images/, masks/)`` under ``base`` (names in any case), else None."""
    images, masks = child(base, "images"), child(base, "masks")
    return (images, masks) if images and masks else None


def discover_paired(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for base, split in split_roots(root):
        if found := paired_dirs(base):
            samples += _pair_in(*found, split, problems)
    return samples, problems


def sibling_dirs(root: Path) -> list[tuple[Path, Path, str]]:
    """``[(train/, train_masks/, 'train')]``: split folders with a ``<name>_masks`` beside them."""
    out = []
    for folder, split in split_dirs(root):
        masks = child(root, f"{folder.name}_masks")
        if masks is not None:
            out.append((folder, masks, split))
    return out


def discover_siblings(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for folder, masks, split in sibling_dirs(root):
        samples += _pair_in(folder, masks, split, problems)
    return samples, problems


def class_dirs(base: Path) -> list[Path]:
    """The class folders of ``base``: sub-folders that are not split or ``*_masks`` folders."""
    return sorted(
        d
        for d in base.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and split_of(d.name) is None
        and not d.name.lower().endswith("_masks")
    )


def mask_folders(base: Path) -> list[tuple[Path, str | None]]:
    """``[(folder, class)]`` of the ``class_masks`` layout under ``base``: its class
    folders, or, without any, ``base`` itself (no class) when it holds masks beside images."""
    dirs = class_dirs(base)
    if dirs:
        return [(d, d.name) for d in dirs]
    return [(base, None)] if any(mask_stem(f) for f in images_in(base, MASK_EXTS)) else []


def discover_class_masks(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for base, split in split_roots(root):
        for cdir, label in mask_folders(base):
            masks: dict[str, list[tuple[int, Path]]] = {}
            images = []
            for f in images_in(cdir, MASK_EXTS):
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
                samples.append(Sample(img, tuple(p for _, p in found), label=label, split=split))
            for stem, found in masks.items():
                problems.append(f"mask without image: {found[0][1]} (no {cdir / stem}.*)")
    return samples, problems


def discover_imagefolder(root: Path) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    for base, split in split_roots(root):
        for cdir in class_dirs(base):
            for img in images_in(cdir):
                if mask_stem(img) is None:
                    samples.append(Sample(img, (), label=cdir.name, split=split))
    return samples, []


def _csv_split(value: str | None, path: Path, line: int) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    split = split_of(text)
    if split is None:  # an unknown split would silently put the row into the train pool
        names = ", ".join(n for names in SPLIT_NAMES.values() for n in names)
        raise DataError(f"{path} line {line}: split '{text}' is not one of {names} (or empty)")
    return split


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
            samples.append(
                Sample(
                    img,
                    masks,
                    label=(row.get("label") or "").strip() or None,
                    group=(row.get("group") or "").strip() or None,
                    split=_csv_split(row.get("split"), path, i),
                    # pixel size in mm, "0.7" or "0.7x0.8" (medtl.evaluation.segmentation.parse_spacing)
                    meta={"spacing": s} if (s := (row.get("spacing") or "").strip()) else {},
                )
            )
    return samples, problems


def volume_samples(
    pairs: list[tuple[Path, Path | None]], split: str | None, axis: int, empty_fraction: float
) -> list[Sample]:
    """One sample per kept slice of each ``(image, label)`` volume, grouped by volume id."""
    from medtl.data.readers.volumes import volume_slices

    samples = []
    for image, label in pairs:
        for ref, mask, meta in volume_slices(image, label, axis, empty_fraction):
            masks = (mask,) if mask is not None else ()
            samples.append(Sample(ref, masks, group=meta["volume"], split=split, meta=meta))
    return samples


def discover_volumes(
    root: Path, slice_axis: int = 2, empty_slice_fraction: float = 1.0
) -> tuple[list[Sample], list[str]]:
    """The ``volumes`` layout: one sample per kept slice, grouped by volume id."""

    samples: list[Sample] = []
    problems: list[str] = []
    for base, split in split_roots(root):
        if child(base, "images") is None:
            continue
        pairs, found = find_volumes(base)
        problems += found
        samples += volume_samples(pairs, split, slice_axis, empty_slice_fraction)
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


def find_volumes(
    base: Path, images: str = "images", labels: str = "labels"
) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """``[(image, label or None)]`` under ``base/images`` (+ ``base/labels``) and problems."""
    images_dir = child(base, images) or base / images
    found = sorted(p for p in images_dir.iterdir() if is_volume(p))
    labels_dir = child(base, labels)
    if labels_dir is None:
        return [(p, None) for p in found], []
    by_id = {volume_id(p): p for p in labels_dir.iterdir() if is_volume(p)}
    pairs, problems = [], []
    for img in found:
        lab = by_id.pop(volume_id(img), None)
        if lab is None:
            problems.append(f"image without mask: {img} (expected {labels_dir / img.name})")
            continue
        pairs.append((img, lab))
    problems += [f"mask without image: {p} (no {images_dir / p.name})" for p in by_id.values()]
    return pairs, problems
