"""The mask scheme is decided once, when training loads its data, and read back from the run
folder afterwards: ``medtl evaluate`` scans no mask file, and every reader gets the same
:class:`~medtl.data.masks.scheme.MaskScheme` (labels, names, ``data.mask_resize``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.api import format_summary as api_format
from medtl.data.masks import scan
from medtl.data.masks.scheme import MaskScheme
from medtl.evaluation.evaluate import format_summary
from medtl.runs.folder import read_config, run_scheme
from medtl.runs.records import EvalSummary, read_summary
from medtl.utils.errors import DataError
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


def test_format_summary_reads_a_dict_through_the_record():
    """``medtl.format_summary`` keeps taking evaluate's dict: numpy numbers and tuples are
    read into :class:`EvalSummary` as the file would hold them; a wrong shape is one line."""
    block = {"mean": np.float64(0.5), "std": 0.1, "ci_low": 0.4, "ci_high": 0.6, "n": np.int64(3)}
    doc = {
        "run": "RUN",
        "split": "test",
        "n_images": 3,
        "loss": 0.25,
        "segmentation": {"dice": block, "iou": block, "hd95": block},
        "empty_mask_rule": "one",
        "volumes": {"n": 1, "dice_3d_mean": 0.75},
        "out_dir": "RUN/eval/test",
    }
    text = api_format(doc)
    assert text == format_summary(EvalSummary.from_dict(doc))
    assert text.splitlines()[:2] == ["RUN [test] 3 images", "  loss  0.2500 (mean per image)"]
    assert "  empty masks: one" in text and "3-D Dice per volume: mean 0.7500 (n=1" in text
    with pytest.raises(DataError, match="summary.json.*loss"):
        api_format({**doc, "loss": "low"})
