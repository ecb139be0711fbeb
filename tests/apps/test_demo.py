"""`medtl demo --quick`: the main job end to end on tiny phantoms."""

from __future__ import annotations

import json

import pytest

from medtl.cli.parser import main


@pytest.mark.slow
def test_quick_demo_compares_three_configurations_and_writes_a_report(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "demo.json").read_text())
    labels = sorted(c["configuration"] for c in doc["results"]["configs"])
    assert labels == sorted(
        " ".join(c)
        for c in [
            ["model.weights=imagenet", "model.strategy=frozen"],
            ["model.weights=imagenet", "model.strategy=finetune"],
            ["model.weights=none", "model.strategy=finetune"],
        ]
    )
    assert sorted(c["rank"] for c in doc["results"]["configs"]) == [1, 2, 3]
    report = tmp_path / "comparison" / "report.html"
    assert report.is_file() and f"report: {report}" in out
    assert "| rank |" in out  # the results table was printed
