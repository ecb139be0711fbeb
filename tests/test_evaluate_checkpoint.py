"""medtl evaluate RUN --checkpoint best|last|PATH, and the split's loss in the summary."""

from __future__ import annotations

import json
import shutil

import pytest

from medtl.cli import main


@pytest.fixture(scope="module")
def run2(mt_run_2epochs):
    return mt_run_2epochs  # the session's two-epoch multitask run (tests/conftest.py)


@pytest.mark.slow
def test_best_last_and_path_checkpoints(run2, tmp_path, capsys):
    assert main(["evaluate", str(run2), "--split", "val"]) == 0
    best = json.loads((run2 / "eval" / "val" / "summary.json").read_text())
    assert best["checkpoint"] == "best" and best["loss"] > 0
    assert "loss " in capsys.readouterr().out
    assert main(["evaluate", str(run2), "--split", "val", "--checkpoint", "last"]) == 0
    last = json.loads((run2 / "eval" / "val-last" / "summary.json").read_text())
    assert last["checkpoint"] == "last" and last["loss"] > 0
    copy = shutil.copy(run2 / "checkpoints" / "last.ckpt", tmp_path / "epoch1.ckpt")
    assert main(["evaluate", str(run2), "--split", "val", "--checkpoint", str(copy)]) == 0
    by_path = json.loads((run2 / "eval" / "val-epoch1" / "summary.json").read_text())
    assert by_path["loss"] == pytest.approx(last["loss"])
    assert by_path["classification"]["accuracy"] == last["classification"]["accuracy"]


def test_missing_checkpoint_is_one_line_exit_2(run2, tmp_path, capsys):
    assert main(["evaluate", str(run2), "--checkpoint", str(tmp_path / "no.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no.ckpt not found" in err and len(err.splitlines()) == 1
