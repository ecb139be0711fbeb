"""The pixel cap: images, DICOMs and volumes refused from their header, before decoding.

A decompression bomb is a small file whose header promises a huge picture: a 16384x16384
PNG of zeros is a few hundred KB on disk and 268 MB decoded, a deflate DICOM or a
``.nii.gz`` of zeros shrinks a thousandfold. Every reader asks this module first, from
the header alone:

- PNG/JPEG/TIFF/BMP/GIF: width x height of every page/frame the header lists;
- DICOM: ``Rows x Columns x NumberOfFrames``; a deflated file (transfer syntax
  1.2.840.10008.1.2.1.99) is inflated as a stream, its header read from the first MB
  and the rest counted (never kept) up to the bytes its header accounts for;
- NIfTI: the product of the header's dims (the voxels a slice reader loads).

Above ``data.max_pixels`` (:func:`pixel_cap`; 150 million by default) the reader raises
a one-line :class:`~medtl.utils.errors.DataError` naming the file, the size and the cap.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medtl.utils.errors import DataError

#: images above this many pixels are refused from their header, before decoding: a
#: 20000x20000 PNG is 388 KB on disk and ~1.2 GB decoded.
MAX_PIXELS = 150_000_000
_max_pixels = [MAX_PIXELS]

#: a deflated DICOM may inflate to its pixel bytes plus this much (header, overlays)
DEFLATE_SLACK = 16 * 2**20
_HEADER_PREFIX = 2**20
_CHUNK = 2**20
DEFLATED = "1.2.840.10008.1.2.1.99"


@contextmanager
def pixel_cap(n: int | None) -> Iterator[None]:
    """Refuse images above ``n`` pixels for the block (None: the default); decoding
    threads started inside it see it too."""
    before = _max_pixels[0]
    _max_pixels[0] = int(n) if n else MAX_PIXELS
    try:
        yield
    finally:
        _max_pixels[0] = before


def current_cap() -> int:
    """The pixel cap in force (see :func:`pixel_cap`)."""
    return _max_pixels[0]


def check_pixels(path: str | Path, dims: tuple[int, ...], what: str = "pixels") -> None:
    """Raise DataError when the product of ``dims`` (from a header) is over the cap."""
    n = math.prod(int(d) for d in dims)
    if n > _max_pixels[0]:
        shape = "x".join(str(int(d)) for d in dims)
        raise DataError(
            f"{path}: {shape} = {n:,} {what}, over the cap of {_max_pixels[0]:,} "
            "(data.max_pixels); downscale it, or raise the cap if you have the memory"
        )


def check_pages(path: Path, img: Any) -> None:
    """Check every page/frame a Pillow image's header lists (multi-page TIFF, GIF)
    against the cap; only headers are parsed. Leaves ``img`` at its first page."""
    check_pixels(path, img.size)
    frames = int(getattr(img, "n_frames", 1) or 1)
    if frames <= 1:
        return
    try:
        for k in range(1, frames):
            img.seek(k)
            check_pixels(path, img.size)
    finally:
        img.seek(0)


def _dicom_dims(ds: Any) -> tuple[int, int, int]:
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    return rows, cols, int(getattr(ds, "NumberOfFrames", 1) or 1)


def check_dicom(path: str | Path, ds: Any) -> None:
    """``Rows x Columns x NumberOfFrames`` of a DICOM header against the cap."""
    rows, cols, frames = _dicom_dims(ds)
    dims = (rows, cols, frames) if frames > 1 else (rows, cols)
    check_pixels(path, dims, "pixels" if frames == 1 else "pixels (rows x columns x frames)")


def _pixel_bytes(ds: Any) -> int:
    rows, cols, frames = _dicom_dims(ds)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    return rows * cols * frames * samples * max(1, math.ceil(bits / 8))


def dicom_meta(path: str | Path) -> tuple[Any, int] | None:
    """``(file meta, offset of the data set)`` of a DICOM file with a preamble; None
    for a file without one (pydicom then guesses its encoding)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with open(path, "rb") as fh:
        try:
            read_preamble(fh, False)
        except Exception:  # no "DICM" marker: not a Part 10 file
            return None
        meta = _read_file_meta_info(fh)
        return meta, fh.tell()


def deflated_header(path: str | Path, data_offset: int) -> Any:
    """The header (no pixels) of a deflated DICOM whose deflated body starts at byte
    ``data_offset``, checked against the cap; then the rest of the stream is inflated
    chunk by chunk, counted and dropped, and a body that inflates beyond its header's
    pixel bytes plus :data:`DEFLATE_SLACK` is refused (pydicom would inflate it whole)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with open(path, "rb") as fh:
        fh.seek(data_offset)
        prefix = b""
        while len(prefix) < _HEADER_PREFIX and not inflater.eof:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            prefix += inflater.decompress(chunk, _HEADER_PREFIX - len(prefix))
            while inflater.unconsumed_tail and len(prefix) < _HEADER_PREFIX:
                prefix += inflater.decompress(
                    inflater.unconsumed_tail, _HEADER_PREFIX - len(prefix)
                )
        try:
            ds = read_dataset(
                DicomBytesIO(prefix[:_HEADER_PREFIX]),
                is_implicit_VR=False,
                is_little_endian=True,
                stop_when=lambda tag, vr, length: tag >= 0x7FE00000,
            )
        except Exception as exc:  # pydicom raises many types for a cut or corrupt header
            raise DataError(
                f"{path}: deflated DICOM whose header does not fit its first "
                f"{_HEADER_PREFIX:,} bytes ({exc.__class__.__name__}); re-export it uncompressed"
            ) from None
        check_dicom(path, ds)
        limit = _pixel_bytes(ds) + DEFLATE_SLACK
        total = len(prefix) + _count(inflater, fh, limit - len(prefix))
    if total > limit:
        raise DataError(
            f"{path}: deflated DICOM inflates to more than {limit:,} bytes, beyond what its "
            f"header's {'x'.join(map(str, _dicom_dims(ds)))} pixels need; re-export it"
        )
    return ds


def _count(inflater: Any, fh: Any, budget: int) -> int:
    """Bytes the rest of the stream inflates to, stopping once past ``budget``."""
    total, tail = 0, inflater.unconsumed_tail
    while total <= budget:
        if not tail:
            if inflater.eof:
                break
            tail = fh.read(_CHUNK)
            if not tail:
                break
        total += len(inflater.decompress(tail, _CHUNK))
        tail = inflater.unconsumed_tail
    return total


def check_volume(path: str | Path, shape: tuple[int, ...]) -> None:
    """The voxels of a NIfTI header (every dim) against the cap."""
    check_pixels(path, shape, "voxels")
