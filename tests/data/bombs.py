"""Small files whose headers promise huge pictures (decompression bombs), made without
ever holding the big picture in memory: zero bytes are streamed through a compressor."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

_ZEROS = bytes(2**20)


def _deflate_zeros(n: int, raw: bool = False, prefix: bytes = b"") -> bytes:
    """``prefix`` then ``n`` zero bytes, zlib (or raw deflate) compressed, streamed."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    out = [comp.compress(prefix)]
    while n > 0:
        k = min(n, len(_ZEROS))
        out.append(comp.compress(_ZEROS[:k]))
        n -= k
    out.append(comp.flush())
    return b"".join(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int = 16384) -> Path:
    """A grey 8-bit PNG of ``side`` x ``side`` zeros (16384: 268 MB decoded, ~260 KB)."""
    rows = side * (side + 1)  # a filter byte per row
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    data += _chunk(b"IDAT", _deflate_zeros(rows)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def _small(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_bomb(path: Path, side: int = 65000) -> Path:
    """An 8x8 JPEG whose SOF marker claims ``side`` x ``side``."""
    data = bytearray(_small("JPEG"))
    k = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    data[k + 5 : k + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))
    return path


def bmp_bomb(path: Path, side: int = 30000) -> Path:
    """An 8x8 BMP whose header claims ``side`` x ``side``."""
    data = bytearray(_small("BMP"))
    data[18:26] = struct.pack("<ii", side, side)
    path.write_bytes(bytes(data))
    return path


def gif_bomb(path: Path, side: int = 60000) -> Path:
    """An 8x8 GIF whose logical screen claims ``side`` x ``side``."""
    data = bytearray(_small("GIF"))
    data[6:10] = struct.pack("<HH", side, side)
    path.write_bytes(bytes(data))
    return path


def tiff_bomb(path: Path, side: int = 30000) -> Path:
    """A two-page TIFF: page 1 is 8x8, page 2's header claims ``side`` x ``side``."""
    buf = io.BytesIO()
    small = Image.fromarray(np.zeros((8, 8), np.uint8))
    small.save(buf, format="TIFF", save_all=True, append_images=[small.copy()])
    data = bytearray(buf.getvalue())
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<H", data, ifd)[0]
    ifd = struct.unpack_from("<I", data, ifd + 2 + 12 * n)[0]  # the second page
    n = struct.unpack_from("<H", data, ifd)[0]
    for e in range(n):
        at = ifd + 2 + 12 * e
        tag, typ = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength
            fmt = "<H" if typ == 3 else "<I"
            struct.pack_into(fmt, data, at + 8, side)
    path.write_bytes(bytes(data))
    return path


def _dicom_parts(rows: int, cols: int, frames: int = 1) -> tuple[bytes, bytes]:
    """(preamble + file meta for deflate, the data set without pixel data) as bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    return head.getvalue(), body.getvalue()


def deflate_dicom(path: Path, rows: int, cols: int, pixel_bytes: int | None = None) -> Path:
    """A deflated DICOM of zeros: header ``rows`` x ``cols``, 8 bit; ``pixel_bytes``
    (default rows x cols) zero bytes of PixelData, so it may lie about its size."""
    head, body = _dicom_parts(rows, cols)
    n = rows * cols if pixel_bytes is None else pixel_bytes
    n += n % 2
    pixel_head = struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", n)
    path.write_bytes(head + _deflate_zeros(n, raw=True, prefix=body + pixel_head))
    return path


def nifti_bomb(path: Path, shape: tuple[int, ...], data_bytes: int | None = None) -> Path:
    """A NIfTI (``.nii`` or ``.nii.gz``) with header ``shape`` uint8 and ``data_bytes``
    zero bytes of voxels (default: all of them; 0 for a header that lies)."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\x00" * 4
    n = int(np.prod(shape)) if data_bytes is None else data_bytes
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb", compresslevel=9) as fh:
            fh.write(raw)
            while n > 0:
                k = min(n, len(_ZEROS))
                fh.write(_ZEROS[:k])
                n -= k
    else:
        path.write_bytes(raw + bytes(n))
    return path
