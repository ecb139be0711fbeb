"""File names with a newline, a space or a spreadsheet formula pair with their masks in the
folder layouts as any other name does (the CSV manifest route is in test_layouts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data.layouts import discover, mask_stem
from medtl.data.refs import parse_ref, slice_ref

ODD = ["line\nbreak", "two words", "=cmd|calc", "=cmd|' C calc'!A0\nx y"]


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _pairs(ds) -> dict[str, list[str]]:
    return {s.image.name: [m.name for m in s.masks] for s in ds.samples}


@pytest.mark.parametrize("stem", ODD)
def test_mask_stem_of_odd_names(stem):
    assert mask_stem(Path(f"{stem}_mask.png")) == (stem, 0)
    assert mask_stem(Path(f"{stem}_MASK_2.png")) == (stem, 2)
    assert mask_stem(Path(f"{stem}.png")) is None
    assert mask_stem(Path(f"{stem}_mask\nx.png")) is None  # the suffix must end the stem


def test_class_masks_with_odd_names(tmp_path):
    for stem in ODD:
        _png(tmp_path / "benign" / f"{stem}.png")
        _png(tmp_path / "benign" / f"{stem}_mask.png", 255)
    _png(tmp_path / "benign" / f"{ODD[0]}_mask_1.png", 255)  # a second mask, merged
    _png(tmp_path / "malignant" / "m1.png")
    _png(tmp_path / "malignant" / "m1_mask.png", 255)
    ds = discover(tmp_path)
    assert ds.layout == "class_masks"
    assert ds.problems == []
    pairs = _pairs(ds)
    assert len(pairs) == len(ODD) + 1
    for stem in ODD:
        extra = [f"{stem}_mask_1.png"] if stem == ODD[0] else []
        assert pairs[f"{stem}.png"] == [f"{stem}_mask.png", *extra]
    assert {s.label for s in ds.samples} == {"benign", "malignant"}


@pytest.mark.parametrize("suffix", ["_mask", ""])
def test_paired_with_odd_names(tmp_path, suffix):
    for stem in ODD:
        _png(tmp_path / "images" / f"{stem}.png")
        _png(tmp_path / "masks" / f"{stem}{suffix}.png", 255)
    ds = discover(tmp_path)
    assert ds.layout == "paired"
    assert ds.problems == []
    assert _pairs(ds) == {f"{s}.png": [f"{s}{suffix}.png"] for s in ODD}
    assert all(m.is_file() for s in ds.samples for m in s.masks)


def test_slice_reference_of_a_name_with_a_newline():
    ref = slice_ref(Path("a\nb =cmd|calc.dcm"), "f", 3)
    assert parse_ref(ref) == (Path("a\nb =cmd|calc.dcm"), "f", 3, "slice")
    assert parse_ref(Path("a\nb.png")) is None
