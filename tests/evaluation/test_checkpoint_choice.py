"""medtl evaluate RUN --checkpoint best|last|PATH, and the split's loss in the summary."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from medtl.cli.parser import main


@pytest.fixture(scope="module")
def run2(mt_run_2epochs):
    return mt_run_2epochs  # the session's two-epoch multitask run (tests/conftest.py)


@pytest.mark.slow
def test_best_last_and_path_checkpoints(run2, tmp_path, capsys):
    assert main(["evaluate", str(run2), "--split", "val"]) == 0
    best = json.loads((run2 / "eval" / "val" / "summary.json").read_text())
    assert best["checkpoint"] == "best" and best["loss"] > 0
    assert "loss " in capsys.readouterr().out
    assert (run2 / "eval" / "val" / "roc.png").is_file()
    # the other weights without figures (--no-plots: the numbers and files without the PNGs)
    last_args = ["--split", "val", "--checkpoint", "last", "--no-plots"]
    assert main(["evaluate", str(run2), *last_args]) == 0
    last = json.loads((run2 / "eval" / "val-last" / "summary.json").read_text())
    assert last["checkpoint"] == "last" and last["loss"] > 0
    assert not list((run2 / "eval" / "val-last").glob("*.png"))
    assert (run2 / "eval" / "val-last" / "per_image.csv").is_file()
    copy = shutil.copy(run2 / "checkpoints" / "last.ckpt", tmp_path / "epoch1.ckpt")
    path_args = ["--split", "val", "--checkpoint", str(copy), "--no-plots"]
    assert main(["evaluate", str(run2), *path_args]) == 0
    by_path = json.loads((run2 / "eval" / "val-epoch1" / "summary.json").read_text())
    assert by_path["loss"] == pytest.approx(last["loss"])
    assert by_path["classification"]["accuracy"] == last["classification"]["accuracy"]


def test_missing_checkpoint_is_one_line_exit_2(run2, tmp_path, capsys):
    assert main(["evaluate", str(run2), "--checkpoint", str(tmp_path / "no.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no.ckpt not found" in err and len(err.splitlines()) == 1


def test_reuse_bundles_builds_once_and_hands_out_copies(seg_run, monkeypatch):
    """Inside reuse_bundles the same model.pt is built once; every caller gets its own copy
    (changing one changes no other), equal to a fresh load; outside, each load builds."""
    import medtl.runs.folder as runs
    from tests.conftest import record_calls

    run = seg_run  # only read
    builds = record_calls(monkeypatch, runs, "_load_bundle")
    with runs.reuse_bundles():
        first, cfg, classes = runs.load_bundle(run)
        with torch.no_grad():
            next(first.parameters()).add_(1.0)  # a caller changing its network
        second, cfg2, classes2 = runs.load_bundle(run)
    assert len(builds) == 1 and second is not first and classes2 == classes
    fresh, _, _ = runs.load_bundle(run)
    assert len(builds) == 2
    ref = fresh.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in second.state_dict().items())
    assert not torch.equal(next(first.parameters()), next(second.parameters()))
