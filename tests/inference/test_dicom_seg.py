"""DICOM SEG out (``medtl predict --mask-format seg``) and in (a SEG as a mask)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from PIL import Image  # noqa: E402

from medtl.data.masks.scheme import MaskScheme  # noqa: E402
from medtl.data.readers.seg import seg_mask, seg_problems  # noqa: E402
from medtl.inference.dicom_seg import SegWriter, check_mask_format  # noqa: E402
from medtl.utils.errors import ConfigError, DataError  # noqa: E402
from tests.conftest import run_cli, train_tiny  # noqa: E402
from tests.data.medical import ramp, write_dicom  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def write_mr(path: Path, pixels: np.ndarray, series: str | None = None, z: float = 0) -> Path:
    """A single-frame MR image as a scanner exports it (patient, study, series, frame of
    reference, geometry), uint16 pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = "MR", "p1", "Test^Patient"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series or generate_uid()
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, z]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def square(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An image with a bright square on a noisy background, and the square's mask."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 300, (h, w)).astype(np.uint16)
    mask = np.zeros((h, w), bool)
    y, x = rng.integers(2, h // 2), rng.integers(2, w // 2)
    mask[y : y + h // 3, x : x + w // 3] = True
    img[mask] += 2000
    return img, mask


def sop(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_predict_writes_a_seg_equal_to_the_png_mask(seg_run, capsys, tmp_path):
    series = "1.2.826.0.1.3680043.8.498.3"
    a = write_mr(tmp_path / "in" / "a.dcm", square(32, 32, 0)[0], series)
    b = write_mr(tmp_path / "in" / "b.dcm", square(40, 48, 1)[0], series)  # resized back
    out = tmp_path / "out"
    argv = ["predict", str(seg_run), str(a), str(b), "--out", str(out), "--mask-format", "seg"]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert str(out / "a_seg.dcm") in stdout.splitlines()
    seg_series, numbers = set(), []
    for src in (a, b):
        seg = hd.seg.segread(out / f"{src.stem}_seg.dcm")
        png = np.asarray(Image.open(out / f"{src.stem}_mask.png")) > 0
        uid = sop(src)
        assert [u for _, _, u in seg.get_source_image_uids()] == [uid]
        got = seg.get_pixels_by_source_instance([uid])[0, ..., 0]
        assert got.shape == png.shape and np.array_equal(got > 0, png)
        assert seg.SegmentationType == "BINARY"
        assert seg.get_segment_description(1).SegmentLabel == "lesion"
        assert (seg.Rows, seg.Columns) == png.shape
        seg_series.add(seg.SeriesInstanceUID)
        numbers.append(int(seg.InstanceNumber))
    assert len(seg_series) == 1 and numbers == [1, 2]  # one new series per source series


def test_one_seg_per_series_of_several_images(seg_run, capsys, tmp_path):
    series = "1.2.826.0.1.3680043.8.498.4"
    srcs = [
        write_mr(tmp_path / "in" / f"s{z}.dcm", square(32, 32, z)[0], series, z) for z in range(3)
    ]
    lone = write_mr(tmp_path / "in" / "lone.dcm", square(32, 32, 9)[0])  # its own series
    out = tmp_path / "out"
    argv = [
        "predict",
        str(seg_run),
        str(tmp_path / "in"),
        "--out",
        str(out),
        "--mask-format",
        "seg",
    ]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.dcm")) == ["lone_seg.dcm", "s0_series_seg.dcm"]
    seg = hd.seg.segread(out / "s0_series_seg.dcm")
    uids = [sop(p) for p in srcs]
    assert sorted(u for _, _, u in seg.get_source_image_uids()) == sorted(uids)
    stack = seg.get_pixels_by_source_instance(uids)[..., 0] > 0
    for k, src in enumerate(srcs):
        png = np.asarray(Image.open(out / f"{src.stem}_mask.png")) > 0
        assert np.array_equal(stack[k], png)
    assert [u for _, _, u in hd.seg.segread(out / "lone_seg.dcm").get_source_image_uids()] == [
        sop(lone)
    ]
    assert str(out / "s0_series_seg.dcm") in stdout.splitlines()


def test_seg_writer_binary_mask_reads_back(tmp_path):
    img, mask = square(32, 32, 2)
    src = write_mr(tmp_path / "a.dcm", img)
    target = SegWriter(None, "unet resnet18").write(src, tmp_path / "a_seg.dcm", mask)
    back = seg_mask(target)
    assert back.dtype == np.uint8 and np.array_equal(back, mask.astype(np.uint8))
    assert int(mask.sum()) == 32 // 3 * (32 // 3)


def test_label_map_seg_round_trip(tmp_path):
    src = write_mr(tmp_path / "a.dcm", ramp(32, 32))
    scheme = MaskScheme("labels", (128, 255), ("liver", "tumour"))
    index = np.zeros((32, 32), np.uint8)
    index[2:12, 2:12], index[20:30, 5:9] = 1, 2
    seg = hd.seg.segread(SegWriter(scheme).write(src, tmp_path / "s.dcm", index))
    labels = [seg.get_segment_description(k).SegmentLabel for k in seg.segment_numbers]
    assert labels == ["liver", "tumour"]
    assert np.array_equal(seg_mask(tmp_path / "s.dcm"), index)  # values = segment numbers


def test_overlapping_structures_are_segments_and_no_label_map(tmp_path):
    src = write_mr(tmp_path / "a.dcm", ramp(32, 32))
    scheme = MaskScheme("multilabel", (1, 2), ("lung", "clavicle"))
    lung, clav = np.zeros((32, 32), bool), np.zeros((32, 32), bool)
    lung[4:20, 4:20], clav[15:25, 0:32] = True, True
    bits = lung.astype(np.uint8) | (clav.astype(np.uint8) << 1)
    target = SegWriter(scheme).write(src, tmp_path / "m.dcm", bits)
    seg = hd.seg.segread(target)
    stack = seg.get_pixels_by_source_instance([sop(src)])[0] > 0
    assert np.array_equal(stack[..., 0], lung) and np.array_equal(stack[..., 1], clav)
    with pytest.raises(DataError, match="overlap") as err:
        seg_mask(target)
    assert "\n" not in str(err.value) and str(target) in str(err.value)


def test_non_dicom_input_with_seg_is_one_line(seg_run, phantoms, capsys, tmp_path):
    png = next(Path(phantoms).rglob("*.png"))
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "predict", str(seg_run), str(png), "--out", str(out), "--mask-format", "seg"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(png) in err and "DICOM" in err
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("kind", ["no pixels", "compressed"])
def test_bad_dicom_inputs_exit_2(seg_run, capsys, tmp_path, kind):
    from pydicom.uid import JPEG2000Lossless

    if kind == "no pixels":
        p = write_dicom(tmp_path / "report.dcm", ramp(), with_pixels=False)
        want = "without pixel data"
    else:
        p = write_dicom(tmp_path / "j2k.dcm", ramp(), syntax=JPEG2000Lossless)
        want = "pip install pylibjpeg"
    code, _, err = run_cli(capsys, "predict", str(seg_run), str(p), "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(p) in err, err
    assert want in err


def test_mask_format_checked():
    check_mask_format("seg", "segmentation")
    with pytest.raises(ConfigError, match="classification"):
        check_mask_format("seg", "classification")
    with pytest.raises(ConfigError, match="png, seg"):
        check_mask_format("nifti", "segmentation")


def seg_data(root: Path, n: int = 8) -> Path:
    """``images/*.dcm`` with ``masks/*.dcm`` DICOM SEGs of a bright square each."""
    for i in range(n):
        img, mask = square(32, 32, 10 + i)
        src = write_mr(root / "images" / f"case{i}.dcm", img)
        SegWriter(None).write(src, root / "masks" / f"case{i}.dcm", mask)
    return root


def test_seg_masks_train(tmp_path):
    from medtl import api

    data = seg_data(tmp_path / "data")
    report = api.audit(data)
    assert report.mask_interpretation["mode"] == "binary" and report.mask_size_mismatch == []
    assert report.mask_modes == {"DICOM SEG": 8} and report.odd_masks == []
    share = (32 // 3) ** 2 / 32**2  # each SEG: one square of 10x10 pixels
    assert report.mask_coverage["-"]["mean"] == pytest.approx(share)
    run = train_tiny(data, tmp_path / "runs", "data.group_pattern=none")
    assert (run / "model.pt").is_file()
    assert "masks: binary" in (run / "train.log").read_text()


def test_label_map_segs_are_labels(tmp_path):
    from medtl import api

    scheme = MaskScheme("labels", (1, 2), ("liver", "tumour"))
    for i in range(3):
        img, mask = square(32, 32, 20 + i)
        index = mask.astype(np.uint8)
        index[-4:, -4:] = 2
        src = write_mr(tmp_path / "images" / f"c{i}.dcm", img)
        SegWriter(scheme).write(src, tmp_path / "masks" / f"c{i}.dcm", index)
    meaning = api.audit(tmp_path).mask_interpretation
    assert meaning["mode"] == "labels" and [x["value"] for x in meaning["labels"]] == [1, 2]
    assert [x["name"] for x in meaning["labels"]] == ["liver", "tumour"]  # segment labels
    from medtl.configuration.loading import load_config
    from medtl.data.pipeline import load_samples

    cfg = load_config(overrides=[f"data.root={tmp_path}", "data.group_pattern=none"])
    assert load_samples(cfg).mask_scheme.names == ("liver", "tumour")
    assert cfg.data.labels == "1:liver,2:tumour"  # recorded in config.yaml
    cfg = load_config(overrides=[f"data.root={tmp_path}", "data.labels=1:a,2:b"])
    assert load_samples(cfg).mask_scheme.names == ("a", "b")  # data.labels first


def test_seg_that_does_not_fit_its_image_names_both(tmp_path):
    from medtl.configuration.loading import load_config
    from medtl.data.layouts import discover
    from medtl.data.pipeline import load_samples

    data = seg_data(tmp_path / "data", n=2)
    other = write_mr(tmp_path / "other.dcm", square(32, 32, 5)[0])  # another image, same size
    SegWriter(None).write(other, data / "masks" / "case1.dcm", square(32, 32, 5)[1])
    lines = seg_problems(discover(data).samples)
    assert len(lines) == 1 and "does not reference" in lines[0]
    assert "case1.dcm" in lines[0] and str(data / "images" / "case1.dcm") in lines[0]
    small = write_mr(tmp_path / "small.dcm", square(16, 16, 6)[0])
    SegWriter(None).write(small, data / "masks" / "case0.dcm", square(16, 16, 6)[1])
    cfg = load_config(overrides=[f"data.root={data}", "data.group_pattern=none"])
    with pytest.raises(DataError, match="16x16 does not fit its image") as err:
        load_samples(cfg)
    assert "\n" not in str(err.value) and str(data / "images" / "case0.dcm") in str(err.value)


def test_seg_in_a_manifest_and_in_a_pacs_tree(tmp_path):
    from medtl.data.layouts import discover
    from medtl.data.layouts.dicom_tree import scan_tree
    from medtl.data.readers.io import read_mask

    img, mask = square(32, 32, 30)
    src = write_mr(tmp_path / "tree" / "PT0" / "IM0", img)
    SegWriter(None).write(src, tmp_path / "tree" / "PT0" / "IM1", mask)  # no extension
    assert dict(scan_tree(tmp_path / "tree").skipped) == {"segmentation": 1}
    (tmp_path / "tree" / "data.csv").write_text("image,mask\nPT0/IM0,PT0/IM1\n")
    ds = discover(tmp_path / "tree", "csv")
    assert [s.masks for s in ds.samples] == [(tmp_path / "tree" / "PT0" / "IM1",)]
    assert np.array_equal(read_mask(ds.samples[0].masks, (32, 32)), mask)


def test_seg_output_needs_the_pytorch_model(seg_run, capsys, tmp_path):
    src = write_mr(tmp_path / "a.dcm", ramp(32, 32))
    argv = ["predict", str(seg_run), str(src), "--out", str(tmp_path / "o"), "--onnx"]
    code, _, err = run_cli(capsys, *argv, "--mask-format", "seg")
    assert code == 2 and "--mask-format seg" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
