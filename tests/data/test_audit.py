"""Tests for medtl.data.audit.report on tiny synthetic folders (and BUSI when present)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from medtl.data.audit.report import audit
from tests.data.conftest import SIZE, near_copy, save, smooth_image

BUSI = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "busi"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


def _square_mask(size: int = SIZE, side: int = 10) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[5 : 5 + side, 5 : 5 + side] = 255
    return m


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    """A class_masks folder with one of every defect the audit must find."""
    root = tmp_path / "data"
    b, m, n = root / "benign", root / "malignant", root / "normal"
    sq = _square_mask()  # 100 of 1600 pixels: coverage 0.0625
    save(b / "a.png", smooth_image(1))
    save(b / "a_mask.png", sq)
    save(b / "b.png", smooth_image(2))
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[5:15, 5:15, :3] = 255
    save(b / "b_mask.png", rgba, "RGBA")
    save(b / "c.png", smooth_image(3))
    save(b / "c_mask.png", sq.astype(np.uint16) * 257)  # 16-bit 0/65535
    save(b / "d.png", smooth_image(4))
    pal = Image.fromarray((sq > 0).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.save(b / "d_mask.png")
    save(b / "e.png", smooth_image(5))
    multi = sq.copy()
    multi[20:22, 20:22] = 1
    multi[30:32, 30:32] = 2
    save(b / "e_mask.png", multi)  # values {0, 1, 2, 255}
    save(b / "f.png", smooth_image(6))
    save(b / "f_mask.png", _square_mask(32))  # wrong size
    save(b / "g.png", smooth_image(7))
    save(b / "g_mask.png", sq)
    extra = np.zeros_like(sq)
    extra[30:40, 30:40] = 255  # disjoint square: union covers 200 pixels
    save(b / "g_mask_1.png", extra)
    save(b / "h.png", smooth_image(8))  # no mask
    (b / "z.png").write_bytes(b"")  # zero-byte image
    save(b / "z_mask.png", sq)
    (b / "notes.txt").write_text("scanner settings")
    save(b / "nc.png", near_copy(smooth_image(3)))  # near copy of c.png
    save(b / "nc_mask.png", sq)
    _copy(b / "a.png", m / "a_copy.png")  # byte-identical copy in another class
    save(m / "a_copy_mask.png", sq)
    save(m / "m.png", smooth_image(9))
    save(m / "m_mask.png", sq)
    save(n / "k.png", smooth_image(10))
    save(n / "k_mask.png", np.zeros((SIZE, SIZE), np.uint8))
    return root


def test_audit_finds_every_defect_and_nothing_else(messy: Path) -> None:
    r = audit(messy, masks=SimpleNamespace(mask_mode="binary", labels=None, mask_colors=None))
    b, m = messy / "benign", messy / "malignant"
    assert r.layout == "class_masks"
    assert r.n_images == 12  # h.png has no mask and is left out by the layout
    assert r.classes == {"benign": 9, "malignant": 2, "normal": 1}
    assert r.splits == {"unsplit": 12}
    assert r.image_modes == {"L": 11}  # z.png unreadable
    assert r.image_sizes["most_common"] == [SIZE, SIZE] and r.image_sizes["n_distinct"] == 1

    assert r.unreadable == [{"path": str(b / "z.png"), "error": r.unreadable[0]["error"]}]
    assert "empty file" in r.unreadable[0]["error"]
    assert r.other_files == [str(b / "notes.txt")]
    assert len(r.layout_problems) == 1 and str(b / "h.png") in r.layout_problems[0]
    assert r.mask_size_mismatch == [
        {
            "mask": str(b / "f_mask.png"),
            "mask_size": "32x32",
            "image": str(b / "f.png"),
            "image_size": "40x40",
        }
    ]
    assert r.multi_mask == [
        {"image": str(b / "g.png"), "masks": [str(b / "g_mask.png"), str(b / "g_mask_1.png")]}
    ]
    odd = {Path(o["mask"]).name: (o["mode"], o["reasons"]) for o in r.odd_masks}
    assert set(odd) == {"b_mask.png", "c_mask.png", "d_mask.png", "e_mask.png"}
    assert odd["b_mask.png"][0] == "RGBA" and "not single-channel" in odd["b_mask.png"][1][0]
    assert odd["c_mask.png"][0].startswith("I;16") and "16-bit" in odd["c_mask.png"][1][0]
    assert odd["d_mask.png"][0] == "P" and "palette" in odd["d_mask.png"][1][0]
    assert odd["e_mask.png"] == ("L", ["non-binary (4 values: 0, 1, 2, 255)"])

    # coverage: 100/1600 for single squares; g merges two squares; f is skipped (size)
    cov = r.mask_coverage
    assert cov["benign"]["n"] == 7  # a b c d e g nc (f: size mismatch, z: unreadable)
    assert cov["benign"]["min"] == pytest.approx(0.0625)
    assert cov["benign"]["max"] == pytest.approx(0.125)
    assert cov["malignant"] == {"mean": 0.0625, "min": 0.0625, "max": 0.0625, "n": 2}
    assert cov["normal"]["max"] == 0.0
    assert r.empty_masks == {"benign": 0, "malignant": 0, "normal": 1}

    assert [g["files"] for g in r.exact_duplicates] == [[str(b / "a.png"), str(m / "a_copy.png")]]
    assert r.exact_duplicates[0]["label_conflict"] is True
    assert r.exact_duplicates[0]["labels"] == ["benign", "malignant"]
    assert [g["files"] for g in r.near_duplicates] == [[str(b / "c.png"), str(b / "nc.png")]]
    assert r.near_duplicates[0]["label_conflict"] is False
    assert len(r.label_conflicts) == 1
    assert r.leakage == []

    assert not r.ok
    # under data.mask_mode=binary training stops at e_mask.png: one more line, as train gives it
    assert r.mask_interpretation["error"].startswith(f"{b / 'e_mask.png'}: mask values 0,1,2,255")
    assert r.problems[-1] == r.mask_interpretation["error"] and r.label_table == []
    assert len(r.problems) == 1 + 1 + 1 + 4 + 1 + 1 + 1 + 1 + 1  # see the asserts above
    assert any("same image filed under benign and malignant" in p for p in r.problems)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["ok"] is False and d["n_label_conflicts"] == 1
    text = r.format()
    assert "LABELS DIFFER" in text and "g.png: 2 masks" in text and "notes.txt" in text


def test_audit_clean_folder_is_ok(tmp_path: Path) -> None:
    for i, cls in enumerate(["a", "a", "b", "b"]):
        save(tmp_path / cls / f"x{i}.png", smooth_image(i))
        save(tmp_path / cls / f"x{i}_mask.png", _square_mask())
    (tmp_path / "README.md").write_text("root-level notes are fine")
    r = audit(tmp_path)
    assert r.ok, r.problems
    assert r.other_files == [str(tmp_path / "README.md")]
    assert r.exact_duplicates == [] and r.near_duplicates == [] and r.odd_masks == []
    assert r.mask_modes == {"L": 4}
    assert "result: OK" in r.format()


def test_audit_flags_duplicates_spanning_premade_splits(tmp_path: Path) -> None:
    save(tmp_path / "train" / "cat" / "a.png", smooth_image(1))
    save(tmp_path / "train" / "cat" / "b.png", smooth_image(2))
    save(tmp_path / "train" / "dog" / "c.png", smooth_image(3))
    _copy(tmp_path / "train" / "cat" / "a.png", tmp_path / "test" / "cat" / "a2.png")
    save(tmp_path / "test" / "dog" / "c2.png", near_copy(smooth_image(3)))
    save(tmp_path / "test" / "dog" / "d.png", smooth_image(4))
    r = audit(tmp_path)
    assert r.layout == "imagefolder"
    assert r.splits == {"test": 3, "train": 3}
    assert r.mask_coverage == {} and r.mask_modes == {}
    leak = sorted((g["kind"], [Path(f).name for f in g["files"]]) for g in r.leakage)
    assert leak == [("exact", ["a.png", "a2.png"]), ("near", ["c.png", "c2.png"])]
    assert all(g["splits"] == ["test", "train"] and not g["label_conflict"] for g in r.leakage)
    assert sum("leakage across splits" in p for p in r.problems) == 2


def test_audit_flags_patient_group_spanning_splits(tmp_path: Path) -> None:
    save(tmp_path / "img" / "a.png", smooth_image(1))
    save(tmp_path / "img" / "b.png", smooth_image(2))
    (tmp_path / "manifest.csv").write_text(
        "image,label,group,split\nimg/a.png,x,p1,train\nimg/b.png,x,p1,test\n"
    )
    r = audit(tmp_path)
    assert r.layout == "csv" and r.other_files == []
    assert [(g["kind"], g["splits"]) for g in r.leakage] == [("group p1", ["test", "train"])]


def test_audit_flags_manifest_files_outside_the_folder_and_tiny_images(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    save(data / "img" / "a.png", smooth_image(1))
    save(elsewhere / "b.png", smooth_image(2))
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(data / "img" / "dot.png")
    (data / "manifest.csv").write_text(
        "image,label\nimg/a.png,x\n../elsewhere/b.png,y\nimg/dot.png,x\n"
    )
    r = audit(data)
    outside = [p for p in r.problems if "outside the data folder" in p]
    tiny = [p for p in r.problems if "below 8 px a side" in p]
    assert len(outside) == 1 and "b.png" in outside[0]
    assert len(tiny) == 1 and "dot.png: 1x1 pixels" in tiny[0]
    assert not r.ok and not any("a.png" in p for p in r.problems)


# a generous time limit (the verification re-reads ~300 candidate images); the audit's
# cost is measured by benchmarks/duplicates.py and `time medtl audit`, not here
@pytest.mark.busi
@pytest.mark.skipif(not BUSI.is_dir(), reason="BUSI not present at ../shared/data/busi")
def test_busi_defects_are_found() -> None:
    t0 = time.perf_counter()
    r = audit(BUSI / "Dataset_BUSI_with_GT")
    assert time.perf_counter() - t0 < 180
    assert r.layout == "class_masks"
    assert r.classes == {"benign": 437, "malignant": 210, "normal": 133}
    assert len(r.multi_mask) == 17  # benign (195) has three masks
    assert sum(len(m["masks"]) - 1 for m in r.multi_mask) == 18
    assert r.unreadable == [] and r.layout_problems == [] and r.mask_size_mismatch == []
    # the one byte-identical pair, filed under two classes
    assert len(r.exact_duplicates) == 1
    assert sorted(Path(f).name for f in r.exact_duplicates[0]["files"]) == [
        "benign (433).png",
        "malignant (145).png",
    ]
    assert r.exact_duplicates[0]["label_conflict"]
    # verified near-duplicates (the same scan re-exported), each pair with its similarity
    assert 130 <= len(r.near_duplicates) <= 160  # 145 measured
    assert max(len(g["files"]) for g in r.near_duplicates) <= 4  # no chaining
    assert r.large_groups == []
    pairs = [p for g in r.near_duplicates for p in g["pairs"]]
    assert all(p["relation"] == "same" and p["similarity"] >= 0.8 for p in pairs)
    assert len(r.label_conflicts) >= 6  # 8 measured
    assert len(r.odd_masks) == 135  # 133 RGB + 2 RGBA masks
    assert r.mask_modes == {"1": 663, "RGB": 133, "RGBA": 2}
    assert r.empty_masks["normal"] == 133 and r.empty_masks["benign"] == 0
