"""GIF masks (``<name>_mask.gif``) and the other mask extensions, found by the layouts and
decoded by their colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data.audit.files import other_files
from medtl.data.layouts import MASK_EXTS, discover
from medtl.data.readers.io import read_array, read_mask

SIZE = (20, 30)  # (H, W)


def _truth() -> np.ndarray:
    m = np.zeros(SIZE, bool)
    m[4:12, 6:20] = True
    return m


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _gif_mask(path: Path, how: str) -> Path:
    """A black/white GIF written three ways: from grey, from RGB (PIL's encoder then puts
    white at palette index 0) and as a 0/1 palette image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = _truth().astype(np.uint8) * 255
    if how == "grey":
        Image.fromarray(grey).save(path)
    elif how == "rgb":
        Image.fromarray(np.stack([grey] * 3, axis=-1)).save(path)
    else:
        img = Image.fromarray(_truth().astype(np.uint8), "P")
        img.putpalette([0, 0, 0, 255, 255, 255])
        img.save(path)
    with Image.open(path) as img:
        assert img.mode in ("P", "L")  # what PIL reads a GIF as
    return path


@pytest.mark.parametrize("how", ["grey", "rgb", "palette01"])
def test_a_gif_mask_reads_as_its_white_pixels(tmp_path, how):
    path = _gif_mask(tmp_path / "a_mask.gif", how)
    if how == "rgb":  # the case palette indices get wrong: white is index 0
        with Image.open(path) as img:
            assert img.mode == "P" and img.getpalette()[:3] == [255, 255, 255]
    assert read_array(path).shape[:2] == SIZE
    assert np.array_equal(read_mask([path], SIZE), _truth())


def test_paired_layout_finds_gif_masks(tmp_path):
    _image(tmp_path / "images" / "a.png")
    _image(tmp_path / "images" / "b.jpg")
    _gif_mask(tmp_path / "masks" / "a_mask.gif", "rgb")
    _gif_mask(tmp_path / "masks" / "b.gif", "grey")
    ds = discover(tmp_path)
    assert ds.layout == "paired" and not ds.problems
    assert {s.image.name: [m.name for m in s.masks] for s in ds.samples} == {
        "a.png": ["a_mask.gif"],
        "b.jpg": ["b.gif"],
    }
    for s in ds.samples:
        assert np.array_equal(read_mask(s.masks, SIZE), _truth())
    assert other_files(tmp_path, ds.layout) == []  # audit does not call them stray files


def test_siblings_layout_finds_gif_masks_carvana_style(tmp_path):
    for split, names in (("train", ["car_01", "car_02"]), ("test", ["car_03"])):
        for n in names:
            _image(tmp_path / split / f"{n}.jpg")
            _gif_mask(tmp_path / f"{split}_masks" / f"{n}_mask.gif", "palette01")
    ds = discover(tmp_path)
    assert ds.layout == "siblings" and not ds.problems
    assert sorted((s.split, s.image.name, s.masks[0].name) for s in ds.samples) == [
        ("test", "car_03.jpg", "car_03_mask.gif"),
        ("train", "car_01.jpg", "car_01_mask.gif"),
        ("train", "car_02.jpg", "car_02_mask.gif"),
    ]
    assert all(np.array_equal(read_mask(s.masks, SIZE), _truth()) for s in ds.samples)


def test_class_masks_layout_finds_gif_masks_beside_the_images(tmp_path):
    _image(tmp_path / "benign" / "p1.png")
    _gif_mask(tmp_path / "benign" / "p1_mask.gif", "grey")
    _image(tmp_path / "malignant" / "p2.png")
    _gif_mask(tmp_path / "malignant" / "p2_mask.gif", "rgb")
    ds = discover(tmp_path)  # auto sees the GIF masks: class_masks, not imagefolder
    assert ds.layout == "class_masks" and not ds.problems
    assert sorted((s.label, s.masks[0].name) for s in ds.samples) == [
        ("benign", "p1_mask.gif"),
        ("malignant", "p2_mask.gif"),
    ]


@pytest.mark.parametrize("ext", [e for e in MASK_EXTS if e != ".dcm"])
def test_every_mask_extension_is_found(tmp_path, ext):
    _image(tmp_path / "images" / "a.png")
    mask = tmp_path / "masks" / f"a_mask{ext}"
    mask.parent.mkdir(parents=True)
    Image.fromarray(_truth().astype(np.uint8) * 255).save(mask)
    ds = discover(tmp_path)
    assert [m.name for m in ds.samples[0].masks] == [mask.name]
    assert np.array_equal(read_mask(ds.samples[0].masks, SIZE), _truth())
