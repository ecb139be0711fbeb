"""DICOM SEG files as masks (highdicom, in the ``[dicom]`` extra).

* :func:`seg_mask` reads a SEG of one source image into the array the mask rules of
  :mod:`medtl.data.masks.scheme` expect: one segment as ``0/1`` (binary), several
  non-overlapping segments as a label map whose values are the segment numbers.
  Overlapping segments cannot be one label map: an error pointing to one SEG per structure.
* :func:`seg_problems` checks each SEG against the DICOM image it is paired with (rows x
  columns, the referenced SOP instance) from the headers alone.
* :func:`seg_label_names` gives the segment labels as label names (``{number: label}``),
  used when neither ``data.labels`` nor ``labels.yaml`` names the labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.readers.dicom import header, is_dicom, is_seg
from medtl.utils.errors import DataError


def _referenced(ds: Any) -> set[str]:
    """The SOP instance UIDs a SEG header references (its Referenced Series Sequence)."""
    return {
        str(inst.ReferencedSOPInstanceUID)
        for series in getattr(ds, "ReferencedSeriesSequence", None) or []
        for inst in getattr(series, "ReferencedInstanceSequence", None) or []
    }


def seg_mask(path: str | Path) -> np.ndarray:
    """A DICOM SEG of one source image -> ``uint8 (H, W)``: one segment as 0/1, several as
    a label map whose values are the segment numbers (the mask rules of
    :mod:`medtl.data.masks.scheme` then decide binary or labels). Overlapping segments
    cannot be one label map: an error pointing to one SEG per structure
    (``masks/<structure>/``, the structures layout)."""
    p = Path(path)
    try:
        import highdicom as hd
    except ImportError:
        raise DataError(
            f"{p}: DICOM SEG masks need highdicom; run \"pip install 'medtl[dicom]'\""
        ) from None
    try:
        seg = hd.seg.segread(p)
        sources = [uid for _, _, uid in seg.get_source_image_uids()]
        if len(sources) != 1:
            raise DataError(
                f"{p}: DICOM SEG of {len(sources)} source images; give one SEG per image"
            )
        stack = seg.get_pixels_by_source_instance(sources, ignore_spatial_locations=True)[0]
    except DataError:
        raise
    except Exception as exc:  # highdicom raises many types for SEGs it cannot use
        cause = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(f"{p}: unreadable DICOM SEG ({cause}); re-export it") from None
    hits = stack > 0
    both = (hits.sum(axis=-1) > 1).any()
    if both:
        raise DataError(
            f"{p}: segments overlap, so one label map cannot hold them; export one SEG per "
            "structure into masks/<structure>/ (the structures layout)"
        )
    numbers = np.asarray(seg.segment_numbers, np.uint8)
    if len(numbers) == 1:
        return hits[..., 0].astype(np.uint8)
    return (hits * numbers).max(axis=-1).astype(np.uint8)


def seg_problems(samples: list[Any]) -> list[str]:
    """One line for each DICOM SEG mask that does not fit its DICOM image: another
    ``Rows x Columns``, or a SEG that does not reference the image's SOP instance. Reads
    headers only; masks of other kinds, SEGs of non-DICOM images and unreadable files
    (their own error) are not checked."""
    out = []
    for s in samples:
        for m in s.masks:
            try:
                if not is_dicom(m) or not is_seg(header(m)) or not is_dicom(s.image):
                    continue
                seg, img = header(m), header(s.image)
            except DataError:  # unreadable: reported where the file is read
                continue
            size, want = (seg.Columns, seg.Rows), (img.Columns, img.Rows)
            if size != want:
                out.append(
                    f"{m}: DICOM SEG of {size[0]}x{size[1]} does not fit its image {s.image} "
                    f"({want[0]}x{want[1]}); export the SEG on that image"
                )
            elif str(getattr(img, "SOPInstanceUID", "")) not in _referenced(seg):
                out.append(
                    f"{m}: DICOM SEG does not reference its image {s.image} (SOP instance "
                    f"{getattr(img, 'SOPInstanceUID', '?')}); pair each SEG with its source image"
                )
    return out


def _seg_headers(samples: list[Any]) -> list[Any]:
    """The headers of the samples' DICOM SEG masks (unreadable files left out)."""
    out = []
    for s in samples:
        for m in s.masks:
            try:
                if is_dicom(m) and is_seg(header(m)):
                    out.append(header(m))
            except DataError:  # unreadable: reported where the file is read
                continue
    return out


def seg_label_names(samples: list[Any]) -> dict[int, str] | None:
    """``{segment number: segment label}`` of the samples' DICOM SEG masks when they hold
    two or more segments and every SEG that has a number calls it the same; None otherwise
    (no SEG, one segment: a binary mask, or labels that disagree)."""
    names: dict[int, str] = {}
    for ds in _seg_headers(samples):
        for item in getattr(ds, "SegmentSequence", None) or []:
            number, label = int(item.SegmentNumber), str(getattr(item, "SegmentLabel", ""))
            if not label or names.setdefault(number, label) != label:
                return None
    return names if len(names) > 1 else None
