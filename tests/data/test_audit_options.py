"""``medtl audit DATA [-o key=value | key=value ...]``: the data.* keys that change how the
files are read change what the audit reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.data.conftest import save, smooth_image


def half_size_masks(root: Path) -> Path:
    """``images/`` 32x32 with ``masks/`` 16x16 (same aspect ratio), 4 patients x 2 images
    named ``p<k>_<j>``; each mask a 4x4 square (1/16 of the image)."""
    for k in range(4):
        for j in range(2):
            save(root / "images" / f"p{k}_{j}.png", smooth_image(10 * k + j, 32))
            m = np.zeros((16, 16), np.uint8)
            m[4:8, 4:8] = 255
            save(root / "masks" / f"p{k}_{j}.png", m)
    return root


def audit_json(capsys, *args: str) -> dict:
    code, out, err = run_cli(capsys, "audit", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_mask_resize_key_reads_masks_as_training_does(tmp_path, capsys):
    data = half_size_masks(tmp_path / "d")
    plain = audit_json(capsys, str(data))
    assert len(plain["mask_size_mismatch"]) == 8
    assert any("data.mask_resize=nearest" in p for p in plain["problems"])
    resized = audit_json(capsys, str(data), "-o", "data.mask_resize=nearest")
    assert resized["mask_size_mismatch"] == []
    assert not any("mask size" in p for p in resized["problems"])
    assert resized["mask_coverage"]["-"] == {"mean": 1 / 16, "min": 1 / 16, "max": 1 / 16, "n": 8}
    assert plain["mask_coverage"] == {}  # no mask could be counted
    same = audit_json(capsys, str(data), "data.mask_resize=nearest")  # train's syntax
    assert same["mask_size_mismatch"] == []
    again = audit_json(capsys, str(data))  # the setting does not outlive its audit
    assert len(again["mask_size_mismatch"]) == 8


def test_group_pattern_key(tmp_path, capsys):
    data = half_size_masks(tmp_path / "d")
    given = audit_json(capsys, str(data), "-o", r"data.group_pattern=(p\d+)_")
    assert given["grouping"]["groups_in_force"] == 4
    off = audit_json(capsys, str(data), "-o", "data.group_pattern=none")
    assert off["grouping"]["groups_in_force"] == 0


def test_label_tag_key_gives_dicom_classes(tmp_path, capsys):
    pytest.importorskip("pydicom")
    from tests.data.test_dicom_tree import pacs_export

    root = pacs_export(tmp_path / "cd", tmp_path)
    assert audit_json(capsys, str(root))["classes"] == {"-": 8}
    tagged = audit_json(capsys, str(root), "-o", "data.label_tag=BodyPartExamined")
    assert tagged["classes"] == {"CHEST": 4, "HEAD": 4}


def test_label_keys_change_the_mask_interpretation(tmp_path, capsys):
    root = tmp_path / "lab"
    for i in range(4):
        save(root / "images" / f"c{i}.png", smooth_image(i, 32))
        m = np.zeros((32, 32), np.uint8)
        m[2:10, 2:10], m[20:28, 20:28] = 1, 2
        save(root / "masks" / f"c{i}.png", m)
    auto = audit_json(capsys, str(root))["mask_interpretation"]
    assert auto["mode"] == "labels" and [x["name"] for x in auto["labels"]] == [
        "label_1",
        "label_2",
    ]
    named = audit_json(capsys, str(root), "-o", "data.labels=1:liver,2:tumour")
    assert [x["name"] for x in named["mask_interpretation"]["labels"]] == ["liver", "tumour"]
    binary = audit_json(capsys, str(root), "-o", "data.mask_mode=binary")
    assert binary["mask_interpretation"]["error"]  # label maps are not binary masks


def test_other_keys_are_one_line(tmp_path, capsys):
    data = half_size_masks(tmp_path / "d")
    code, _, err = run_cli(capsys, "audit", str(data), "-o", "train.epochs=3")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "train.epochs=3" in err and "data.mask_resize" in err
    code, _, err = run_cli(capsys, "audit", str(data), "-o", "data.mask_resize=bicubic")
    assert code == 2 and "data.mask_resize" in err and len(err.strip().splitlines()) == 1


def test_classes_key_audits_only_those_classes(phantoms, capsys):
    """``data.classes`` keeps the images training would keep: the normals (empty masks) and
    their empty-mask count leave the report."""
    everything = audit_json(capsys, str(phantoms))
    assert everything["classes"] == {"benign": 9, "malignant": 4, "normal": 3}
    kept = audit_json(capsys, str(phantoms), "data.classes=[benign,malignant]")
    assert kept["n_images"] == 13 and kept["classes"] == {"benign": 9, "malignant": 4}
    assert "normal" not in kept["mask_coverage"] and "normal" not in kept["empty_masks"]
