"""Writers of small DICOM and NIfTI files for the data tests (pydicom / nibabel make them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    spacing: tuple[float, float] | None = (0.5, 0.8),
    with_pixels: bool = True,
    syntax: str | None = None,
) -> Path:
    """An uncompressed (Explicit VR Little Endian) grey DICOM; ``pixels`` ``(H, W)`` or
    ``(frames, H, W)``, uint16 or int16."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = "p1"
    if spacing is not None:
        ds.PixelSpacing = [str(spacing[0]), str(spacing[1])]
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept or 0)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = str(window[0]), str(window[1])
    if with_pixels:
        arr = np.ascontiguousarray(pixels)
        ds.Rows, ds.Columns = arr.shape[-2:]
        if arr.ndim == 3:
            ds.NumberOfFrames = arr.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if arr.dtype == np.int16 else 0
        ds.PixelData = arr.tobytes()
        if syntax is not None:  # a compressed syntax: an encapsulated (fake) codestream
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
            ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:  # pydicom < 3
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def write_nifti(path: Path, data: np.ndarray, zooms=(0.7, 0.9, 3.0)) -> Path:
    """A NIfTI volume with a diagonal affine of ``zooms`` (and an offset)."""
    import nibabel as nib

    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.asarray(data), affine).to_filename(str(path))
    return path


def ramp(h: int = 16, w: int = 20, lo: int = 0, hi: int = 4000) -> np.ndarray:
    """A uint16 ramp from ``lo`` to ``hi``."""
    return np.linspace(lo, hi, h * w).reshape(h, w).astype(np.uint16)
