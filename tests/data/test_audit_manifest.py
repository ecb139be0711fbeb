"""``medtl audit`` given a CSV manifest file instead of its folder: the files it names are
inside the manifest's folder, and problems with single files are listed, not only counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import run_cli
from tests.data.conftest import save, smooth_image


def _manifest(root: Path, tiny: bool = False) -> Path:
    rows = ["image,mask"]
    for k in range(6):
        save(root / "img" / f"c{k}.png", smooth_image(k, 32))
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8 + k : 20 + k] = 255
        save(root / "lab" / f"c{k}.png", mask)
        rows.append(f"img/c{k}.png,lab/c{k}.png")
    if tiny:
        save(root / "img" / "t.png", smooth_image(9, 32)[:6, :6])
        save(root / "lab" / "t.png", np.zeros((6, 6), np.uint8))
        rows.append("img/t.png,lab/t.png")
    (root / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "data.csv"


def test_manifest_file_as_root_keeps_its_files_inside(tmp_path, capsys):
    csv = _manifest(tmp_path / "d")
    code, out, _ = run_cli(capsys, "audit", str(csv), "--json")
    rep = json.loads(out)
    assert code == 0 and rep["layout"] == "csv" and rep["n_images"] == 6
    assert not [p for p in rep["problems"] if "outside the data folder" in p]
    assert rep["file_problems"] == []


def test_file_problems_are_listed_in_the_text_report(tmp_path, capsys):
    csv = _manifest(tmp_path / "d", tiny=True)
    code, out, _ = run_cli(capsys, "audit", str(csv))
    assert "file problems: 1" in out
    assert "t.png: 6x6 pixels" in out
    assert "outside the data folder" not in out
