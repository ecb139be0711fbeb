"""The ``dicom`` layout: a CD/PACS export tree (files without extension, a DICOMDIR, reports,
localizers and RGB screenshots), grouped by PatientID, classes from a tag or a folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")

import pydicom  # noqa: E402
from pydicom.fileset import FileSet  # noqa: E402

from medtl.configuration.loading import Config  # noqa: E402
from medtl.data.audit.report import audit  # noqa: E402
from medtl.data.layouts import discover  # noqa: E402
from medtl.data.pipeline import load_samples  # noqa: E402
from medtl.data.readers.io import read_image  # noqa: E402
from medtl.utils.errors import DataError  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.data.medical import ramp, write_dicom  # noqa: E402

PATIENTS = {"PAT1": "CHEST", "PAT2": "HEAD", "PAT3": "CHEST", "PAT4": "HEAD"}


@pytest.fixture
def medtl_log(caplog):
    """``caplog`` at INFO for the ``medtl`` logger, enabled again if a library's
    ``logging.config`` call (import-linter's, in tests/test_house.py) disabled it."""
    logger = logging.getLogger("medtl")
    was, logger.disabled = logger.disabled, False
    with caplog.at_level(logging.INFO, logger="medtl"):
        yield caplog
    logger.disabled = was


def _tagged(path: Path, pid: str | None, study: str, n: int, **extra) -> Path:
    """A grey image (its own random pixels: no duplicates) with the tags a CD's DICOMDIR
    records need."""
    rng = np.random.default_rng(abs(hash((str(pid), study, n))) % 2**32)
    write_dicom(path, rng.integers(0, 4000, (16, 20)).astype(np.uint16))
    ds = pydicom.dcmread(path)
    if pid is not None:
        ds.PatientID, ds.PatientName = pid, pid
    else:
        del ds.PatientID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, study + ".1"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240101", "120000", "1"
    ds.SeriesNumber, ds.InstanceNumber = 1, n
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _rgb_capture(path: Path) -> Path:
    """An RGB secondary capture (a screenshot), as PACS exports carry."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.PatientID, ds.Modality = "PAT1", "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.full((8, 8, 3), 200, np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def pacs_export(root: Path, tmp: Path, patients: dict[str, str] = PATIENTS) -> Path:
    """A CD export by pydicom's FileSet (``DICOMDIR`` + ``PT*/ST*/SE*/IM*`` files without
    extension), 2 images per patient, plus a report without pixels, a localizer and an RGB
    secondary capture beside them."""
    fs = FileSet()
    for i, (pid, part) in enumerate(patients.items()):
        for n in (1, 2):
            src = tmp / "src" / f"{pid}_{n}.dcm"
            fs.add(_tagged(src, pid, f"1.2.826.0.1.{i}", n, BodyPartExamined=part))
    fs.write(root)
    write_dicom(root / "PT000000" / "ST000000" / "SR000000" / "IM000000", ramp(), with_pixels=False)
    _tagged(root / "PT000000" / "ST000000" / "SE000009" / "IM000000", "PAT1", "1.2.826.0.1.0", 9,
            ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])  # fmt: skip
    _rgb_capture(root / "PT000000" / "ST000000" / "SE000008" / "IM000000")
    return root


def test_cd_export_found_by_content_skipped_by_kind_grouped_by_patient(tmp_path, medtl_log):
    root = pacs_export(tmp_path / "cd", tmp_path)
    assert not any(p.suffix for p in root.rglob("*") if p.is_file())  # no extensions at all
    ds = discover(root)
    assert ds.layout == "dicom" and len(ds.samples) == 8 and not ds.problems
    groups: dict[str, int] = {}
    for s in ds.samples:
        groups[s.group] = groups.get(s.group, 0) + 1
    assert groups == {"PAT1": 2, "PAT2": 2, "PAT3": 2, "PAT4": 2}
    skipped = "DICOMDIR=1, RGB secondary capture=1, localizer=1, no pixel data=1"
    assert f"8 image files, 4 patient groups (PatientID); skipped {skipped}" in medtl_log.text
    image = read_image(ds.samples[0].image)  # an extensionless file decodes as DICOM
    named = tmp_path / "named.dcm"
    named.write_bytes(ds.samples[0].image.read_bytes())
    assert image.shape == (16, 20, 3) and image.max() == 255 and image.min() == 0
    np.testing.assert_array_equal(image, read_image(named))  # as if it were named .dcm
    report = audit(root)
    assert report.layout == "dicom" and report.n_images == 8
    assert report.other_files == [] and report.image_modes == {"DICOM": 8}
    assert report.dicom_skipped == {
        "DICOMDIR": 1, "RGB secondary capture": 1, "localizer": 1, "no pixel data": 1,
    }  # fmt: skip
    assert "DICOM files skipped (no training image): DICOMDIR=1, RGB" in report.format()


def test_headers_only_no_pixels_decoded(tmp_path, monkeypatch):
    root = pacs_export(tmp_path / "cd", tmp_path)
    calls: list[bool] = []
    real = pydicom.dcmread

    def recording(*args, **kwargs):
        calls.append(bool(kwargs.get("stop_before_pixels")))
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", recording)
    discover(root)
    assert len(calls) == 12 and all(calls)  # 8 images + 4 skipped, every one header-only


def test_without_patient_id_grouped_by_study_and_said(tmp_path, medtl_log):
    root = tmp_path / "tree"
    for n in (1, 2):
        _tagged(root / "a" / f"IM{n}", "P7", "1.2.3.7", n)
        _tagged(root / "b" / f"IM{n}", None, "1.2.3.8", n)
    ds = discover(root)
    assert ds.layout == "dicom"
    assert sorted({s.group for s in ds.samples}) == ["P7", "study:1.2.3.8"]
    assert "2 image files without PatientID, grouped by StudyInstanceUID" in medtl_log.text


def test_classes_from_tag_and_from_folder_level(tmp_path):
    root = pacs_export(tmp_path / "cd", tmp_path)
    cfg = Config(task="classification")
    cfg.data.label_tag = "BodyPartExamined"
    ds = load_samples(cfg, root)
    assert ds.classes == ["CHEST", "HEAD"]
    by_patient = {s.group: s.label for s in ds.samples}
    assert by_patient == PATIENTS
    from medtl.data.splits import make_splits

    for seed in range(3):  # a patient's images never straddle splits
        splits = make_splits(ds.samples, 0.25, 0.25, seed)
        sides = {ds.samples[i].group: name for name, idx in splits.items() for i in idx}
        assert sum(len(v) for v in splits.values()) == 8 and len(sides) == 4
        for name, idx in splits.items():
            assert all(sides[ds.samples[i].group] == name for i in idx)
    cfg.data.label_tag = "0018,0015"  # the same tag by number
    assert load_samples(cfg, root).classes == ["CHEST", "HEAD"]
    tree = tmp_path / "tree"
    for k, cls in enumerate(("normal", "abnormal")):
        for n in (1, 2):
            _tagged(tree / cls / f"P{k}" / "S1" / f"IM{n}", f"P{k}", f"1.2.{k}", n)
    cfg = Config(task="classification")
    cfg.data.label_level = 1
    ds = load_samples(cfg, tree)
    assert ds.layout == "dicom" and ds.classes == ["abnormal", "normal"]
    assert {s.group: s.label for s in ds.samples} == {"P0": "normal", "P1": "abnormal"}


def test_a_report_alone_and_compressed_files_stop_with_one_line(tmp_path, capsys):
    alone = tmp_path / "alone"
    report = write_dicom(alone / "PT0" / "IM0", ramp(), with_pixels=False)
    with pytest.raises(DataError, match="no DICOM image to learn from") as err:
        discover(alone)
    assert str(report) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="no DICOM image to learn from"):
        discover(report)  # the file given as data root
    code, _, errtext = run_cli(capsys, "audit", str(alone))
    assert code == 2 and "no pixel data" in errtext and "Traceback" not in errtext
    from pydicom.uid import JPEG2000Lossless

    j2k = write_dicom(tmp_path / "j2k" / "PT0" / "IM0", ramp(), syntax=JPEG2000Lossless)
    with pytest.raises(DataError, match="pip install pylibjpeg") as err:
        read_image(j2k)
    assert str(j2k) in str(err.value) and "\n" not in str(err.value)


def test_bad_label_tag_is_one_line(tmp_path):
    root = pacs_export(tmp_path / "cd", tmp_path)
    cfg = Config(task="classification")
    cfg.data.label_tag = "NoSuchKeyword"
    from medtl.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="not a DICOM keyword"):
        load_samples(cfg, root)
    cfg.data.label_tag = "BodyPartThickness"  # a real keyword no file carries
    with pytest.raises(DataError, match="no value for BodyPartThickness") as err:
        load_samples(cfg, root)
    assert "\n" not in str(err.value)


def test_class_folders_of_dcm_files_stay_imagefolder(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _tagged(tmp_path / "f" / split / cls / "x.dcm", f"{split}{cls}", "1.2.3", 1)
    assert discover(tmp_path / "f").layout == "imagefolder"
    nested = tmp_path / "n" / "a" / "PAT1" / "x.dcm"  # deeper than <class>/<file>
    _tagged(nested, "PAT1", "1.2.3", 1)
    assert discover(tmp_path / "n").layout == "dicom"


def test_csv_manifest_names_extensionless_dicom_files(tmp_path):
    root = pacs_export(tmp_path / "cd", tmp_path)
    images = discover(root).samples
    rows = ["image,label,group"]
    for s in images:
        part = pydicom.dcmread(s.image, stop_before_pixels=True).BodyPartExamined
        rows.append(f"{s.image.relative_to(root)},{part.lower()},{s.group}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    ds = load_samples(Config(task="classification"), root)
    assert ds.layout == "csv" and ds.classes == ["chest", "head"] and len(ds.samples) == 8
    assert ds.fallback_window is not None  # the DICOMs without a window share one range
    assert read_image(ds.samples[0].image).shape == (16, 20, 3)
