"""The ``dicom`` layout: a PACS or CD export as it comes (``PATIENT/STUDY/SERIES/`` files,
often without an extension, a ``DICOMDIR``, reports and screenshots beside the images).

Rules:

- A file is DICOM by content (``DICM`` at byte 128, :func:`medtl.data.readers.dicom.is_dicom`)
  or by a ``.dcm`` name, at any depth. Only headers are read (pydicom ``stop_before_pixels``).
- Files that are no training image are skipped and counted by kind
  (:func:`medtl.data.readers.dicom.kind_of`: ``DICOMDIR``, ``no pixel data``, ``localizer``,
  ``RGB secondary capture``); the counts go to the log and the audit.
- Every image is grouped by its ``PatientID`` (slices of one patient stay on one side of a
  split); a file without one falls back to its ``StudyInstanceUID``, then to its folder,
  and the log says how many fell back.
- Classes (optional): ``data.label_tag`` (a DICOM keyword such as ``BodyPartExamined``, or a
  tag ``0018,0015``) or ``data.label_level`` (the N-th folder below the root, 1 = the first);
  a CSV manifest naming the files is the third way (the ``csv`` layout reads them too).
- Multi-frame files become one sample per frame (group: the patient).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl.utils.errors import ConfigError, DataError

if TYPE_CHECKING:  # medtl.data.layouts registers this layout: imported lazily here
    from medtl.data.layouts.base import Sample

log = logging.getLogger("medtl")

#: files looked at by the auto-detection before it gives up
DETECT_LIMIT = 2000


@dataclass
class TreeScan:
    """What a DICOM tree holds: image files with their headers, skipped files by kind."""

    images: list[tuple[Path, Any]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # kind -> one such file
    unreadable: list[str] = field(default_factory=list)

    def skipped_text(self) -> str:
        """``"DICOMDIR=1, no pixel data=2"`` (empty when nothing was skipped)."""
        return ", ".join(f"{k}={n}" for k, n in sorted(self.skipped.items()))


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def looks_like_tree(root: Path) -> bool:
    """Auto-detection: a ``DICOMDIR``, a DICOM file without the ``.dcm`` name, or ``.dcm``
    files nested deeper than ``<class>/<file>``."""
    from medtl.data.layouts.base import IMAGE_EXTS, split_of
    from medtl.data.readers.dicom import is_dicom

    if root.is_file():
        return root.suffix.lower() != ".csv" and is_dicom(root)
    files = (p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for k, p in enumerate(files):
        if k >= DETECT_LIMIT:
            break
        if p.name.upper() == "DICOMDIR":
            return True
        suffix = p.suffix.lower()
        parts = p.relative_to(root).parts
        depth = len(parts) - (
            split_of(parts[0]) is not None
        )  # train/<class>/x.dcm is imagefolder's
        if suffix == ".dcm" and depth > 2:
            return True
        if suffix not in IMAGE_EXTS and is_dicom(p):
            return True
    return False


def scan_tree(root: str | Path) -> TreeScan:
    """Headers of every DICOM file under ``root`` (cached while no file changes)."""
    root = Path(root)
    files = tuple((str(p), p.stat().st_mtime) for p in _files(root))
    return _scan(files)


@lru_cache(maxsize=4)
def _scan(files: tuple[tuple[str, float], ...]) -> TreeScan:
    from medtl.data.readers.dicom import header, is_dicom, kind_of

    out = TreeScan()
    for name, _ in files:
        path = Path(name)
        if not is_dicom(path):
            continue
        try:
            ds = header(path)
        except DataError as exc:
            out.unreadable.append(str(exc))
            continue
        kind = "DICOMDIR" if path.name.upper() == "DICOMDIR" else kind_of(ds)
        if kind == "image":
            out.images.append((path, ds))
        else:
            out.skipped[kind] += 1
            out.examples.setdefault(kind, str(path))
    return out


def _text(ds: Any, key: str) -> str:
    return str(getattr(ds, key, "") or "").strip()


def _group(path: Path, ds: Any, fallbacks: Counter) -> str:
    """``PatientID``, else ``StudyInstanceUID``, else the folder (counted in ``fallbacks``)."""
    pid = _text(ds, "PatientID")
    if pid:
        return pid
    study = _text(ds, "StudyInstanceUID")
    if study:
        fallbacks["StudyInstanceUID"] += 1
        return f"study:{study}"
    fallbacks["folder"] += 1
    return f"folder:{path.parent}"


def _samples_of(path: Path, ds: Any, group: str) -> list[Sample]:
    from medtl.data.layouts.base import Sample
    from medtl.data.refs import slice_ref

    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    meta = {"patient": group, "modality": _text(ds, "Modality")}
    if frames <= 1:
        return [Sample(path, group=group, meta=meta)]
    return [
        Sample(slice_ref(path, "f", k), group=group, meta={**meta, "frame": k})
        for k in range(frames)
    ]


def discover_dicom(root: str | Path) -> tuple[list[Sample], list[str]]:
    """The ``dicom`` layout (module docstring): samples grouped by patient, and problems
    (unreadable DICOM files). Logs what was skipped and how the images were grouped."""
    root = Path(root)
    scan = scan_tree(root)
    if not scan.images and scan.skipped:
        kind, example = next(iter(sorted(scan.examples.items())))
        raise DataError(
            f"{example}: no DICOM image to learn from under {root} (skipped {scan.skipped_text()}; "
            f"this one: {kind}); point data.root at the folder holding the image series"
        )
    fallbacks: Counter = Counter()
    samples: list[Sample] = []
    for path, ds in scan.images:
        samples += _samples_of(path, ds, _group(path, ds, fallbacks))
    patients = len({s.group for s in samples})
    log.info(
        f"DICOM tree {root}: {len(scan.images)} image files, {patients} patient groups "
        f"(PatientID); skipped {scan.skipped_text() or 'none'}"
    )
    for key, n in sorted(fallbacks.items()):
        log.warning(f"DICOM tree {root}: {n} image files without PatientID, grouped by {key}")
    return samples, list(scan.unreadable)


def _tag_value(ds: Any, tag: str, path: Path) -> str:
    key = tag.strip()
    if "," in key:  # "0018,0015"
        group, elem = (int(x, 16) for x in key.split(",", 1))
        element = ds.get((group, elem))
        value = getattr(element, "value", None)
    else:
        value = getattr(ds, key, None)
    text = str(value if value is not None else "").strip()
    if not text:
        raise DataError(
            f"{path}: no value for {tag} (data.label_tag); choose a tag every image has, "
            "or take classes from a folder (data.label_level) or a CSV manifest"
        )
    return text


def _check_tag(tag: str) -> None:
    from pydicom.datadict import tag_for_keyword

    if "," in tag:
        try:
            [int(x, 16) for x in tag.split(",", 1)]
        except ValueError:
            raise ConfigError(f"data.label_tag={tag}: write a keyword or 'gggg,eeee'") from None
    elif tag_for_keyword(tag.strip()) is None:
        raise ConfigError(
            f"data.label_tag={tag}: not a DICOM keyword; e.g. BodyPartExamined or 0018,0015"
        )


def _folder_label(sample: Sample, root: Path, level: int) -> str:
    from medtl.data.refs import source_file

    file = source_file(sample.image)
    parts = file.relative_to(root).parts[:-1]
    if level > len(parts):
        raise DataError(
            f"{file}: only {len(parts)} folder level(s) below {root}; data.label_level={level} "
            "must name a folder every image sits in"
        )
    return parts[level - 1]


def apply_labels(ds: Any, tag: str | None, level: int | None) -> None:
    """Classes of a ``dicom`` data set from ``data.label_tag`` or ``data.label_level``
    (in place; ``ds.classes`` recomputed). Without either the samples keep no label."""
    if not tag and not level:
        return
    if tag and level:
        raise ConfigError("set data.label_tag or data.label_level, not both")
    from medtl.data.readers.dicom import header
    from medtl.data.refs import source_file

    if tag:
        _check_tag(tag)
    root = Path(ds.root)
    out = []
    for s in ds.samples:
        if tag:
            file = source_file(s.image)
            label = _tag_value(header(file), tag, file)
        else:
            label = _folder_label(s, root, int(level or 0))
        out.append(replace(s, label=label))
    ds.samples = out
    ds.classes = sorted({s.label for s in out if s.label is not None})
    source = f"DICOM tag {tag}" if tag else f"folder level {level}"
    log.info(f"classes from {source}: {', '.join(ds.classes)}")
