"""NIfTI volumes as 2D slices: the volumes layout, empty slices, spacing, slices export,
label volumes written back, bad volumes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("nibabel")

from medtl.data import slices  # noqa: E402
from medtl.data.layouts import discover  # noqa: E402
from medtl.data.masks.scan import resolve  # noqa: E402
from medtl.data.readers import volumes  # noqa: E402
from medtl.data.readers.io import pixel_spacing, read_image, read_mask  # noqa: E402
from medtl.data.splits import make_splits  # noqa: E402
from medtl.utils.errors import DataError  # noqa: E402
from tests.data.conftest import one_line_naming  # noqa: E402
from tests.data.medical import write_nifti  # noqa: E402

SHAPE = (12, 10, 8)  # non-isotropic: zooms 0.7 x 0.9 x 3.0 mm


def _case(root, name, seed, label_slices=(3, 4)):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, SHAPE).astype(np.float32)
    label = np.zeros(SHAPE, np.uint8)
    for k in label_slices:
        label[3:7, 2:6, k] = 1 if k % 2 else 2  # a label map: values 1 and 2
    write_nifti(root / "images" / f"{name}.nii.gz", image)
    write_nifti(root / "labels" / f"{name}.nii.gz", label)
    return image, label


def test_volumes_layout_slices_groups_and_spacing(tmp_path):
    image, label = _case(tmp_path, "case01", 0)
    _case(tmp_path, "case02", 1)
    ds = discover(tmp_path)  # auto-detected
    assert ds.layout == "volumes"
    assert len(ds.samples) == 2 * SHAPE[2]  # empty_slice_fraction 1.0 keeps all
    assert {s.group for s in ds.samples} == {"case01", "case02"}
    s = next(x for x in ds.samples if x.group == "case01" and x.meta["index"] == 3)
    assert s.meta["spacing"] == pytest.approx((0.7, 0.9))
    assert pixel_spacing(s.image) == pytest.approx((0.7, 0.9))
    rgb = read_image(s.image)
    assert rgb.shape == (12, 10, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(read_mask(s.masks, (12, 10)), label[:, :, 3] > 0)
    # a label volume is a label map: values 1 and 2 are two labels
    scheme = resolve(SimpleNamespace(mask_mode="auto", labels=None), ds.samples, tmp_path)
    assert scheme.mode == "labels" and scheme.values == (1, 2)
    four = next(x for x in ds.samples if x.group == "case01" and x.meta["index"] == 4)
    index = read_mask(four.masks, (12, 10), scheme)
    assert (index == 2).sum() == 16 and (index == 1).sum() == 0
    # one intensity range per volume: slices are comparable, not each stretched
    lo, hi = np.percentile(image, [0.5, 99.5])
    expect = np.clip((image[:, :, 3] - lo) / (hi - lo) * 255, 0, 255)
    assert np.abs(rgb[..., 0].astype(float) - expect).max() <= 1.5


def test_other_axis_and_empty_slice_subsampling(tmp_path):
    _case(tmp_path, "case01", 0)
    ds = discover(tmp_path, "volumes", slice_axis=2, empty_slice_fraction=0.5)
    kept = sorted(s.meta["index"] for s in ds.samples)
    assert {3, 4} <= set(kept) and len(kept) == 2 + 3  # 6 empty slices, half kept
    ds0 = discover(tmp_path, "volumes", slice_axis=0, empty_slice_fraction=0.0)
    assert sorted(s.meta["index"] for s in ds0.samples) == [3, 4, 5, 6]
    assert ds0.samples[0].meta["spacing"] == pytest.approx((0.9, 3.0))
    assert read_image(ds0.samples[0].image).shape == (10, 8, 3)


def test_slices_of_a_volume_never_straddle_a_split(tmp_path):
    for i in range(6):
        _case(tmp_path, f"case{i:02d}", i)
    samples = discover(tmp_path, "volumes").samples
    splits = make_splits(samples, 0.2, 0.2, seed=0)
    side = {}
    for name, idx in splits.items():
        for i in idx:
            assert side.setdefault(samples[i].group, name) == name


def test_label_shape_mismatch_is_one_line(tmp_path):
    write_nifti(tmp_path / "images" / "case01.nii.gz", np.zeros(SHAPE, np.float32))
    lab = write_nifti(tmp_path / "labels" / "case01.nii.gz", np.zeros((12, 10, 7), np.uint8))
    with pytest.raises(DataError, match="differs from its image") as err:
        discover(tmp_path, "volumes")
    one_line_naming(err, lab)


def test_4d_volume_is_one_line(tmp_path):
    p = write_nifti(tmp_path / "images" / "case01.nii.gz", np.zeros((*SHAPE, 2), np.float32))
    write_nifti(tmp_path / "labels" / "case01.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(DataError, match="4-D volume") as err:
        discover(tmp_path, "volumes")
    one_line_naming(err, p)


def test_write_slices_manifest_then_csv_layout(tmp_path):
    vols, out = tmp_path / "vols", tmp_path / "slices"
    _case(vols, "case01", 0)
    _case(vols, "case02", 1)
    info = slices.write_slices(vols, out, axis=2, empty_fraction=0.25)
    assert info["volumes"] == 2 and info["slices"] == 2 * (2 + 2)
    ds = discover(out)
    assert ds.layout == "csv" and len(ds.samples) == info["slices"]
    assert {s.group for s in ds.samples} == {"case01", "case02"}
    s = next(x for x in ds.samples if x.image.name == "case01_slice0003.png")
    assert read_mask(s.masks).sum() == 16


def test_write_slices_writes_nothing_on_a_bad_volume(tmp_path):
    vols, out = tmp_path / "vols", tmp_path / "slices"
    _case(vols, "case01", 0)
    write_nifti(vols / "images" / "case02.nii.gz", np.zeros(SHAPE, np.float32))
    write_nifti(vols / "labels" / "case02.nii.gz", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(DataError, match="case02"):
        slices.write_slices(vols, out)
    assert not out.exists()


def test_label_volume_keeps_the_input_affine(tmp_path):
    import nibabel as nib

    image, label = _case(tmp_path, "case01", 0)
    src = tmp_path / "images" / "case01.nii.gz"
    masks = [label[:, :, k] > 0 for k in range(SHAPE[2])]
    out = volumes.write_label_volume(masks, src, tmp_path / "pred" / "case01_mask.nii.gz")
    written = nib.load(str(out))
    np.testing.assert_allclose(written.affine, nib.load(str(src)).affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj), (label > 0).astype(np.uint8))
    assert volumes.volume_dice(np.asarray(written.dataobj), label > 0) == 1.0
    with pytest.raises(DataError, match="slice masks"):
        volumes.write_label_volume(masks[:-1], src, tmp_path / "bad.nii.gz")


def test_volume_dice():
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    assert volumes.volume_dice(a, b) == 1.0
    a[0, 0, :2] = True
    b[0, 0, 1:3] = True
    assert volumes.volume_dice(a, b) == pytest.approx(0.5)


def test_volume_scores_from_slice_rows():
    from medtl.data.refs import slice_ref

    def row(k, dice, p, t, vol="v/case01.nii.gz"):
        return {"image": str(slice_ref(vol, 2, k)), "dice": dice, "pred_area": p, "true_area": t}

    rows = [row(0, 1.0, 0, 0), row(1, 0.5, 10, 10), row(2, 1.0, 4, 4), row(0, 0.0, 5, 0, "w.nii")]
    rows.append({"image": "plain.png", "dice": 1.0, "pred_area": 1, "true_area": 1})
    scores = {s["volume"]: s for s in volumes.volume_scores(rows)}
    assert set(scores) == {"case01", "w"}
    # overlaps 5 + 4 over 14 + 14 voxels
    assert scores["case01"]["dice_3d"] == pytest.approx(2 * 9 / 28, abs=1e-6)
    assert scores["case01"]["n_slices"] == 3 and scores["w"]["dice_3d"] == 0.0
