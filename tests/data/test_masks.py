"""Mask interpretation (data.mask_mode): decided from the files, never silently emptied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data.masks.scan import resolve
from medtl.data.masks.scheme import MaskScheme, parse_colors, parse_labels, scheme_from_config
from medtl.data.readers.io import read_mask
from medtl.utils.errors import DataError


class Cfg:
    def __init__(self, mask_mode="auto", labels=None, mask_colors=None):
        self.mask_mode, self.labels, self.mask_colors = mask_mode, labels, mask_colors


class S:
    def __init__(self, *masks):
        self.masks = tuple(masks)


def _png(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, **kw).save(path)
    return path


def _maps(tmp: Path, values, n=3, dtype=np.uint8, suffix=".png") -> list[S]:
    out = []
    for i in range(n):
        m = np.zeros((16, 16), dtype)
        for k, v in enumerate(values):
            m[k * 4 : k * 4 + 3, i : i + 4] = v
        p = tmp / f"m{i}{suffix}"
        if dtype == np.uint16:
            Image.fromarray(m).save(p)
        else:
            _png(p, m)
        out.append(S(p))
    return out


def test_binary_masks_stay_binary(tmp_path):
    s = resolve(Cfg(), _maps(tmp_path, [255]), tmp_path)
    assert s.mode == "binary" and not s.values and s.channels == 1
    assert "binary" in s.describe()


def test_label_maps_auto_and_binary_refused(tmp_path):
    samples = _maps(tmp_path, [1, 2])
    s = resolve(Cfg(), samples, tmp_path)
    assert (s.mode, s.values, s.channels) == ("labels", (1, 2), 3)
    with pytest.raises(DataError, match=r"m0.png: mask values 0,1,2 .*data.mask_mode=labels"):
        resolve(Cfg("binary"), samples, tmp_path)


def test_values_binarised_to_empty_are_an_error_in_binary(tmp_path):
    samples = _maps(tmp_path, [2])
    with pytest.raises(DataError, match="binarise to background"):
        resolve(Cfg("binary"), samples, tmp_path)
    s = resolve(Cfg(), samples, tmp_path)  # auto: one label of value 2, sigmoid head
    assert s.values == (2,) and s.channels == 1


def test_non_contiguous_values_remapped_and_back(tmp_path):
    samples = _maps(tmp_path, [128, 255])
    s = resolve(Cfg(labels="128:a,255:b"), samples, tmp_path)
    idx = read_mask(samples[0].masks, None, s)
    assert idx.dtype == np.uint8 and set(np.unique(idx)) == {0, 1, 2}
    back = s.to_stored(idx)
    assert (back == np.asarray(Image.open(samples[0].masks[0]))).all()


def test_16_bit_label_maps(tmp_path):
    samples = _maps(tmp_path, [1000, 2000], dtype=np.uint16)
    s = resolve(Cfg(), samples, tmp_path)
    assert s.values == (1000, 2000)
    assert s.to_stored(np.array([[2]], np.uint8)).dtype == np.uint16


def test_jpeg_noisy_binary_masks_reported_once(tmp_path):
    yy, xx = np.mgrid[:32, :32]
    m = (((yy - 15.3) ** 2 + (xx - 14.7) ** 2) < 81).astype(np.uint8) * 255
    samples = []
    for i in range(3):
        p = tmp_path / f"j{i}.jpg"
        Image.fromarray(m).save(p, quality=60)
        samples.append(S(p))
    s = resolve(Cfg(), samples, tmp_path)
    assert s.mode == "binary" and s.note == "JPEG-compressed binary masks, thresholded at 128"


def test_float_and_multichannel_are_one_line_errors(tmp_path):
    f = tmp_path / "f.tif"
    Image.fromarray(np.linspace(0, 3, 64, dtype=np.float32).reshape(8, 8)).save(f)
    with pytest.raises(DataError, match=r"f.tif: float mask"):
        resolve(Cfg(), [S(f)], tmp_path)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4, :, 0] = 255
    rgb[4:, :, 1] = 255
    p = _png(tmp_path / "c.png", rgb)
    with pytest.raises(DataError, match=r"c.png: multi-channel label map"):
        resolve(Cfg("labels"), [S(p)], tmp_path)


def test_colour_masks(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:2, :, 0] = 255
    rgb[4:6, :, 1] = 255
    p = _png(tmp_path / "c.png", rgb)
    s = resolve(Cfg(mask_colors="255,0,0:tumour;0,255,0:edema"), [S(p)], tmp_path)
    assert s.mode == "colors" and s.names == ("tumour", "edema")
    idx = read_mask([p], None, s)
    assert idx[0, 0] == 1 and idx[4, 0] == 2 and idx[7, 0] == 0
    assert (s.to_stored(idx) == rgb).all()
    with pytest.raises(DataError, match=r"c.png: colour \(0, 255, 0\) is not in data.mask_colors"):
        resolve(Cfg(mask_colors="255,0,0:tumour"), [S(p)], tmp_path)


def test_palettes_that_differ(tmp_path):
    samples = []
    for i in range(2):
        img = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), mode="P")
        img.putpalette([0, 0, 0, 255, 0, 0, 0, 255 - 100 * i, 0] + [0] * 759)
        p = tmp_path / f"p{i}.png"
        img.save(p)
        samples.append(S(p))
    with pytest.raises(DataError, match=r"p1.png: its palette differs"):
        resolve(Cfg(), samples, tmp_path)
    assert resolve(Cfg("labels"), samples, tmp_path).values == (1, 2)


def test_value_outside_labels_and_label_in_no_mask(tmp_path):
    samples = _maps(tmp_path, [1, 2])
    with pytest.raises(DataError, match=r"m0.png: mask value\(s\) \[2\] outside data.labels"):
        resolve(Cfg(labels="1:lesion"), samples, tmp_path)
    with pytest.raises(DataError, match=r"label value\(s\) \[3\] of data.labels occur in no mask"):
        resolve(Cfg(labels="1:a,2:b,3:c"), samples, tmp_path)


def test_labels_file_names_and_config_round_trip(tmp_path):
    samples = _maps(tmp_path, [1, 2])
    (tmp_path / "labels.yaml").write_text("1: lesion\n2: halo\n")
    s = resolve(Cfg(), samples, tmp_path)
    assert s.names == ("lesion", "halo")
    cfg = Cfg(**s.config_values())
    assert scheme_from_config(cfg) == MaskScheme("labels", (1, 2), ("lesion", "halo"))
    assert parse_labels("2:halo,1:lesion") == ((1, 2), ("lesion", "halo"))
    assert parse_colors("255,0,0:t")[0] == ((255, 0, 0),)


def test_files_of_0_1_and_of_0_255_are_one_binary_set(tmp_path):
    """BUSI mixes mode-1 masks (0/1) and 8-bit masks (0/255): binary, not three labels."""
    samples = _maps(tmp_path / "a", [1], n=2) + _maps(tmp_path / "b", [255], n=2)
    m = np.zeros((16, 16), bool)
    m[2:6, 2:6] = True
    samples.append(S(_png(tmp_path / "c" / "mode1.png", m)))  # saved as mode "1"
    assert Image.open(tmp_path / "c" / "mode1.png").mode == "1"
    assert resolve(Cfg(), samples, tmp_path).mode == "binary"


def test_files_of_0_1_and_of_0_2_or_0_128_are_labels(tmp_path):
    for k, other in enumerate((2, 128)):
        root = tmp_path / str(k)
        samples = _maps(root / "a", [1], n=2) + _maps(root / "b", [other], n=2)
        s = resolve(Cfg(), samples, root)
        assert (s.mode, s.values) == ("labels", (1, other))
