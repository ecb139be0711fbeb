"""``medtl audit`` with label masks: the interpretation training would take,
the label table (pixel share, images per label), rare labels, no "non-binary" lines for
label maps or JPEG-noisy binary masks, ``labels.yaml`` not a stray file, and an ambiguous
set reported as the one line ``medtl train`` stops with."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from medtl.cli.parser import main
from medtl.data.audit.masks import RARE_IMAGES
from medtl.data.audit.report import audit
from tests.data.conftest import save, smooth_image


def test_cli_audit_of_label_phantoms(label_phantoms: Path, capsys) -> None:
    assert main(["audit", str(label_phantoms)]) == 0
    text = capsys.readouterr().out
    assert "masks: labels: label masks, background 0, 1=lesion, 2=ring" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[-7:] if "images" in line}
    assert set(rows) >= {"0", "1", "2"}
    assert rows["1"][1] == "lesion" and rows["2"][1] == "ring" and rows["0"][1] == "background"
    assert "non-binary" not in text and "labels.yaml" not in text and "result: OK" in text

    assert main(["audit", str(label_phantoms), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ok"] is True and d["other_files"] == [] and d["odd_masks"] == []
    assert d["mask_interpretation"]["mode"] == "labels"
    assert d["mask_interpretation"]["labels"] == [
        {"value": 1, "name": "lesion"},
        {"value": 2, "name": "ring"},
    ]
    table = d["label_table"]
    assert [(r["value"], r["name"], r["n_images"]) for r in table] == [
        (0, "background", 12),
        (1, "lesion", 12),
        (2, "ring", 12),
    ]
    assert sum(r["pixel_share"] for r in table) == pytest.approx(1.0)
    # the shares are the label maps' own pixel counts
    maps = [np.asarray(Image.open(p)) for p in sorted((label_phantoms / "masks").iterdir())]
    share_1 = sum(int((m == 1).sum()) for m in maps) / sum(m.size for m in maps)
    assert table[1]["pixel_share"] == pytest.approx(share_1)
    cov = d["mask_coverage"]["-"]
    assert cov["min"] > 0 and d["empty_masks"] == {"-": 0}  # foreground = any label


def _label_set(root: Path, n: int, rare_in: int) -> Path:
    """``n`` paired images with 0/1 label maps; label 2 (non-contiguous: 7) in ``rare_in``."""
    for i in range(n):
        save(root / "images" / f"c{i}.png", smooth_image(i))
        m = np.zeros((40, 40), np.uint8)
        m[5:15, 5:15] = 1
        if i < rare_in:
            m[25:30, 25:30] = 7
        save(root / "masks" / f"c{i}.png", m)
    (root / "labels.json").write_text(json.dumps({"1": "lesion", "7": "cyst"}))
    return root


def test_rare_label_is_flagged(tmp_path: Path) -> None:
    r = audit(_label_set(tmp_path / "d", n=8, rare_in=1))
    assert r.mask_interpretation["description"].endswith("1=lesion, 7=cyst")
    rare = [(row["value"], row["n_images"]) for row in r.label_table if row["rare"]]
    assert rare == [(7, 1)] and RARE_IMAGES > 1
    assert r.problems == [
        "label 7 (cyst): in 1 of 8 images only; it may be missing from the validation or "
        "test split (train warns; add cases)"
    ]
    assert r.other_files == [] and r.odd_masks == []
    assert "RARE" in r.format()


def test_ambiguous_masks_give_the_line_train_gives(tmp_path: Path) -> None:
    from medtl.data.layouts import discover
    from medtl.data.masks.scan import resolve
    from medtl.utils.errors import DataError

    root = tmp_path / "d"
    for i in range(3):
        save(root / "images" / f"c{i}.png", smooth_image(i))
        ramp = np.tile(np.arange(0, 240, 6, dtype=np.uint8), (40, 1))  # 40 grey levels
        save(root / "masks" / f"c{i}.png", ramp)
    with pytest.raises(DataError) as exc:
        resolve(SimpleNamespace(mask_mode="auto"), discover(root).samples, root)
    r = audit(root)
    assert r.mask_interpretation["error"] == str(exc.value)
    assert sum(str(exc.value) == p for p in r.problems) == 1
    assert f"masks: training would stop: {exc.value}" in r.format()
    # the binary-rule lines stay, since training has no interpretation to explain them
    assert len(r.odd_masks) == 3


def test_jpeg_binary_masks_are_one_line_not_one_per_file(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:40, :40]
    m = (((yy - 15.3) ** 2 + (xx - 14.7) ** 2) < 81).astype(np.uint8) * 255
    for i in range(4):
        save(tmp_path / "images" / f"c{i}.png", smooth_image(i))
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(m).save(tmp_path / "masks" / f"c{i}.jpg", quality=60)
    r = audit(tmp_path)
    assert r.mask_interpretation["description"] == (
        "binary: JPEG-compressed binary masks, thresholded at 128"
    )
    assert r.odd_masks == [] and r.ok, r.problems
    assert r.label_table == []
    assert r.format().count("JPEG-compressed") == 1
