"""Layout discovery: every layout found by ``auto``; problems and errors name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data.layouts import Sample, discover, mask_stem
from medtl.utils.errors import DataError


def _png(path: Path, value: int = 0, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    return path


def _names(samples):
    return [s.image.name for s in samples]


def test_mask_stem():
    assert mask_stem(Path("benign (1)_mask.png")) == ("benign (1)", 0)
    assert mask_stem(Path("benign (1)_mask_2.png")) == ("benign (1)", 2)
    assert mask_stem(Path("p01_MASK.png")) == ("p01", 0)
    assert mask_stem(Path("p01.png")) is None
    assert mask_stem(Path("masking.png")) is None


def test_paired_same_stem_and_mask_suffix(tmp_path):
    for n in ("a", "b", "c"):
        _png(tmp_path / "images" / f"{n}.png")
    _png(tmp_path / "masks" / "a.png", 255)
    _png(tmp_path / "masks" / "b_mask.png", 255)
    _png(tmp_path / "masks" / "c_mask.png", 255)
    _png(tmp_path / "masks" / "c_mask_1.png", 255)
    ds = discover(tmp_path)
    assert ds.layout == "paired"
    assert _names(ds.samples) == ["a.png", "b.png", "c.png"]
    by = {s.image.name: s for s in ds.samples}
    assert by["a.png"].masks == (tmp_path / "masks" / "a.png",)
    assert by["b.png"].masks == (tmp_path / "masks" / "b_mask.png",)
    assert [m.name for m in by["c.png"].masks] == ["c_mask.png", "c_mask_1.png"]
    assert all(s.split is None and s.label is None for s in ds.samples)
    assert ds.problems == [] and ds.has_masks and not ds.has_labels and ds.classes == []


def test_paired_under_premade_train_test(tmp_path):
    _png(tmp_path / "train" / "images" / "p1.png")
    _png(tmp_path / "train" / "masks" / "p1_mask.png")
    _png(tmp_path / "train" / "images" / "p2.png")
    _png(tmp_path / "train" / "masks" / "p2_mask.png")
    _png(tmp_path / "test" / "images" / "p3.png")
    _png(tmp_path / "test" / "masks" / "p3_mask.png")
    ds = discover(tmp_path)
    assert ds.layout == "paired"
    assert {s.image.name: s.split for s in ds.samples} == {
        "p1.png": "train",
        "p2.png": "train",
        "p3.png": "test",
    }


def test_paired_problems_name_the_files(tmp_path):
    _png(tmp_path / "images" / "ok.png")
    _png(tmp_path / "masks" / "ok_mask.png")
    _png(tmp_path / "images" / "lonely.png")
    _png(tmp_path / "masks" / "orphan_mask.png")
    ds = discover(tmp_path)
    assert _names(ds.samples) == ["ok.png"]
    assert len(ds.problems) == 2
    img_problem = next(p for p in ds.problems if p.startswith("image without mask"))
    mask_problem = next(p for p in ds.problems if p.startswith("mask without image"))
    assert str(tmp_path / "images" / "lonely.png") in img_problem
    assert str(tmp_path / "masks" / "orphan_mask.png") in mask_problem


def test_siblings_with_splits(tmp_path):
    for split, names in (("train", ["x1", "x2"]), ("test", ["y1"])):
        for n in names:
            _png(tmp_path / split / f"{n}.png")
            _png(tmp_path / f"{split}_masks" / f"{n}_mask.png", 255)
    ds = discover(tmp_path)
    assert ds.layout == "siblings"
    assert {s.image.name: s.split for s in ds.samples} == {
        "x1.png": "train",
        "x2.png": "train",
        "y1.png": "test",
    }
    assert all(len(s.masks) == 1 and s.masks[0].parent.name.endswith("_masks") for s in ds.samples)
    assert "splits: test=1, train=2" in ds.summary()


def test_class_masks_busi_style(tmp_path):
    _png(tmp_path / "benign" / "benign (1).png")
    _png(tmp_path / "benign" / "benign (1)_mask.png", 255)
    _png(tmp_path / "benign" / "benign (1)_mask_2.png", 255)
    _png(tmp_path / "benign" / "benign (1)_mask_1.png", 255)
    _png(tmp_path / "benign" / "benign (2).png")
    _png(tmp_path / "benign" / "benign (2)_mask.png", 255)
    _png(tmp_path / "malignant" / "malignant (1).png")
    _png(tmp_path / "malignant" / "malignant (1)_mask.png", 255)
    _png(tmp_path / "normal" / "normal (1).png")
    _png(tmp_path / "normal" / "normal (1)_mask.png", 0)
    ds = discover(tmp_path)
    assert ds.layout == "class_masks"
    assert ds.classes == ["benign", "malignant", "normal"]
    by = {s.image.name: s for s in ds.samples}
    assert set(by) == {"benign (1).png", "benign (2).png", "malignant (1).png", "normal (1).png"}
    assert [m.name for m in by["benign (1).png"].masks] == [
        "benign (1)_mask.png",
        "benign (1)_mask_1.png",
        "benign (1)_mask_2.png",
    ]
    assert by["malignant (1).png"].label == "malignant"
    assert ds.problems == []
    assert ds.summary().endswith(
        "layout=class_masks, 4 images (4 with masks); classes: benign=2, malignant=1, normal=1; splits: unsplit=4"
    )


def test_class_masks_problems(tmp_path):
    _png(tmp_path / "benign" / "b1.png")
    _png(tmp_path / "benign" / "b1_mask.png", 255)
    _png(tmp_path / "benign" / "b2.png")
    _png(tmp_path / "malignant" / "m9_mask.png", 255)
    ds = discover(tmp_path)
    assert _names(ds.samples) == ["b1.png"]
    assert any(
        "image without mask" in p and str(tmp_path / "benign" / "b2.png") in p for p in ds.problems
    )
    assert any(
        "mask without image" in p and str(tmp_path / "malignant" / "m9_mask.png") in p
        for p in ds.problems
    )


def test_imagefolder_with_and_without_split_level(tmp_path):
    flat = tmp_path / "flat"
    _png(flat / "glioma" / "g1.png")
    _png(flat / "glioma" / "g2.jpg")
    _png(flat / "no_tumor" / "n1.png")
    ds = discover(flat)
    assert ds.layout == "imagefolder"
    assert ds.classes == ["glioma", "no_tumor"]
    assert sorted((s.image.name, s.label) for s in ds.samples) == [
        ("g1.png", "glioma"),
        ("g2.jpg", "glioma"),
        ("n1.png", "no_tumor"),
    ]
    assert not ds.has_masks and ds.has_labels

    split = tmp_path / "split"
    _png(split / "train" / "glioma" / "a.png")
    _png(split / "train" / "pituitary" / "b.png")
    _png(split / "test" / "glioma" / "c.png")
    ds = discover(split)
    assert ds.layout == "imagefolder"
    assert {(s.image.name, s.label, s.split) for s in ds.samples} == {
        ("a.png", "glioma", "train"),
        ("b.png", "pituitary", "train"),
        ("c.png", "glioma", "test"),
    }
    assert ds.classes == ["glioma", "pituitary"]


def test_csv_manifest(tmp_path):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    _png(tmp_path / "img" / "c.png")
    _png(tmp_path / "lab" / "a_1.png", 255)
    _png(tmp_path / "lab" / "a_2.png", 255)
    _png(tmp_path / "lab" / "b.png", 255)
    (tmp_path / "manifest.csv").write_text(
        "image,mask,label,group,split\n"
        "img/a.png,lab/a_1.png; lab/a_2.png,benign,patient1,train\n"
        "img/b.png,lab/b.png,malignant,patient1,\n"
        "img/c.png,,benign,,test\n"
        "img/missing.png,,benign,,\n",
        encoding="utf-8",
    )
    ds = discover(tmp_path)
    assert ds.layout == "csv"
    by = {s.image.name: s for s in ds.samples}
    assert set(by) == {"a.png", "b.png", "c.png"}
    assert by["a.png"].masks == (tmp_path / "lab" / "a_1.png", tmp_path / "lab" / "a_2.png")
    assert (by["a.png"].label, by["a.png"].group, by["a.png"].split) == (
        "benign",
        "patient1",
        "train",
    )
    assert (by["b.png"].group, by["b.png"].split) == ("patient1", None)
    assert by["c.png"].masks == () and by["c.png"].group is None and by["c.png"].split == "test"
    assert ds.classes == ["benign", "malignant"]
    assert len(ds.problems) == 1
    assert "line 5" in ds.problems[0] and str(tmp_path / "img" / "missing.png") in ds.problems[0]


def test_csv_given_as_file_with_bom_and_capital_split(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    f = tmp_path / "list.csv"
    # Excel writes a byte-order mark; 'Test' must still mean the test split
    f.write_text("\ufeffimage,label,split\na.png,x,Train\nb.png,y,Test\n", encoding="utf-8")
    ds = discover(f)
    assert ds.layout == "csv"
    assert {s.image.name: s.split for s in ds.samples} == {"a.png": "train", "b.png": "test"}


def test_csv_errors(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "m.png")
    (tmp_path / "m.csv").write_text("path,label\na.png,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="needs an 'image' column") as err:
        discover(tmp_path)
    assert str(tmp_path / "m.csv") in str(err.value)
    (tmp_path / "m.csv").write_text("image,mask\na.png,gone.png\n", encoding="utf-8")
    with pytest.raises(DataError, match="gone.png not found"):
        discover(tmp_path)
    (tmp_path / "m.csv").write_text("image,split\na.png,holdout\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: split 'holdout'"):
        discover(tmp_path)


def test_root_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as err:
        discover(missing)
    assert str(missing) in str(err.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is empty") as err:
        discover(empty)
    assert str(empty) in str(err.value)

    flat = tmp_path / "flat"
    _png(flat / "loose.png")  # images straight in the root: no known layout
    with pytest.raises(DataError, match="no known layout") as err:
        discover(flat)
    assert str(flat) in str(err.value)

    ok = tmp_path / "ok"
    _png(ok / "cls" / "a.png")
    with pytest.raises(DataError, match="unknown data.layout 'pairs'"):
        discover(ok, layout="pairs")

    no_images = tmp_path / "noimg"
    (no_images / "cls").mkdir(parents=True)
    (no_images / "cls" / "readme.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="no known layout") as err:
        discover(no_images)
    assert str(no_images) in str(err.value) and "found: cls/ (1 .txt)" in str(err.value)
    with pytest.raises(DataError, match="no usable images .* layout 'imagefolder'") as err:
        discover(no_images, layout="imagefolder")
    assert "./: 1 file (1 .txt) not used" in str(err.value)


def test_only_orphans_error_mentions_first_problem(tmp_path):
    _png(tmp_path / "images" / "a.png")
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="image without mask") as err:
        discover(tmp_path)
    assert "a.png" in str(err.value)


def test_spaces_and_non_ascii_names(tmp_path):
    root = tmp_path / "données brutes"
    _png(root / "images" / "patient é 01.png")
    _png(root / "masks" / "patient é 01_mask.png", 255)
    _png(root / "images" / "病例 2.png")
    _png(root / "masks" / "病例 2.png", 255)
    ds = discover(str(root))
    assert ds.problems == []
    assert sorted(_names(ds.samples)) == sorted(["patient é 01.png", "病例 2.png"])
    assert all(s.masks[0].is_file() for s in ds.samples)


def test_hidden_and_non_image_files_ignored(tmp_path):
    _png(tmp_path / "benign" / "b1.png")
    _png(tmp_path / "benign" / "b1_mask.png", 255)
    _png(tmp_path / "benign" / ".b1.png")  # hidden (macOS '._' style)
    _png(tmp_path / "benign" / "._b1_mask.png")
    (tmp_path / "benign" / "notes.txt").write_text("x", encoding="utf-8")
    (tmp_path / "benign" / "Thumbs.db").write_bytes(b"\0")
    _png(tmp_path / ".ipynb_checkpoints" / "junk.png")  # hidden folder is not a class
    ds = discover(tmp_path)
    assert ds.layout == "class_masks"
    assert _names(ds.samples) == ["b1.png"]
    assert ds.classes == ["benign"]
    assert ds.problems == []


def test_explicit_layout_overrides_auto(tmp_path):
    _png(tmp_path / "benign" / "b1.png")
    _png(tmp_path / "benign" / "b1_mask.png", 255)
    ds = discover(tmp_path, layout="imagefolder")  # masks ignored: classification only
    assert ds.layout == "imagefolder"
    assert _names(ds.samples) == ["b1.png"] and ds.samples[0].masks == ()


def test_sample_identity():
    a = Sample(Path("x/a.png"), meta={"k": 1})
    b = Sample(Path("x/a.png"), meta={"k": 2})
    assert a == b and hash(a) == hash(b)  # meta is not part of identity
    assert a.id == str(Path("x/a.png"))
