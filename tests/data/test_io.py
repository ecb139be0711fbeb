"""Image/mask decoding: every mode -> uint8 (H, W, 3); the mask binarisation rule; bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medtl.data.readers.io import binarise_mask, read_array, read_image, read_mask, to_uint8
from medtl.utils.errors import DataError
from tests.data.conftest import one_line_naming

H, W = 32, 40


def _grad() -> np.ndarray:
    """An 8-bit ramp with distinct values (H, W)."""
    return (np.arange(H * W).reshape(H, W) % 256).astype(np.uint8)


def _save(path, arr, mode=None, **kw):
    img = Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)
    img.save(path, **kw)
    return path


def _check(out, shape=(H, W)):
    assert out.dtype == np.uint8
    assert out.shape == (*shape, 3)
    assert out.flags["C_CONTIGUOUS"]


def test_grey_8bit_repeated_to_three_channels(tmp_path):
    g = _grad()
    out = read_image(_save(tmp_path / "g.png", g))
    _check(out)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_rgb_kept_exactly(tmp_path):
    rgb = np.stack([_grad(), 255 - _grad(), np.full((H, W), 7, np.uint8)], axis=2)
    out = read_image(_save(tmp_path / "c.png", rgb))
    _check(out)
    np.testing.assert_array_equal(out, rgb)


def test_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0  # fully transparent
    out = read_image(_save(tmp_path / "a.png", rgba))
    _check(out)
    assert out[0, 0].tolist() == [10, 20, 30]  # colour kept, alpha not composited


def test_la_drops_alpha(tmp_path):
    la = np.stack([_grad(), np.full((H, W), 3, np.uint8)], axis=2)
    out = read_image(_save(tmp_path / "la.png", la, mode="LA"))
    _check(out)
    np.testing.assert_array_equal(out[..., 1], _grad())


def test_palette_image_uses_palette_colours(tmp_path):
    idx = np.zeros((H, W), np.uint8)
    idx[:, W // 2 :] = 1
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * (254 * 3))
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    _check(out)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, -1].tolist() == [200, 100, 50]


def test_16bit_grey_rescaled_min_to_max(tmp_path):
    a = np.full((H, W), 1000, np.uint16)
    a[0, 0], a[0, 1], a[0, 2] = 1000, 3000, 5000  # min 1000, max 5000
    a[1, 0] = 2000
    p = tmp_path / "d16.png"
    Image.fromarray(a).save(p)
    assert read_array(p).dtype == np.uint16
    out = read_image(p)
    _check(out)
    assert out[0, 0, 0] == 0 and out[0, 2, 0] == 255
    assert out[0, 1, 0] == 128  # (3000-1000)/4000*255 = 127.5 -> rounds to 128
    assert out[1, 0, 0] == 64  # 63.75 -> 64
    assert out[1, 0].tolist() == [64, 64, 64]


def test_16bit_constant_image_is_black(tmp_path):
    p = tmp_path / "flat.tif"
    Image.fromarray(np.full((H, W), 777, np.uint16)).save(p)
    out = read_image(p)
    _check(out)
    assert out.max() == 0


def test_to_uint8_float_and_bool():
    f = np.array([[-1.0, 0.0], [1.0, 3.0]])
    assert to_uint8(f).tolist() == [[0, 64], [128, 255]]
    assert to_uint8(np.array([[True, False]])).tolist() == [[255, 0]]
    u = np.array([[5, 9]], np.uint8)
    assert to_uint8(u) is u


@pytest.mark.parametrize(
    "ext, exact", [(".jpg", False), (".tif", True), (".bmp", True), (".TIFF", True)]
)
def test_other_formats(tmp_path, ext, exact):
    smooth = np.tile((np.arange(W) * 6).astype(np.uint8), (H, 1))
    rgb = np.stack([smooth, smooth // 2, np.full((H, W), 90, np.uint8)], axis=2)
    kw = {} if exact else {"quality": 95, "subsampling": 0}
    out = read_image(_save(tmp_path / f"x{ext}", rgb, **kw))
    _check(out)
    if exact:
        np.testing.assert_array_equal(out, rgb)
    else:  # lossy: close, and the channels are not swapped or greyed
        assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 8


def test_grey_jpeg_is_three_channels(tmp_path):
    out = read_image(_save(tmp_path / "g.jpeg", _grad(), quality=95))
    _check(out)
    assert (out[..., 0] == out[..., 2]).all()


def test_1bit_image(tmp_path):
    b = np.zeros((H, W), bool)
    b[:5] = True
    Image.fromarray(b).convert("1").save(tmp_path / "b.png")
    out = read_image(tmp_path / "b.png")
    _check(out)
    assert out[0, 0, 0] == 255 and out[10, 0, 0] == 0


# ---- masks -------------------------------------------------------------------------------


def test_binarise_8bit_0_255():
    m = np.array([[0, 255], [127, 128]], np.uint8)
    assert binarise_mask(m).tolist() == [[False, True], [False, True]]
    assert binarise_mask(m).dtype == bool


def test_binarise_label_mask_0_1():
    m = np.array([[0, 1], [1, 0]], np.uint8)
    assert binarise_mask(m).tolist() == [[False, True], [True, False]]


def test_binarise_all_zero_is_empty():
    assert not binarise_mask(np.zeros((4, 4), np.uint8)).any()
    assert not binarise_mask(np.zeros((4, 4), np.uint16)).any()


def test_binarise_values_0_1_2_255_only_255_is_foreground():
    m = np.array([[0, 1, 2, 255]], np.uint8)
    assert binarise_mask(m).tolist() == [[False, False, False, True]]


def test_binarise_16bit():
    full = np.array([[0, 32767, 32768, 65535]], np.uint16)
    assert binarise_mask(full).tolist() == [[False, False, True, True]]
    # a 16-bit file holding 0/255 (8-bit data saved wide) -> half its maximum, rounded up
    small = np.array([[0, 127, 128, 255]], np.uint16)
    assert binarise_mask(small).tolist() == [[False, False, True, True]]
    assert binarise_mask(np.array([[0, 1]], np.uint16)).tolist() == [[False, True]]


def test_binarise_rgb_and_rgba_take_max_over_colour_ignore_alpha():
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 1] = [255, 0, 0]  # red lesion outline style
    rgb[0, 2] = [0, 0, 100]  # dim blue: below 128
    assert binarise_mask(rgb).tolist() == [[False, True, False]]
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha must not make it foreground
    rgba[0, 1, 1] = 200
    assert binarise_mask(rgba).tolist() == [[False, True]]


def test_binarise_float_masks():
    prob = np.array([[0.0, 0.49, 0.5, 0.9]], np.float32)
    assert binarise_mask(prob).tolist() == [[False, False, True, True]]
    wide = np.array([[0.0, 100.0, 200.0]], np.float32)
    assert binarise_mask(wide).tolist() == [[False, False, True]]


def test_palette_mask_uses_index(tmp_path):
    idx = np.zeros((H, W), np.uint8)
    idx[:8, :8] = 1
    img = Image.fromarray(idx, mode="P")
    # palette colour of index 1 is dark: by colour it would be background, by index it is 1
    img.putpalette([255, 255, 255, 10, 10, 10] + [0] * (254 * 3))
    img.save(tmp_path / "pm.png")
    assert read_array(tmp_path / "pm.png").max() == 1
    m = read_mask([tmp_path / "pm.png"])
    assert m.dtype == bool and m.shape == (H, W)
    assert m.sum() == 64 and m[:8, :8].all()


@pytest.mark.parametrize("kind", ["L255", "L01", "I16", "RGB", "RGBA", "LA"])
def test_read_mask_files_of_every_kind(tmp_path, kind):
    truth = np.zeros((H, W), bool)
    truth[4:12, 5:20] = True
    if kind == "L255":
        arr = truth.astype(np.uint8) * 255
    elif kind == "L01":
        arr = truth.astype(np.uint8)
    elif kind == "I16":
        arr = truth.astype(np.uint16) * 65535
    elif kind == "RGB":
        arr = np.zeros((H, W, 3), np.uint8)
        arr[truth, 1] = 255
    elif kind == "RGBA":
        arr = np.zeros((H, W, 4), np.uint8)
        arr[truth, 0] = 255
        arr[..., 3] = 255
    else:
        arr = np.zeros((H, W, 2), np.uint8)
        arr[truth, 0] = 255
        arr[..., 1] = 255
    p = tmp_path / f"m_{kind}.png"
    Image.fromarray(arr, mode="LA" if kind == "LA" else None).save(p)
    m = read_mask([p], shape=(H, W))
    np.testing.assert_array_equal(m, truth)


def test_read_mask_union_of_several(tmp_path):
    a = np.zeros((H, W), np.uint8)
    b = np.zeros((H, W), np.uint8)
    a[0:4, 0:4] = 255
    b[2:6, 2:6] = 1  # label-style second mask
    _save(tmp_path / "x_mask.png", a)
    _save(tmp_path / "x_mask_1.png", b)
    m = read_mask((tmp_path / "x_mask.png", tmp_path / "x_mask_1.png"), shape=(H, W))
    assert m.sum() == 16 + 16 - 4
    assert m[0, 0] and m[5, 5] and not m[0, 5]


def test_read_mask_none_gives_empty_of_shape():
    m = read_mask([], shape=(3, 5))
    assert m.shape == (3, 5) and m.dtype == bool and not m.any()
    with pytest.raises(DataError, match="at least one mask"):
        read_mask([])


def test_mask_of_other_size_names_the_file(tmp_path):
    p = _save(tmp_path / "case 7_mask.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DataError) as err:
        read_mask([p], shape=(H, W))
    msg = str(err.value)
    assert str(p) in msg and f"{W}x{H + 1}" in msg and f"{W}x{H}" in msg


def test_masks_disagreeing_in_size_name_the_second(tmp_path):
    a = _save(tmp_path / "a_mask.png", np.zeros((H, W), np.uint8))
    b = _save(tmp_path / "a_mask_1.png", np.zeros((H, W + 2), np.uint8))
    with pytest.raises(DataError, match="a_mask_1.png"):
        read_mask([a, b])


# ---- bad files ---------------------------------------------------------------------------


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="0 bytes") as err:
        read_image(p)
    one_line_naming(err, p)
    with pytest.raises(DataError):
        read_mask([p])


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    good = _save(tmp_path / "good.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    data = good.read_bytes()
    p = tmp_path / "trunc.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable image") as err:
        read_image(p)
    one_line_naming(err, p)


def test_text_file_renamed_png(tmp_path):
    p = tmp_path / "notes é.png"
    p.write_text("this is not an image\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_image(p)
    one_line_naming(err, p)
    with pytest.raises(DataError) as err:
        read_mask([p])
    one_line_naming(err, p)


def test_missing_file(tmp_path):
    p = tmp_path / "gone.png"
    with pytest.raises(DataError, match="file not found") as err:
        read_image(p)
    one_line_naming(err, p)


def test_dicom_without_or_with_pydicom(tmp_path):
    p = tmp_path / "x.dcm"
    p.write_bytes(b"garbage")
    with pytest.raises(DataError) as err:
        read_image(p)
    one_line_naming(err, p)


def test_value_counts_equals_numpy_unique():
    """The bincount path for 8-bit and boolean masks gives np.unique's values, dtype and counts."""
    from medtl.data.readers.io import value_counts

    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (50, 60)).astype(np.uint8),
        rng.random((9, 9)) > 0.5,
        np.zeros((4, 4), np.uint8),
        np.full((3, 3), 255, np.uint8),
        rng.integers(0, 3000, (20, 20)).astype(np.uint16),
    ]
    for a in arrays:
        values, counts = value_counts(a)
        want_values, want_counts = np.unique(a, return_counts=True)
        assert values.dtype == want_values.dtype
        assert values.tolist() == want_values.tolist() and counts.tolist() == want_counts.tolist()
