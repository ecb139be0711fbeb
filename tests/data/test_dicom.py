"""DICOM decoding: modality LUT, windows, MONOCHROME1, frames, spacing, bad files."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom")

from medtl.data.layouts import discover  # noqa: E402
from medtl.data.readers import dicom  # noqa: E402
from medtl.data.readers.io import pixel_spacing, read_image  # noqa: E402
from medtl.utils.errors import ConfigError, DataError  # noqa: E402
from tests.data.conftest import one_line_naming  # noqa: E402
from tests.data.medical import ramp, write_dicom  # noqa: E402


def test_monochrome1_twin_decodes_like_monochrome2(tmp_path):
    pixels = ramp()
    m2 = write_dicom(tmp_path / "m2.dcm", pixels)
    # MONOCHROME1 shows low values bright: the same picture stored inverted
    m1 = write_dicom(tmp_path / "m1.dcm", (4000 - pixels).astype(np.uint16), "MONOCHROME1")
    a, b = read_image(m2, fallback=(2000.5, 4001)), read_image(m1, fallback=(2000.5, 4001))
    assert a.shape == (16, 20, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert a[0, 0, 0] == 0 and a[-1, -1, 0] == 255  # dark to bright, not inverted
    # without a common range each one is scaled by its own min..max: still twins
    np.testing.assert_array_equal(read_image(m2), read_image(m1))


def test_slope_intercept_gives_modality_units(tmp_path):
    stored = np.full((8, 8), 1000, np.uint16)
    stored[:4] = 0
    p = write_dicom(tmp_path / "ct.dcm", stored, slope=1.0, intercept=-1024)
    values = dicom.modality_values(p)
    assert values[0, 0] == -1024 and values[-1, -1] == -24
    # the abdomen window (40, 400) spans -160..240 HU: -1024 -> 0, -24 -> 87
    out = read_image(p, window=dicom.parse_window("abdomen"))[..., 0]
    assert out[0, 0] == 0 and out[-1, -1] == round(((-24 - 39.5) / 399 + 0.5) * 255)
    # a window containing both: -1024 -> 0, -24 -> 255
    out = read_image(p, window=(-524, 1001))[..., 0]
    assert out[0, 0] == 0 and out[-1, -1] == 255


def test_file_window_used_and_overridden(tmp_path):
    pixels = ramp(lo=0, hi=1000)
    p = write_dicom(tmp_path / "w.dcm", pixels, window=(500, 201))
    out = read_image(p)[..., 0]
    values = pixels.astype(float)
    assert (out[values <= 400] == 0).all() and (out[values > 600] == 255).all()
    mid = out[(values > 450) & (values < 550)]
    assert 50 < mid.mean() < 205
    # data.window overrides the file: the full range now
    full = read_image(p, window=(500.5, 1001))[..., 0]
    assert full[0, 0] == 0 and full[-1, -1] == 255 and len(np.unique(full)) > 200


def test_dicom_linear_window_formula():
    v = np.array([-1000.0, 39.0, 40.0, 79.0, 80.0, 1000.0])
    out = dicom.apply_window(v, (40, 80))
    assert out[0] == 0 and out[-1] == 255
    assert out[1] < out[2] < out[3] <= 255


def test_dataset_wide_range_is_shared(tmp_path):
    dim = write_dicom(tmp_path / "a.dcm", ramp(lo=0, hi=1000))
    bright = write_dicom(tmp_path / "b.dcm", ramp(lo=0, hi=4000))
    fallback = dicom.dataset_range([dim, bright])
    assert fallback is not None
    a = read_image(dim, fallback=fallback)[..., 0]
    b = read_image(bright, fallback=fallback)[..., 0]
    # the dim file stays dim: one scale for the data set, not each image's own min..max
    assert a.max() < 80 and b.max() == 255
    # files with their own window are not part of the range
    own = write_dicom(tmp_path / "c.dcm", ramp(lo=0, hi=60000), window=(100, 50))
    assert dicom.dataset_range([dim, bright, own]) == fallback


def test_multiframe_as_slices(tmp_path):
    frames = np.stack([np.full((10, 12), v, np.uint16) for v in (0, 500, 1000)])
    frames[:, 0, 0] = 0
    frames[:, -1, -1] = 1000
    img = write_dicom(tmp_path / "images" / "cine.dcm", frames)
    write_dicom(tmp_path / "masks" / "cine.dcm", (frames > 200).astype(np.uint16) * 255)
    ds = discover(tmp_path, "paired")
    ds.samples.sort(key=lambda s: str(s.image))
    assert len(ds.samples) == 3 and {s.group for s in ds.samples} == {"images/cine"}
    assert str(ds.samples[1].image) == f"{img}@f0001.slice"
    mids = [read_image(s.image, fallback=(500.5, 1001))[5, 5, 0] for s in ds.samples]
    assert mids[0] == 0 and 100 < mids[1] < 155 and mids[2] == 255
    from medtl.data.readers.io import read_mask

    assert not read_mask(ds.samples[0].masks, (10, 12))[5, 5]
    assert read_mask(ds.samples[2].masks, (10, 12))[5, 5]


def test_multiframe_with_single_frame_mask_is_an_error(tmp_path):
    write_dicom(tmp_path / "images" / "cine.dcm", np.zeros((2, 4, 4), np.uint16))
    mask = write_dicom(tmp_path / "masks" / "cine.dcm", np.zeros((4, 4), np.uint16))
    with pytest.raises(DataError, match="needs 2 frames") as err:
        discover(tmp_path, "paired")
    one_line_naming(err, mask)


def test_pixel_spacing_kept(tmp_path):
    p = write_dicom(tmp_path / "s.dcm", ramp(), spacing=(0.25, 0.5))
    assert pixel_spacing(p) == (0.25, 0.5)
    q = write_dicom(tmp_path / "n.dcm", ramp(), spacing=None)
    assert pixel_spacing(q) is None


def test_dicom_without_pixel_data(tmp_path):
    p = write_dicom(tmp_path / "report.dcm", ramp(), with_pixels=False)
    with pytest.raises(DataError, match="without pixel data") as err:
        read_image(p)
    one_line_naming(err, p)


def test_compressed_without_decoder_names_the_package(tmp_path):
    from pydicom.uid import JPEG2000Lossless

    p = write_dicom(tmp_path / "j2k.dcm", ramp(), syntax=JPEG2000Lossless)
    with pytest.raises(DataError) as err:
        read_image(p)
    one_line_naming(err, p)
    assert "pip install pylibjpeg" in str(err.value), err.value


def test_parse_window():
    assert dicom.parse_window("brain") == (40.0, 80.0)
    assert dicom.parse_window(" 40, 400 ") == (40.0, 400.0)
    assert dicom.parse_window(None) is None
    with pytest.raises(ConfigError, match="centre,width"):
        dicom.parse_window("wide")


def test_pipeline_sets_one_window_for_a_dicom_data_set(tmp_path):
    from medtl.configuration.loading import Config
    from medtl.data.audit.report import audit
    from medtl.data.pipeline import load_samples

    for cls, hi in (("benign", 1000), ("malignant", 3000)):
        for i in range(3):
            write_dicom(tmp_path / cls / f"{cls}{i}.dcm", ramp(lo=0, hi=hi + i))
    ds = load_samples(Config(task="classification"), tmp_path)
    assert ds.fallback_window == dicom.range_window(0.0, 3002.0)
    cfg = Config(task="classification")
    cfg.data.window = "bone"
    ds = load_samples(cfg, tmp_path)
    assert ds.window == dicom.WINDOW_PRESETS["bone"] and ds.fallback_window is None
    report = audit(tmp_path)
    assert report.image_modes == {"DICOM": 6} and not report.unreadable
    bad = write_dicom(tmp_path / "benign" / "sr.dcm", ramp(), with_pixels=False)
    with pytest.raises(DataError, match="without pixel data") as err:
        load_samples(Config(task="classification"), tmp_path)
    one_line_naming(err, bad)
