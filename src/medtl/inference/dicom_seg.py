"""Predicted masks as DICOM SEG (``medtl predict --mask-format seg``), written with highdicom.

One SEG per source DICOM image (``<name>_seg.dcm`` beside the PNG mask), or one per series
when several images of one series are given (:func:`series_groups`,
``<first name>_series_seg.dcm``): a Segmentation Storage object (SOP class
1.2.840.10008.5.1.4.1.1.66.4), the kind of file DICOM viewers with SEG support overlay on
the images it references:

* segmentation type ``BINARY``, the mask at the source's ``Rows x Columns`` (the prediction
  is resized back to the image as for the PNG mask), every frame kept (empty ones too);
* the source SOP instance referenced (Referenced Series and per-frame Source Image
  Sequences), patient and study copied from it; SEGs of one source series share one new
  series (instance numbers 1, 2, ...);
* segments from the run's labels: a binary run one segment ``lesion`` (SNOMED CT "Lesion"),
  a label map one segment per label, one binary mask per structure (``multilabel``) one
  segment per structure, overlaps kept; each named by its label (property type: a local
  code ``99MEDTL`` with that name) and recording ``model`` as its algorithm.

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
    binary run."""
    if scheme is not None and scheme.values:
        return scheme.names
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
    """Writes the DICOM SEGs of predicted DICOM images (see the module docstring):
    :meth:`add` each image's mask, then :meth:`finish`. ``model``: the algorithm name
    recorded in every segment (e.g. ``unet resnet18``)."""

    def __init__(self, scheme: MaskScheme | None, model: str = "medtl") -> None:
        self.scheme = scheme
        self.model = model
        self.series: dict[str, tuple[str, int]] = {}  # source series -> (SEG series, count)
        self.group_of: dict[Path, str] = {}  # inputs written as one SEG per series
        self.held: dict[str, list[tuple[Path, Path, np.ndarray]]] = {}

    def check(self, paths: list[Path]) -> None:
        """Every input is a single-frame DICOM image, or a one-line DataError naming the
        first that is not (before anything is written); finds the series of several
        inputs that get one SEG (:func:`series_groups`)."""
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
        self.group_of = series_groups(paths)

    def add(self, source: Path, target: Path, mask: np.ndarray) -> list[Path]:
        """``mask`` of ``source``: its SEG written to ``target`` now (an image of its own),
        or held for its series' SEG (:meth:`finish`). Returns the paths written."""
        key = self.group_of.get(source)
        if key is None:
            return [self.write(source, target, mask)]
        self.held.setdefault(key, []).append((source, target, mask))
        return []

    def finish(self) -> list[Path]:
        """Write the SEG of each series held by :meth:`add`, named after its first image:
        ``<name>_series_seg.dcm``. Returns the paths written."""
        out = []
        for items in self.held.values():
            first = items[0][1]
            target = first.with_name(first.name.removesuffix("_seg.dcm") + "_series_seg.dcm")
            out.append(self._save([s for s, _, _ in items], target, [m for _, _, m in items]))
        self.held.clear()
        return out

    def write(self, source: Path, target: Path, mask: np.ndarray) -> Path:
        """The SEG of ``mask`` (at the source's ``Rows x Columns``) on ``source``, written
        atomically to ``target``."""
        return self._save([source], target, [mask])

    def _save(self, sources: list[Path], target: Path, masks: list[np.ndarray]) -> Path:
        from medtl.utils.files import atomic_write

        seg = self._build(sources, masks)
        atomic_write(target, lambda p: seg.save_as(p, enforce_file_format=True))
        return target

    def _build(self, sources: list[Path], masks: list[np.ndarray]) -> Any:
        hd = _highdicom()
        images = [_source(p, m) for p, m in zip(sources, masks, strict=True)]
        series, number = self._next(str(getattr(images[0], "SeriesInstanceUID", "")))
        try:
            return hd.seg.Segmentation(
                source_images=images,
                pixel_array=np.stack([segment_stack(m, self.scheme) for m in masks]),
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
                f"{sources[0]}: a DICOM SEG cannot reference this image ({cause}); "
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


def _source(path: Path, mask: np.ndarray) -> Any:
    """``path``'s header, missing type-2 attributes added empty, checked against ``mask``."""
    import pydicom

    src = pydicom.dcmread(path, stop_before_pixels=True)
    for key in _TYPE2:
        if key not in src:
            setattr(src, key, "")
    if mask.shape != (int(src.Rows), int(src.Columns)):
        raise DataError(
            f"{path}: predicted mask {mask.shape[1]}x{mask.shape[0]} differs from the "
            f"image's {src.Columns}x{src.Rows}; re-export the image"
        )
    return src


#: what a source needs to share a SEG with the other images of its series (its place in space)
_GEOMETRY = (
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
)


def series_groups(paths: list[Path]) -> dict[Path, str]:
    """The inputs that get one SEG per series: ``path -> key`` for every series given with
    two or more images of one size, each image placed in space (:data:`_GEOMETRY`) and
    given once. Other inputs (absent from the result) get a SEG of their own."""
    import pydicom

    groups: dict[str, list[tuple[Path, str]]] = {}
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        if all(key in ds for key in _GEOMETRY):
            key = f"{ds.SeriesInstanceUID}/{ds.Rows}x{ds.Columns}"
            groups.setdefault(key, []).append((p, str(ds.SOPInstanceUID)))
    return {
        p: key
        for key, items in groups.items()
        if len(items) > 1 and len({uid for _, uid in items}) == len(items)
        for p, _ in items
    }


def _version() -> str:
    from medtl._version import __version__

    return str(__version__)
