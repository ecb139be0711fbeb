"""The mask scheme is decided once, when training loads its data, and read back from the run
folder afterwards: ``medtl evaluate`` scans no mask file, and every reader gets the same
:class:`~medtl.data.masks.scheme.MaskScheme` (labels, names, ``data.mask_resize``)."""

from __future__ import annotations

import json

from medtl.data.masks import scan
from medtl.data.masks.scheme import MaskScheme
from medtl.evaluation.evaluate import format_summary
from medtl.runs.folder import read_config, run_scheme
from medtl.runs.records import read_summary
from tests.conftest import run_cli, train_tiny


def test_evaluate_scans_no_mask_file(label_phantoms, tmp_path, monkeypatch, capsys):
    run = train_tiny(label_phantoms, tmp_path, "output.name=labels")
    recorded = run_scheme(run)
    assert recorded == MaskScheme("labels", (1, 2), ("lesion", "ring"))
    assert recorded == run_scheme(read_config(run))  # the folder or its Config: one reader
    scans: list[int] = []
    real = scan.scan
    monkeypatch.setattr(scan, "scan", lambda paths: scans.append(len(paths)) or real(paths))
    opened: list[str] = []
    real_facts = scan._file_facts
    monkeypatch.setattr(scan, "_file_facts", lambda p: opened.append(str(p)) or real_facts(p))
    code, out, err = run_cli(capsys, "evaluate", str(run), "--split", "val", "--no-plots")
    assert code == 0, err
    assert scans == [] and opened == []  # the run's config.yaml said what the masks mean
    path = run / "eval" / "val" / "summary.json"
    assert sorted(json.loads(path.read_text())["segmentation_per_label"]) == ["lesion", "ring"]
    text = format_summary(read_summary(path))  # the typed record of the file
    assert "per label" in text and "lesion" in text and "ring" in text
    assert text in out  # the CLI printed the same lines from evaluate's dict
