"""Shapes met in public data sets exactly as published, beyond the idealised fixtures of
``test_published.py``: DRIVE's folders (vessel masks in ``1st_manual/`` under other names,
field-of-view ``mask/*_mask.gif`` beside them) and a notebook checkpoint folder left in
a class folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtl.configuration.loading import Config
from medtl.data.layouts import detect, discover
from medtl.data.pipeline import load_samples
from medtl.utils.errors import DataError
from tests.data.conftest import save, smooth_image


def _vessels(seed: int) -> np.ndarray:
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 10 + seed % 5] = 255
    mask[16, :] = 255
    return mask


def _drive(root: Path) -> Path:
    """DRIVE as published: ``training/images/21_training.tif``,
    ``training/1st_manual/21_manual1.gif``, ``training/mask/21_training_mask.gif``; the
    test split numbered 01.. with a ``2nd_manual/`` as well."""
    fov = np.full((32, 32), 255, np.uint8)
    for split, first, n in (("training", 21, 4), ("test", 1, 2)):
        for k in range(first, first + n):
            save(root / split / "images" / f"{k:02d}_{split}.tif", smooth_image(k, 32))
            save(root / split / "1st_manual" / f"{k:02d}_manual1.gif", _vessels(k))
            save(root / split / "mask" / f"{k:02d}_{split}_mask.gif", fov)
            if split == "test":
                save(root / split / "2nd_manual" / f"{k:02d}_manual2.gif", _vessels(k + 1))
    return root


def test_drive_as_published_names_the_manifest_not_a_mask_beside_the_image(tmp_path):
    root = _drive(tmp_path / "DRIVE")
    # the field-of-view files are named <image>_mask but do not lie beside their images
    assert detect(root) is None
    with pytest.raises(DataError) as err:
        discover(root)
    msg = str(err.value)
    assert "no known layout" in msg and "\n" not in msg
    assert "found: test/1st_manual/ (2 .gif)" in msg and "training/images/ (4 .tif)" in msg
    assert (
        "nearest layout: paired, but test/1st_manual/ (01_manual1.gif) is not named like "
        "test/images/ (01_test.tif)"
    ) in msg
    assert f"pair them in {root / 'data.csv'} with columns image,mask,split" in msg
    assert "beside it" not in msg and "class_masks" not in msg
    # the same message when the layout is asked for by name
    with pytest.raises(DataError, match="layout 'paired'.*not named like test/images/"):
        discover(root, "paired")


def test_drive_with_the_manifest_the_message_asks_for(tmp_path):
    root = _drive(tmp_path / "DRIVE")
    rows = ["image,mask,split"]
    for split, first, n in (("training", 21, 4), ("test", 1, 2)):
        for k in range(first, first + n):
            rows.append(
                f"{split}/images/{k:02d}_{split}.tif,{split}/1st_manual/{k:02d}_manual1.gif,{split}"
            )
    (root / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = load_samples(Config(), root)
    assert ds.layout == "csv" and len(ds.samples) == 6
    assert sorted(s.split for s in ds.samples) == ["test"] * 2 + ["train"] * 4
    assert all(s.masks[0].parent.name == "1st_manual" for s in ds.samples)
    assert ds.unused == [
        "test/2nd_manual/: 2 files (2 .gif) not used",
        "test/mask/: 2 files (2 .gif) not used",
        "training/mask/: 4 files (4 .gif) not used",
    ]


def test_class_masks_needs_a_mask_beside_its_image(tmp_path):
    busi = tmp_path / "busi"
    save(busi / "benign" / "benign (1).png", smooth_image(1, 32))
    save(busi / "benign" / "benign (1)_mask.png", _vessels(1))
    assert detect(busi) == "class_masks"
    # a folder of *_mask files alone (no image of that name beside them) is no evidence
    lone = tmp_path / "lone"
    save(lone / "a" / "x.png", smooth_image(2, 32))
    save(lone / "b" / "y_mask.gif", _vessels(2))
    assert detect(lone) == "imagefolder"


def test_renamed_mask_folder_in_a_split_folder_names_the_rename(tmp_path):
    root = tmp_path / "retina"
    for k in range(2):
        save(root / "training" / "images" / f"{k}.png", smooth_image(k, 32))
        save(root / "training" / "manual" / f"{k}.png", _vessels(k))
    with pytest.raises(DataError, match=r"rename training/manual/ to masks/ \(a mask named"):
        discover(root)


def test_notebook_checkpoint_folder_in_a_class_folder_is_skipped(tmp_path):
    root = tmp_path / "brain"
    for folder, prefix in (("Training", "Tr"), ("Testing", "Te")):
        for cls in ("glioma", "notumor"):
            for k in range(3):
                save(root / folder / cls / f"{prefix}-{cls[:2]}_{k:04d}.jpg", smooth_image(k, 32))
    hidden = root / "Testing" / "glioma" / ".ipynb_checkpoints" / "Te-gl_0001-checkpoint.jpg"
    save(hidden, smooth_image(9, 32))
    ds = discover(root)
    assert ds.layout == "imagefolder" and len(ds.samples) == 12
    assert all(".ipynb_checkpoints" not in str(s.image) for s in ds.samples)
    assert ds.unused == []
