"""A comparison decides the mask scheme once for every cell and fold: cells that would mean
the masks differently are refused (that the scheme is scanned once is tested with the label-map
comparison of tests/comparison/test_per_label.py, which trains those cells anyway)."""

from __future__ import annotations

import pytest

from medtl.comparison import compare
from tests.conftest import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cells_that_mean_the_masks_differently_are_refused(label_phantoms, tmp_path):
    from medtl.utils.errors import ConfigError

    base = [f"data.root={label_phantoms}", "task=segmentation", *TINY]
    with pytest.raises(ConfigError, match="data.mask_mode"):
        compare(base, ["data.mask_mode=labels,binary"], folds=2, out=tmp_path / "cmp")
    assert not (tmp_path / "cmp" / "compare.json").exists()
