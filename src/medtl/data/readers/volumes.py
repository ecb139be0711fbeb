"""NIfTI volumes read as 2D slices, written back as label volumes.

The ``volumes`` layout: ``images/`` and ``labels/`` hold volumes with matching names
(``case01.nii.gz`` in both; ``labels/`` may be absent for unlabelled data). Each volume
gives one 2D sample per slice along ``data.slice_axis`` (voxel axis 0, 1 or 2 of the
stored array; a slice keeps the other two axes in their stored order, rows first), named
by a slice reference (:mod:`medtl.data.refs`). Rules:

- every slice of a volume carries the volume id as its group, so a split never separates
  one patient's slices;
- a label volume is read as a label map: its integer values (0 background), named by
  ``data.labels``, ``labels.yaml`` or an MSD ``dataset.json``; a binary volume (0/1) is a
  binary mask;
- slices whose label is empty are subsampled: ``data.empty_slice_fraction`` of them are
  kept, evenly spaced along the axis (deterministic; 1.0 keeps all, 0 none);
- intensity: an explicit window (``data.window``, e.g. CT in HU) when given, else the
  volume's own 0.5..99.5 percentile range (its min..max when that range is empty), one
  range for all slices of a volume, mapped linearly to 0..255 whatever the stored dtype
  (uint8 and float volumes up to 1e6 and more in one set, or 0..0.01 floats);
- the in-plane spacing (mm) comes from the header's zooms and is kept in ``meta``;
- a 4-D volume (other than a trailing axis of length 1) and a label whose shape differs
  from its image are one-line errors naming the file.

Example::

    >>> volume_id("vols/images/case01.nii.gz")
    'case01'
    >>> keep_evenly(10, 0.3)
    [0, 4, 9]
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.readers.caps import check_volume
from medtl.data.refs import parse_ref, slice_ref
from medtl.utils.errors import DataError
from medtl.utils.parallel import single_flight

VOLUME_EXTS = (".nii.gz", ".nii")
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def is_volume(path: str | Path) -> bool:
    """True for a NIfTI file name (``.nii`` / ``.nii.gz``)."""
    name = Path(path).name.lower()
    return any(name.endswith(e) for e in VOLUME_EXTS) and not name.startswith(".")


def volume_id(path: str | Path) -> str:
    """The file name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for ext in VOLUME_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise DataError(
            "NIfTI volumes need nibabel; run \"pip install 'medtl[volumes]'\" (or pip install nibabel)"
        ) from None
    return nibabel


def _open(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check data.root")
    try:
        return _nibabel().load(str(path))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{path}: not a readable NIfTI volume ({exc.__class__.__name__}); re-export it"
        ) from None


def volume_shape(path: str | Path) -> tuple[int, int, int]:
    """The 3-D shape from the header (a trailing axis of length 1 is dropped)."""
    path = Path(path)
    shape = tuple(int(n) for n in _open(path).shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise DataError(
            f"{path}: {len(shape)}-D volume {shape}; medtl reads 3-D volumes, "
            "split it into one 3-D file per channel or time point"
        )
    return shape  # type: ignore[return-value]


@single_flight  # decoding threads share one load
@lru_cache(maxsize=3)
def _load(path: str, mtime: float) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    shape = volume_shape(path)
    img = _open(Path(path))
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, np.asarray(img.affine), zooms


def load_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(data float32 (X, Y, Z), affine 4x4, zooms mm)``, the last few cached."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found; check data.root")
    check_volume(p, volume_shape(p))  # from the header, before any voxel is read
    return _load(str(p), p.stat().st_mtime)


def take_slice(data: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` as a view of ``data`` (no copy of the volume)."""
    return data[(slice(None),) * axis + (index,)]


def in_plane_spacing(zooms: tuple[float, ...], axis: int) -> tuple[float, float]:
    """``(row, column)`` spacing of a slice along ``axis``."""
    rest = [z for i, z in enumerate(zooms) if i != axis]
    return rest[0], rest[1]


@single_flight  # decoding threads share one load
@lru_cache(maxsize=8)
def _auto_range(path: str, mtime: float) -> tuple[float, float]:
    data = _load(path, mtime)[0]
    finite = data[np.isfinite(data)]
    if not finite.size:
        return 0.0, 0.0
    lo, hi = np.percentile(finite, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if hi <= lo:  # mostly one value (a sparse uint8 volume): the full range instead
        lo, hi = finite.min(), finite.max()
    return float(lo), float(hi)


def scale_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``lo..hi`` -> ``0..255`` linearly, clipped, as ``uint8`` (all 0 when ``hi <= lo``)."""
    if not hi > lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.nan_to_num(values.astype(np.float64), nan=lo) - lo) * (255.0 / (hi - lo))
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def slice_uint8(
    path: str | Path, axis: int, index: int, window: tuple[float, float] | None = None
) -> np.ndarray:
    """One slice as ``uint8 (H, W)`` by the intensity rule of the module docstring."""
    from medtl.data.readers.dicom import apply_window

    p = Path(path)
    data = load_volume(p)[0]
    if not 0 <= index < data.shape[axis]:
        raise DataError(f"{p}: slice {index} out of range along axis {axis}")
    values = take_slice(data, axis, index).astype(np.float64)
    if window is None:
        return scale_range(values, *_auto_range(str(p), p.stat().st_mtime))
    return apply_window(values, window)


def slice_mask(path: str | Path, axis: int, index: int) -> np.ndarray:
    """One slice of a label volume as its label values: ``uint8 (H, W)`` (``uint16`` when a
    value exceeds 255); non-integer values are rounded, negative ones are 0."""
    data = load_volume(path)[0]
    if not 0 <= index < data.shape[axis]:
        raise DataError(f"{path}: slice {index} out of range along axis {axis}")
    values = np.rint(take_slice(data, axis, index))
    values = np.clip(np.nan_to_num(values), 0, 65535)
    return values.astype(np.uint16 if values.size and values.max() > 255 else np.uint8)


def read_ref(path: str | Path, window: tuple[float, float] | None = None) -> np.ndarray:
    """Decode a volume slice reference: uint8 image or bool mask (see :mod:`medtl.data.refs`)."""
    parsed = parse_ref(path)
    if parsed is None or parsed[1] == "f":
        raise DataError(f"{path}: not a volume slice reference")
    file, axis, index, kind = parsed
    if kind == "mask":
        return slice_mask(file, int(axis), index)
    return slice_uint8(file, int(axis), index, window)


def slice_refs(path: str | Path, axis: int = 2) -> list[Path]:
    """The reference of every slice of a volume along ``axis``, in order."""
    return [slice_ref(path, axis, k) for k in range(volume_shape(path)[axis])]


def keep_evenly(n: int, fraction: float) -> list[int]:
    """``ceil(fraction * n)`` indices of ``range(n)``, evenly spaced, first and last included."""
    k = min(n, math.ceil(max(fraction, 0.0) * n))
    if k <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def volume_slices(
    image: Path, label: Path | None, axis: int, empty_fraction: float
) -> list[tuple[Path, Path | None, dict]]:
    """``(image ref, mask ref or None, meta)`` per kept slice of one volume."""
    shape = volume_shape(image)
    if axis not in (0, 1, 2):
        raise DataError(f"data.slice_axis={axis}: choose 0, 1 or 2 (a voxel axis)")
    keep = list(range(shape[axis]))
    if label is not None:
        if volume_shape(label) != shape:
            raise DataError(
                f"{label}: label shape {volume_shape(label)} differs from its image {image} "
                f"{shape}; resample the label onto the image grid"
            )
        lab = load_volume(label)[0]
        other = tuple(i for i in range(3) if i != axis)
        full = np.flatnonzero(np.any(lab > 0, axis=other))
        empty = [i for i in keep if i not in set(full.tolist())]
        empty_kept = [empty[i] for i in keep_evenly(len(empty), empty_fraction)]
        keep = sorted(set(full.tolist()) | set(empty_kept))
    zooms = load_volume(image)[2]
    out = []
    for k in keep:
        meta = {
            "volume": volume_id(image),
            "axis": axis,
            "index": k,
            "spacing": in_plane_spacing(zooms, axis),
        }
        mask = slice_ref(label, axis, k, "mask") if label is not None else None
        out.append((slice_ref(image, axis, k), mask, meta))
    return out


def write_label_volume(
    masks: list[np.ndarray], like: str | Path, out: str | Path, axis: int = 2
) -> Path:
    """Stack one ``(H, W)`` mask per slice of ``like`` along ``axis`` into a uint8 label
    volume saved with ``like``'s affine and header (``out`` ends in .nii or .nii.gz)."""
    nib = _nibabel()
    like = Path(like)
    shape = volume_shape(like)
    if len(masks) != shape[axis]:
        raise DataError(f"{like}: {len(masks)} slice masks for {shape[axis]} slices")
    vol = np.stack([np.asarray(m, dtype=np.uint8) for m in masks], axis=axis)
    if vol.shape != shape:
        raise DataError(f"{like}: predicted volume {vol.shape} differs from {shape}")
    src = _open(like)
    header = src.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(vol, src.affine, header)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.to_filename(str(out))
    return out


def volume_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """3-D Dice of two binary volumes (1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def volume_scores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-volume 3-D Dice from per-slice evaluation rows (``image`` a slice reference,
    ``dice``, ``pred_area``, ``true_area``); rows of plain images are ignored.

    A slice's overlap is recovered as ``dice * (pred + true) / 2`` (0 when both are
    empty), so the 3-D Dice is ``2 * sum(overlap) / sum(pred + true)`` over the volume's
    evaluated slices (1.0 when all are empty). With ``data.empty_slice_fraction < 1`` only
    the kept slices count.
    """
    acc: dict[str, list[float]] = {}
    for r in rows:
        parsed = parse_ref(r.get("image", ""))
        if parsed is None or parsed[1] == "f" or "pred_area" not in r:
            continue
        p, t = float(r["pred_area"]), float(r["true_area"])
        dice = float(r.get("dice") or 0.0)
        overlap = round(dice * (p + t) / 2) if p + t > 0 and math.isfinite(dice) else 0
        a = acc.setdefault(str(parsed[0]), [0, 0.0, 0.0, 0.0])
        a[0], a[1], a[2], a[3] = a[0] + 1, a[1] + overlap, a[2] + p, a[3] + t
    out = []
    for file, (n, overlap, p, t) in acc.items():
        dice = 1.0 if p + t == 0 else 2.0 * overlap / (p + t)
        out.append(
            {
                "volume": volume_id(file),
                "file": file,
                "n_slices": int(n),
                "dice_3d": round(dice, 6),
                "pred_voxels": int(p),
                "true_voxels": int(t),
            }
        )
    return out
