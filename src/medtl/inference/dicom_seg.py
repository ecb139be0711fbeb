"""Predicted masks as DICOM SEG (``medtl predict --mask-format seg``), written with highdicom.

One SEG per source DICOM image (``<name>_seg.dcm`` beside the PNG mask): a standard
Segmentation Storage object (SOP class 1.2.840.10008.5.1.4.1.1.66.4) that DICOM viewers
with SEG support overlay on the image it references:

* segmentation type ``BINARY``, the mask at the source's ``Rows x Columns`` (the prediction
  is resized back to the image as for the PNG mask), every frame kept (empty ones too);
* the source SOP instance referenced (Referenced Series and per-frame Source Image
  Sequences), patient and study copied from it; SEGs of one source series share one new
  series (instance numbers 1, 2, ...);
* segments from the run's labels: a binary run one segment named after its structure
  (``lesion`` unless ``data.labels`` names it), a label map one segment per label, one
  binary mask per structure (``multilabel``) one segment per structure, overlaps kept.

Sources whose header lacks a type-2 patient/study attribute (name, birth date, sex, study
ID/date/time, accession number) get it empty, as the standard allows; a source the SEG IOD
cannot reference (no study UID, no frame of reference for an MR/CT image) is an error
naming the file. Only single-frame DICOM images are written: other inputs are an error
before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.masks.scheme import MaskScheme
from medtl.data.readers.dicom import is_dicom, is_seg
from medtl.utils.errors import ConfigError, DataError

MASK_FORMATS = ("png", "seg")
#: type-2 attributes the SEG copies from its source: present (maybe empty) in every SEG
_TYPE2 = (
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError:
        raise DataError(
            "--mask-format seg needs highdicom; run \"pip install 'medtl[dicom]'\""
        ) from None
    return highdicom


def check_mask_format(mask_format: str, task: str) -> None:
    """``mask_format`` is one of :data:`MASK_FORMATS` and fits the run's ``task``."""
    if mask_format not in MASK_FORMATS:
        raise ConfigError(f"--mask-format {mask_format}: choose one of {', '.join(MASK_FORMATS)}")
    if mask_format == "seg" and task == "classification":
        raise ConfigError(
            "--mask-format seg: a classification run predicts no masks; drop the option"
        )


def segment_names(scheme: MaskScheme | None) -> tuple[str, ...]:
    """The SEG's segment labels: the run's label or structure names, ``lesion`` for a
    binary run without a name."""
    if scheme is not None and scheme.values:
        return scheme.names
    if scheme is not None and scheme.names:
        return scheme.names[:1]
    return ("lesion",)


def segment_stack(mask: np.ndarray, scheme: MaskScheme | None) -> np.ndarray:
    """A predicted mask (bool, label indices, or multilabel bits) -> ``bool (H, W, S)``,
    segment ``k`` (1-based) in plane ``k - 1``."""
    n = len(segment_names(scheme))
    if mask.dtype == bool:
        return mask[..., None]
    if scheme is not None and scheme.multilabel:
        return np.stack([scheme.structure(mask, k) for k in range(1, n + 1)], axis=-1)
    return np.stack([mask == k for k in range(1, n + 1)], axis=-1)


def seg_writer(
    mask_format: str, scheme: MaskScheme | None, model: str, paths: list[Path]
) -> SegWriter | None:
    """A :class:`SegWriter` for ``mask_format="seg"`` whose inputs ``paths`` passed
    :meth:`SegWriter.check`; None for ``png``."""
    if mask_format != "seg":
        return None
    writer = SegWriter(scheme, model)
    writer.check(paths)
    return writer


class SegWriter:
    """Writes ``<name>_seg.dcm`` for each predicted DICOM image (see the module docstring).
    ``model``: the algorithm name recorded in every segment (e.g. ``unet resnet18``)."""

    def __init__(self, scheme: MaskScheme | None, model: str = "medtl") -> None:
        self.scheme = scheme
        self.model = model
        self.series: dict[str, tuple[str, int]] = {}  # source series -> (SEG series, count)

    def check(self, paths: list[Path]) -> None:
        """Every input is a single-frame DICOM image, or a one-line DataError naming the
        first that is not (before anything is written)."""
        from medtl.data.readers.dicom import header, n_frames

        for p in paths:
            if not is_dicom(p):
                raise DataError(
                    f"{p}: --mask-format seg needs DICOM images (a SEG references its source "
                    "image); give DICOM files or drop --mask-format seg"
                )
            if is_seg(header(p)) or n_frames(p) > 1:
                raise DataError(
                    f"{p}: --mask-format seg writes SEGs of single-frame DICOM images; "
                    "give those, or drop --mask-format seg"
                )
        _highdicom()

    def write(self, source: Path, target: Path, mask: np.ndarray) -> Path:
        """The SEG of ``mask`` (at the source's ``Rows x Columns``) on ``source``, written
        atomically to ``target``."""
        from medtl.utils.files import atomic_write

        seg = self._build(source, mask)
        atomic_write(target, lambda p: seg.save_as(p, enforce_file_format=True))
        return target

    def _build(self, source: Path, mask: np.ndarray) -> Any:
        import pydicom

        hd = _highdicom()
        src = pydicom.dcmread(source, stop_before_pixels=True)
        for key in _TYPE2:
            if key not in src:
                setattr(src, key, "")
        if mask.shape != (int(src.Rows), int(src.Columns)):
            raise DataError(
                f"{source}: predicted mask {mask.shape[1]}x{mask.shape[0]} differs from the "
                f"image's {src.Columns}x{src.Rows}; re-export the image"
            )
        series, number = self._next(str(getattr(src, "SeriesInstanceUID", "")))
        try:
            return hd.seg.Segmentation(
                source_images=[src],
                pixel_array=segment_stack(mask, self.scheme)[None],
                segmentation_type="BINARY",
                segment_descriptions=self._segments(hd),
                series_instance_uid=series,
                series_number=99,
                sop_instance_uid=hd.UID(),
                instance_number=number,
                manufacturer="medtl",
                manufacturer_model_name=self.model[:64],
                software_versions=_version(),
                device_serial_number="none",
                omit_empty_frames=False,  # every segment has its frame, empty or not
                content_label="MEDTL",
                content_description="medtl prediction",
            )
        except (AttributeError, ValueError, TypeError) as exc:
            cause = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise DataError(
                f"{source}: a DICOM SEG cannot reference this image ({cause}); "
                "re-export it with its full header, or drop --mask-format seg"
            ) from None

    def _next(self, source_series: str) -> tuple[str, int]:
        from highdicom import UID

        uid, count = self.series.get(source_series, (str(UID()), 0))
        self.series[source_series] = (uid, count + 1)
        return uid, count + 1

    def _segments(self, hd: Any) -> list[Any]:
        from pydicom.sr.codedict import codes

        algorithm = hd.AlgorithmIdentificationSequence(
            name=self.model[:64], family=codes.cid7162.ArtificialIntelligence, version=_version()
        )
        out = []
        for k, name in enumerate(segment_names(self.scheme), 1):
            kind = (
                codes.SCT.Lesion
                if name.lower() == "lesion"
                else hd.sr.CodedConcept(value=f"M{k}", scheme_designator="99MEDTL", meaning=name)
            )
            out.append(
                hd.seg.SegmentDescription(
                    segment_number=k,
                    segment_label=name[:64],
                    segmented_property_category=codes.SCT.Tissue,
                    segmented_property_type=kind,
                    algorithm_type="AUTOMATIC",
                    algorithm_identification=algorithm,
                )
            )
        return out


def _version() -> str:
    from medtl._version import __version__

    return str(__version__)
