"""Lesion-level detection only for lesion structures: binary masks by default, the labels
``data.lesion_labels`` names for label maps; organs get Dice/IoU/HD95/MSD only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medtl.configuration.loading import load_config
from medtl.data.masks.scheme import MaskScheme, scheme_from_config
from medtl.evaluation.labels import score_row
from medtl.evaluation.segmentation import (
    SegScorer,
    lesion_indices,
    seg_extra_lines,
    seg_extra_summary,
)
from medtl.utils.errors import ConfigError


def _cfg(*overrides: str):
    return load_config(overrides=list(overrides)).data


def _lesions(*overrides: str) -> tuple[int, ...]:
    data = _cfg(*overrides)
    return lesion_indices(data, scheme_from_config(data))


def test_lesion_indices_by_kind_of_mask():
    assert _lesions() == (1,)  # binary: a lesion mask
    assert _lesions("data.lesion_labels=none") == ()  # binary organ masks
    labels = ("data.mask_mode=labels", "data.labels=1:liver,2:tumour,4:cyst")
    assert _lesions(*labels) == ()  # label maps: organs unless named
    assert _lesions(*labels, "data.lesion_labels=tumour,4") == (2, 3)
    with pytest.raises(ConfigError, match="'kidney' is not a mask label; choose among liver"):
        _lesions(*labels, "data.lesion_labels=kidney")


def _maps():
    truth = np.zeros((32, 32), np.uint8)
    truth[2:14, 2:14] = 1  # liver
    truth[20:24, 20:24] = 2  # tumour
    truth[26:29, 4:7] = 2  # a second tumour, missed
    pred = truth.copy()
    pred[26:29, 4:7] = 0
    pred[2:5, 25:28] = 2  # a false positive tumour
    return pred, truth


def test_label_map_scores_count_only_lesion_labels():
    pred, truth = _maps()
    scheme = MaskScheme("labels", (1, 2), ("liver", "tumour"))
    sample = SimpleNamespace(image=Path("a.png"), meta={})
    organ = SegScorer([sample], [0], lesions=())
    row = score_row(organ, 0, pred, truth, scheme, "one")
    assert "lesions" not in row and {"dice_liver", "hd95", "msd", "area_error"} <= set(row)
    tumour = SegScorer([sample], [0], lesions=(2,))
    row = score_row(tumour, 0, pred, truth, scheme, "one")
    assert (row["lesions"], row["lesions_detected"], row["false_positives"]) == (2, 1, 1)
    # the summary keeps MSD and area error without lesions, and says nothing of lesions
    rec = {"row": score_row(organ, 0, pred, truth, scheme, "one"), "seg_facts": organ.facts()}
    summary = seg_extra_summary([rec])
    assert "lesions" not in summary and "lesion_criterion" not in summary
    assert summary["msd"]["n"] == 1
    lines = seg_extra_lines(summary)
    assert len(lines) == 1 and lines[0].startswith("  msd")


def test_evaluate_takes_lesion_labels(seg_run, tmp_path, capsys):
    """``medtl evaluate RUN data.lesion_labels=none``: binary organ masks, no lesion lines;
    a training key is still refused in one line."""
    import shutil

    from tests.conftest import run_cli

    run = tmp_path / "run"
    shutil.copytree(seg_run, run)
    code, out, _ = run_cli(capsys, "evaluate", str(run), "--no-plots")
    assert code == 0 and "lesions:" in out
    code, out, _ = run_cli(capsys, "evaluate", str(run), "--no-plots", "data.lesion_labels=none")
    assert code == 0 and "lesions:" not in out and "dice" in out.lower()
    code, _, err = run_cli(capsys, "evaluate", str(run), "train.epochs=3")
    assert code == 2 and "data.lesion_labels" in err and len(err.strip().splitlines()) == 1
