"""A comparison decides the mask scheme once and hands it to every cell and fold."""

from __future__ import annotations

import pytest
import yaml

import medtl.data.masks.scan as scan_module
from medtl.comparison import compare
from medtl.runs.folder import run_scheme
from tests.conftest import TINY, record_calls

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_configs_two_folds_scan_the_masks_once(label_phantoms, tmp_path, monkeypatch):
    scans = record_calls(monkeypatch, scan_module, "scan")
    base = [f"data.root={label_phantoms}", "task=segmentation", *TINY, "data.test_fraction=0"]
    out = compare(base, ["train.lr=0.01,0.02"], folds=2, out=tmp_path / "cmp")
    assert len(scans) == 1  # the design's; 4 trainings and 4 evaluations read it back
    runs = sorted(out.glob("cells/*/fold*"))
    assert len(runs) == 4
    for run in runs:  # every run records the decision, and reads it back as decided
        data = yaml.safe_load((run / "config.yaml").read_text())["data"]
        assert (data["mask_mode"], data["labels"]) == ("labels", "1:lesion,2:ring")
        scheme = run_scheme(run)
        assert (scheme.mode, scheme.values, scheme.names) == ("labels", (1, 2), ("lesion", "ring"))
        assert (run / "eval" / "val" / "summary.json").is_file()


def test_cells_that_mean_the_masks_differently_are_refused(label_phantoms, tmp_path):
    from medtl.utils.errors import ConfigError

    base = [f"data.root={label_phantoms}", "task=segmentation", *TINY]
    with pytest.raises(ConfigError, match="data.mask_mode"):
        compare(base, ["data.mask_mode=labels,binary"], folds=2, out=tmp_path / "cmp")
    assert not (tmp_path / "cmp" / "compare.json").exists()
