"""DICOM decoding: modality LUT, VOI window, MONOCHROME1, frames, pixel spacing.

The rule, in order (what :func:`dicom_to_uint8` does):

1. **Modality LUT**: ``RescaleSlope``/``RescaleIntercept`` (or a Modality LUT Sequence)
   turn stored values into modality units (Hounsfield units for CT).
2. **VOI window** to ``0..255``, the first of: an explicit window (``data.window=C,W``
   or a preset name, :data:`WINDOW_PRESETS`), the file's VOI LUT Sequence, the file's
   ``WindowCenter``/``WindowWidth`` (the first pair when several), a data-set-wide range
   (``fallback``: :func:`dataset_range` over all DICOM files of the data set, so every
   image of the set is scaled alike), and only then the image's own min..max.
   The linear window is DICOM's (PS3.3 C.11.2.1.2): values ``<= C - 0.5 - (W-1)/2`` are
   0, values ``> C - 0.5 + (W-1)/2`` are 255, linear in between.
3. **MONOCHROME1** (low values shown bright) is inverted after windowing, so a
   MONOCHROME1 file and its MONOCHROME2 twin decode to the same pixels.
4. Multi-frame files are read frame by frame (``frame``); each frame is one 2D slice.

A DICOM SEG file (:func:`is_seg`) is a mask, never an image: :mod:`medtl.data.readers.seg`
reads it.

Compressed transfer syntaxes decode through pydicom's pixel handlers; when the handler is
missing the error names the packages to install.

Example::

    >>> window = parse_window("lung")
    >>> window
    (-600.0, 1500.0)
    >>> parse_window("40,400")
    (40.0, 400.0)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medtl.configuration.windows import WINDOW_PRESETS, Window, parse_window  # noqa: F401
from medtl.data.readers import caps
from medtl.utils.errors import DataError
from medtl.utils.parallel import single_flight

_DECODERS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise DataError(
            "DICOM needs pydicom; run \"pip install 'medtl[dicom]'\" (or pip install pydicom)"
        ) from None
    return pydicom


@lru_cache(maxsize=4)
def _header(path: str, mtime: float) -> Any:
    pydicom = _pydicom()
    try:
        meta = caps.dicom_meta(path)
        if meta is not None and str(getattr(meta[0], "TransferSyntaxUID", "")) == caps.DEFLATED:
            ds = caps.deflated_header(path, meta[1])  # pydicom would inflate the whole file
            ds.file_meta = meta[0]
            return ds
        return pydicom.dcmread(path, stop_before_pixels=True)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise DataError(
            f"{path}: unreadable DICOM ({exc.__class__.__name__}); re-export it"
        ) from None


def header(path: str | Path) -> Any:
    """The file's dataset without pixel data (cached by path and mtime)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found; check data.root or remove it from the manifest")
    return _header(str(p), p.stat().st_mtime)


#: suffixes of files that are never DICOM (read by PIL or nibabel)
_NOT_DICOM = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".csv", ".json", ".yaml")


@lru_cache(maxsize=65536)
def _has_preamble(path: str, mtime: float) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom(path: str | Path) -> bool:
    """A DICOM file: a ``.dcm`` name, or ``DICM`` at byte 128 (PACS/CD exports name files
    without an extension). Only the first 132 bytes are read."""
    p = Path(path)
    if p.suffix.lower() == ".dcm":
        return True
    if p.suffix.lower() in _NOT_DICOM or not p.is_file():
        return False
    return _has_preamble(str(p), p.stat().st_mtime)


#: SOP classes of secondary captures (PS3.4 B.5): screenshots, often RGB burnt-in reports
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def kind_of(ds: Any) -> str:
    """What a DICOM header holds: ``image``, or the reason it is no training image:
    ``DICOMDIR``, ``no pixel data`` (reports, structured reports, presentation states),
    ``localizer`` (scout views, ``ImageType`` LOCALIZER), ``RGB secondary capture``,
    ``segmentation`` (a DICOM SEG: a mask, :mod:`medtl.data.readers.seg`)."""
    meta = getattr(ds, "file_meta", None)
    sop = str(getattr(meta, "MediaStorageSOPClassUID", "") or getattr(ds, "SOPClassUID", ""))
    if sop == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in ds:
        return "DICOMDIR"
    if is_seg(ds):
        return "segmentation"
    if "Rows" not in ds or "Columns" not in ds:
        return "no pixel data"
    image_type = [str(v).upper() for v in (getattr(ds, "ImageType", None) or [])]
    if "LOCALIZER" in image_type:
        return "localizer"
    colour = int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1
    if colour and sop.startswith(_SECONDARY_CAPTURE):
        return "RGB secondary capture"
    return "image"


def n_frames(path: str | Path) -> int:
    """``NumberOfFrames`` (1 when absent)."""
    return int(getattr(header(path), "NumberOfFrames", 1) or 1)


def pixel_spacing(path: str | Path) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm from ``PixelSpacing`` (or ``ImagerPixelSpacing``)."""
    ds = header(path)
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, key, None)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return None


@single_flight  # decoding threads share one load
@lru_cache(maxsize=2)
def _pixels(path: str, mtime: float) -> tuple[Any, np.ndarray]:
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise DataError(
            f"{path}: unreadable DICOM ({exc.__class__.__name__}); re-export it"
        ) from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise DataError(
            f"{path}: DICOM without pixel data (a report or structured file); "
            "move it out of the data folder"
        )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:
        if syntax is not None and getattr(syntax, "is_compressed", False):
            raise DataError(
                f"{path}: compressed DICOM ({syntax.name}) that pydicom could not decode; "
                f"install a decoder ({_DECODERS}) or re-export it uncompressed"
            ) from None
        raise DataError(
            f"{path}: unreadable DICOM pixel data ({exc.__class__.__name__}); re-export it"
        ) from None
    return ds, arr


def _modality(arr: np.ndarray, ds: Any) -> np.ndarray:
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def modality_values(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Pixels of one frame (or a single-frame file) in modality units, float64.

    Colour files (``SamplesPerPixel`` 3) come back ``(H, W, 3)`` without the LUT.
    """
    p = Path(path)
    if is_seg(header(p)):
        raise DataError(
            f"{p}: a DICOM SEG is a mask, not an image; give it as the mask of its image "
            "(masks/ folder or the manifest's mask column)"
        )
    caps.check_dicom(p, header(p))  # from the header, before any decode
    ds, arr = _pixels(str(p), p.stat().st_mtime)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        if frame is None:
            raise DataError(f"{p}: {frames} frames; read it through a layout (frames as slices)")
        if not 0 <= frame < frames:
            raise DataError(f"{p}: frame {frame} out of range (file has {frames})")
        arr = arr[frame]
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1:
        return arr.astype(np.float64)
    return _modality(arr, ds)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """DICOM's linear VOI window (PS3.3 C.11.2.1.2) -> ``uint8``."""
    centre, width = window
    lo = centre - 0.5 - (width - 1) / 2
    scaled = ((values - (centre - 0.5)) / max(width - 1, 1e-9) + 0.5) * 255.0
    out = np.clip(scaled, 0, 255)
    out[values <= lo] = 0
    out[values > lo + (width - 1)] = 255
    return np.round(out).astype(np.uint8)


def _first(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def file_window(ds: Any) -> Window | None:
    """The file's first ``WindowCenter``/``WindowWidth`` pair, if any."""
    centre, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if centre is None or width is None:
        return None
    return _first(centre), max(_first(width), 1.0)


def _voi_lut(values: np.ndarray, ds: Any) -> np.ndarray:
    try:
        from pydicom.pixels import apply_voi_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_voi_lut
    item = ds.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2])
    out = np.asarray(apply_voi_lut(values.astype(np.int64), ds, prefer_lut=True), np.float64)
    return np.round(np.clip(out / (2**bits - 1), 0, 1) * 255).astype(np.uint8)


def range_window(lo: float, hi: float) -> Window:
    """The window mapping ``lo..hi`` to ``0..255``."""
    return (lo + hi) / 2 + 0.5, max(hi - lo, 1.0) + 1


def dicom_to_uint8(
    path: str | Path,
    frame: int | None = None,
    window: Window | None = None,
    fallback: Window | None = None,
) -> np.ndarray:
    """Decode one DICOM image (or frame) to ``uint8`` by the module's rule.

    ``window`` overrides the file; ``fallback`` (a data-set-wide window) is used when the
    file has none. Returns ``(H, W)`` for grey, ``(H, W, 3)`` for colour files.
    """
    values = modality_values(path, frame)
    p = Path(path)
    ds, _ = _pixels(str(p), p.stat().st_mtime)
    if values.ndim == 3:  # colour: no VOI; 8-bit kept, wider values scaled by their range
        if values.max() <= 255 and values.min() >= 0:
            return values.astype(np.uint8)
        return apply_window(values, range_window(float(values.min()), float(values.max())))
    if window is None and "VOILUTSequence" in ds:
        out = _voi_lut(values, ds)
    else:
        chosen = window or file_window(ds) or fallback
        if chosen is None:
            chosen = range_window(float(values.min()), float(values.max()))
        out = apply_window(values, chosen)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out
    return out


def dataset_range(paths: list[Path]) -> Window | None:
    """A data-set-wide window: min..max of the modality values over those ``paths`` that
    carry no window of their own (None when every file has one, or there are no DICOMs).

    Reads every such file once; frames of multi-frame files all count.
    """
    lo, hi = np.inf, -np.inf
    for p in paths:
        ds = header(p)
        if file_window(ds) is not None or "VOILUTSequence" in ds:
            continue
        for f in range(n_frames(p)) if n_frames(p) > 1 else [None]:
            v = modality_values(p, f)
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    if not np.isfinite(lo):
        return None
    return range_window(lo, hi)


#: SOP class of DICOM Segmentation Storage (PS3.4 B.5)
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def is_seg(ds: Any) -> bool:
    """A DICOM SEG header (by SOP class, or ``Modality`` SEG)."""
    meta = getattr(ds, "file_meta", None)
    sop = str(getattr(ds, "SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", ""))
    return sop == SEG_SOP_CLASS or str(getattr(ds, "Modality", "")).upper() == "SEG"


def stored_values(path: str | Path) -> np.ndarray:
    """What a DICOM file holds as a mask array: :func:`medtl.data.readers.seg.seg_mask` for
    a DICOM SEG, else the pixels in modality units (:func:`modality_values`)."""
    if is_seg(header(path)):
        from medtl.data.readers.seg import seg_mask

        return seg_mask(path)
    return modality_values(path)
