"""Decode images and masks into one representation; errors name the file.

Images: PNG/JPEG/TIFF/BMP (8 or 16 bit; grey, RGB, RGBA, palette), DICOM (``[dicom]``
extra; modality LUT, VOI window, MONOCHROME1: :mod:`medtl.data.readers.dicom`) and slices of
NIfTI volumes (``[volumes]`` extra; :mod:`medtl.data.readers.volumes`, named by slice references,
:mod:`medtl.data.refs`) become ``uint8`` arrays of shape ``(H, W, 3)``. 16-bit and float
PNG/TIFF images are rescaled linearly from their own min..max to 0..255; RGBA drops
alpha; grey is repeated to three channels.

Masks (the binarisation rule): each mask file is read as one channel (colour masks take
the maximum over channels, alpha ignored; palette masks use the palette index, GIF masks
their colours). A pixel
is foreground when its value is >= half the file's value range (128 for 8 bit, 32768 for
16 bit; a 16-bit mask whose maximum is below 32768 uses half its maximum, rounded up) or,
for label-style masks whose maximum is 1, when it is 1. Float masks use 0.5 when their
maximum is <= 1, else 128. Several masks of one
image are merged by union. Result: ``bool`` array ``(H, W)``. Whether masks are binary at
all, or label maps, palette or colour masks, is decided per data set by
:mod:`medtl.data.masks.scheme` (``data.mask_mode``); label masks read as ``uint8`` label indices.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medtl.data.readers import kept
from medtl.data.readers.caps import MAX_PIXELS, check_pages, current_cap, pixel_cap  # noqa: F401 (public here too)
from medtl.utils.errors import DataError

Image.MAX_IMAGE_PIXELS = 20_000**2  # Pillow's own refusal (above twice this) stays a backstop


#: aspect ratios that differ by less than this share are "the same" (rounding of odd sizes)
ASPECT_TOLERANCE = 0.02


def fit_mask(m: np.ndarray, shape: tuple[int, int], path: Path, resize: str) -> np.ndarray:
    """``m`` at the image's ``shape``: resized by nearest neighbour when ``resize``
    (``data.mask_resize``) is ``nearest`` and the aspect ratios agree, else a DataError
    naming the file and the fix."""
    h, w = m.shape[:2]
    same_aspect = abs((w / h) / (shape[1] / shape[0]) - 1) < ASPECT_TOLERANCE
    if resize == "nearest" and same_aspect:
        rows = (np.arange(shape[0]) * h // shape[0]).clip(0, h - 1)
        cols = (np.arange(shape[1]) * w // shape[1]).clip(0, w - 1)
        return m[rows][:, cols]
    fix = (
        "set data.mask_resize=nearest to resize it, or resize the mask to the image"
        if same_aspect
        else "its aspect ratio differs too: crop or re-export the mask at the image's size"
    )
    raise DataError(
        f"{path}: mask size {w}x{h} differs from its image {shape[1]}x{shape[0]}; {fix}"
    )


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check data.root or remove it from the manifest")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); re-export or delete it")
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's backstop, above 2 x 20000^2
        n = re.search(r"\((\d+) pixels\)", str(exc))
        raise DataError(
            f"{path}: {int(n[1]) if n else 0:,} pixels, over the cap of {current_cap():,} "
            "(data.max_pixels) and Pillow's limit; downscale it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    try:
        check_pages(path, img)  # every page, from the headers, before decoding
        img.load()
        return img
    except DataError:
        img.close()
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        img.close()
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: BaseException) -> DataError:
    return DataError(
        f"{path}: not a readable image ({exc.__class__.__name__}); re-export it as PNG or delete it"
    )


def _read_special(path: Path) -> np.ndarray | None:
    """Raw values of a DICOM, a DICOM frame or a volume slice reference; None otherwise."""
    from medtl.data.refs import parse_ref

    parsed = parse_ref(path)
    if parsed is not None:
        file, axis, index, _ = parsed
        if axis == "f":
            from medtl.data.readers.dicom import modality_values

            return modality_values(file, index)
        from medtl.data.readers.volumes import read_ref

        return read_ref(path)
    from medtl.data.readers.dicom import is_dicom

    if is_dicom(path):  # by name or by content (PACS exports: no extension)
        from medtl.data.readers.dicom import stored_values

        return stored_values(path)  # a DICOM SEG: its segments as a mask
    return None


def read_array(
    path: str | Path, palette_rgb: bool = False, header: dict[str, Any] | None = None
) -> np.ndarray:
    """The file's pixels as stored: ``(H, W)`` or ``(H, W, C)``, native dtype.

    Palette images give their indices (what masks need) unless ``palette_rgb``; GIFs
    always give their colours: a GIF stores every picture as palette indices in an order
    its encoder chose (PIL writes a black/white mask with white as index 0), so only the
    colours mean anything (``<name>_mask.gif`` masks then follow the colour-mask rule).
    ``header``, when given, receives the file's Pillow ``mode`` and ``palette`` (mode P)
    from the same open (DICOMs and slice references leave it empty).
    """
    path = Path(path)
    special = _read_special(path)
    if special is not None:
        return special
    img = _open(path)
    if header is not None:
        header.update(mode=img.mode, palette=img.getpalette() if img.mode == "P" else None)
    if img.mode == "P" and (palette_rgb or path.suffix.lower() == ".gif"):
        return np.asarray(img.convert("RGB"))
    if img.mode == "P":
        # palette: keep indices for masks; images are converted by read_image
        return np.asarray(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img).astype(np.int32 if img.mode == "I" else np.uint16)
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    if img.mode not in ("L", "RGB", "RGBA", "LA", "1"):
        img = img.convert("RGB")
    return np.asarray(img)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Rescale any numeric array to uint8 (8-bit kept; others min..max -> 0..255)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _decode_special(path: Path, window, fallback) -> np.ndarray | None:
    from medtl.data.refs import parse_ref

    parsed = parse_ref(path)
    if parsed is not None and parsed[1] != "f":
        from medtl.data.readers.volumes import read_ref

        return read_ref(path, window)
    from medtl.data.readers.dicom import dicom_to_uint8, is_dicom

    if parsed is not None or is_dicom(path):
        file, frame = (parsed[0], parsed[2]) if parsed else (path, None)
        return dicom_to_uint8(file, frame, window, fallback)
    return None


def read_image(
    path: str | Path,
    window: tuple[float, float] | None = None,
    fallback: tuple[float, float] | None = None,
) -> np.ndarray:
    """Decode an image to ``uint8 (H, W, 3)``; raise DataError naming the file.

    ``window`` (centre, width) overrides the VOI window of DICOMs and volume slices;
    ``fallback`` is the data-set-wide window for DICOMs that carry none
    (:func:`medtl.data.readers.dicom.dataset_range`). Other formats ignore both.
    """
    path = Path(path)
    arr = _decode_special(path, window, fallback)
    if arr is None:
        arr = read_array(path, palette_rgb=True)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):  # LA / RGBA: drop alpha
        arr = arr[..., : arr.shape[2] - 1]
    arr = to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: unsupported image shape {arr.shape}; save it as grey or RGB")
    return np.ascontiguousarray(arr)


def value_counts(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of an integer or boolean array and how many pixels hold each,
    sorted (``np.unique(..., return_counts=True)``); 8-bit and boolean arrays are counted
    with one ``bincount`` pass instead of a sort."""
    if arr.dtype in (np.uint8, np.bool_):
        counts = np.bincount(arr.reshape(-1).view(np.uint8), minlength=2)
        values = np.flatnonzero(counts)
        return values.astype(arr.dtype), counts[values]
    return np.unique(arr, return_counts=True)


def channel_max(arr: np.ndarray) -> np.ndarray:
    """The per-pixel maximum over the colour channels (the first three; alpha ignored) of an
    ``(H, W, C)`` mask, ``(H, W)`` unchanged: pairwise maxima of the channel planes, 10-20x
    faster than a reduction over a 3-long last axis."""
    if arr.ndim != 3:
        return arr
    planes = [arr[..., c] for c in range(3 if arr.shape[2] >= 3 else 1)]
    out = planes[0].copy()
    for p in planes[1:]:
        np.maximum(out, p, out=out)
    return out


def binarise_mask(arr: np.ndarray) -> np.ndarray:
    """Apply the documented binarisation rule to one mask array -> ``bool (H, W)``."""
    arr = channel_max(arr)
    if arr.dtype == bool:
        return arr.copy()
    peak = arr.max() if arr.size else 0
    # floats before the label rule: 0..1 floats are probabilities, not 0/1 labels
    if np.issubdtype(arr.dtype, np.floating):
        return arr >= (0.5 if peak <= 1.0 else 128)
    if peak <= 1:
        return arr >= 1
    if arr.dtype == np.uint8:
        return arr >= 128
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and peak > 255):
        return arr >= 32768 if peak > 32767 else arr >= (peak + 1) // 2
    return arr >= 128


def read_mask(
    paths: tuple[Path, ...] | list[Path],
    shape: tuple[int, int] | None = None,
    scheme: Any = None,
) -> np.ndarray:
    """Read and merge (union) the mask files of one image -> ``bool (H, W)``.

    ``shape`` is the image's ``(H, W)``; a mask of another size is an error naming the file
    and ``data.mask_resize=nearest``, unless ``scheme.resize`` is ``nearest`` (then masks of
    the image's aspect ratio are resized to it). ``scheme`` (a
    :class:`medtl.data.masks.scheme.MaskScheme`; None: binary, no resize) with labels gives
    ``uint8 (H, W)`` label indices instead (a later file's labels over an earlier one's).
    """
    if scheme is not None and getattr(scheme, "multilabel", False):
        return _structure_bits(paths, shape)
    labels = scheme is not None and bool(scheme.values)
    resize = getattr(scheme, "resize", "none")
    merged: np.ndarray | None = None
    for p in paths:
        arr = _mask_pixels(Path(p))
        m = scheme.to_index(arr, p) if labels else binarise_mask(arr)
        if shape is not None and m.shape != tuple(shape):
            m = fit_mask(m, tuple(shape), Path(p), resize)
        if merged is not None and m.shape != merged.shape:
            raise DataError(f"{p}: mask size differs from the other masks of the same image")
        if merged is None:
            merged = m
        else:
            merged = np.where(m > 0, m, merged) if labels else (merged | m)
    if merged is None:
        if shape is None:
            raise DataError("read_mask needs at least one mask file or an image shape")
        merged = np.zeros(shape, dtype=np.uint8 if labels else bool)
    return merged


def _mask_pixels(path: Path) -> np.ndarray:
    """A mask file's pixels: kept by the mask scan (:mod:`medtl.data.readers.kept`), else read."""
    got = kept.take(path)
    return read_array(path) if got is None else got


def _structure_bits(
    paths: tuple[Path, ...] | list[Path], shape: tuple[int, int] | None
) -> np.ndarray:
    """One binary mask per structure -> ``uint8 (H, W)``, structure ``k`` in bit ``k``
    (overlaps kept). Structures of different sizes, or of another size than the image,
    are an error naming the file."""
    out: np.ndarray | None = None
    for k, p in enumerate(paths):
        m = binarise_mask(_mask_pixels(Path(p)))
        if out is not None and m.shape != out.shape:
            raise DataError(
                f"{p}: structure mask {m.shape[1]}x{m.shape[0]} differs from {paths[0]} "
                f"({out.shape[1]}x{out.shape[0]}); save every structure of an image at one size"
            )
        if shape is not None and m.shape != tuple(shape):
            raise DataError(
                f"{p}: mask size {m.shape[1]}x{m.shape[0]} differs from its image "
                f"{shape[1]}x{shape[0]}; resize the mask to the image (nearest neighbour)"
            )
        out = np.zeros(m.shape, np.uint8) if out is None else out
        out |= m.astype(np.uint8) << k
    if out is None:
        if shape is None:
            raise DataError("read_mask needs at least one mask file or an image shape")
        out = np.zeros(shape, np.uint8)
    return out


def pixel_spacing(path: str | Path) -> tuple[float, float] | None:
    """``(row, column)`` pixel spacing in mm of an image path, when the file records it:
    DICOM ``PixelSpacing``, a NIfTI slice's in-plane zooms; None for PNG/JPEG/TIFF."""
    from medtl.data.refs import parse_ref

    path = Path(path)
    parsed = parse_ref(path)
    file = parsed[0] if parsed else path
    if parsed is not None and parsed[1] != "f":
        from medtl.data.readers.volumes import in_plane_spacing, load_volume

        return in_plane_spacing(load_volume(file)[2], int(parsed[1]))
    if file.suffix.lower() == ".dcm":
        from medtl.data.readers.dicom import pixel_spacing as dicom_spacing

        return dicom_spacing(file)
    return None
