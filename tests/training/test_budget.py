"""``train.max_time``: a run stops at its budget with the best checkpoint, and says so;
``train.planned_seconds`` (from medtl plan) is compared with the measured fit time."""

from __future__ import annotations

import json

import pytest

from medtl.utils.errors import ConfigError
from tests.conftest import train_tiny


def test_budget_stops_the_run_with_its_best_checkpoint(phantoms, tmp_path):
    run = train_tiny(
        phantoms,
        tmp_path,
        "train.epochs=500",
        "train.max_time=2s",
        "train.planned_seconds=1.5",
        "train.planned_peak_mb=2000",
    )
    facts = json.loads((run / "run.json").read_text())
    budget = facts["time_budget"]
    assert budget["stopped"] is True
    assert budget["seconds"] == 2.0
    assert 0 <= budget["epochs_done"] < 500
    assert facts["status"] == "finished"
    assert (run / "model.pt").is_file()
    # Lightning checks after each step: the fit ends within a step or an epoch of the budget
    assert 2.0 <= facts["train_seconds"] < 60
    log = (run / "train.log").read_text()
    assert "stopped at the time budget train.max_time=2s (2s) after" in log
    check = facts["plan_check"]
    assert check["predicted_s"] == 1.5
    assert check["ratio"] == pytest.approx(check["measured_s"] / 1.5, abs=1e-3)
    from medtl.runtime.memory import peak_rss_mb

    # the training process's peak resident memory when the fit ended (this process: CPU)
    assert check["predicted_peak_mb"] == 2000 and 50 < check["peak_mb"] <= peak_rss_mb()
    assert facts["device"] == {
        "asked": "auto",
        "accelerator": "cpu",
        "name": "CPU",
        "precision": "32",
    }  # no GPU on the test machines: auto resolves to the CPU
    assert "device: cpu (CPU; train.accelerator=auto), precision 32" in log


def test_a_run_within_its_budget_says_so(seg_run):
    facts = json.loads((seg_run / "run.json").read_text())
    assert "time_budget" not in facts and facts["planned_seconds"] is None


def test_a_bad_budget_stops_before_the_run_folder(phantoms, tmp_path):
    with pytest.raises(ConfigError, match="time budget 'soon' not understood"):
        train_tiny(phantoms, tmp_path / "runs", "train.max_time=soon")
    assert not (tmp_path / "runs").exists()
