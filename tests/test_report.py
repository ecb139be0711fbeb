"""Tests for medtl.report: self-contained HTML of a run and of a comparison, headless render."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from medtl.compare import compare
from medtl.errors import MedtlError
from medtl.report import CHROMIUM, render_screenshot, write_report
from tests.conftest import TINY

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def cmp(tmp_path_factory):
    from medtl.data.synthetic import make_phantoms

    root = make_phantoms(tmp_path_factory.mktemp("ph") / "data", n=12, size=32, seed=0)
    out = tmp_path_factory.mktemp("cmp") / "c"
    base = [f"data.root={root}", *TINY, "data.val_fraction=0.34"]
    compare(base, ["model.strategy=frozen,finetune"], folds=0, out=out)
    return out


def check_self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not EXTERNAL.search(text), EXTERNAL.search(text)
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text and "url(" not in text
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', text):
        Image.open(io.BytesIO(base64.b64decode(b64))).verify()  # every image decodes


def test_comparison_report(cmp):
    html = write_report(cmp)
    assert html == cmp / "report.html"
    text = html.read_text()
    check_self_contained(text)
    assert "Which configuration is best?" in text
    results = json.loads((cmp / "results.json").read_text())
    best, other = results["configs"]
    # the results table: one row per configuration in rank order, with CI and p-value cells
    table = text.split("<table", 1)[1].split("</table>", 1)[0]
    assert table.index(best["configuration"]) < table.index(other["configuration"])
    assert f"{best['metrics']['dice']['images']['mean']:.3f}" in table
    ci = best["metrics"]["dice"]["images"]
    assert f"[{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]" in table
    assert "Wilcoxon" in table and "bootstrap" in table
    assert f"{other['vs_best']['images']['mean_diff']:+.3f}" in table
    assert text.count("data:image/png;base64,") >= 5  # summary, per-image, cases, curves x3
    assert "Best and worst cases" in text


def test_run_report(cmp):
    run = next((cmp / "cells").glob("*/fold0"))
    html = write_report(run)
    text = html.read_text()
    check_self_contained(text)
    summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
    assert f"{summary['segmentation']['dice']['mean']:.3f}" in text
    assert "Learning curves" in text or "learning curves" in text
    assert "config.yaml" in text and "encoder: resnet18" in text  # the resolved config
    assert "<table" in text and text.count("data:image/png;base64,") >= 3


def test_report_rejects_other_folders(tmp_path):
    with pytest.raises(MedtlError, match="neither a run folder"):
        write_report(tmp_path)


def test_report_collects_when_results_missing(cmp):
    (cmp / "results.json").unlink()
    text = write_report(cmp).read_text()
    assert (cmp / "results.json").is_file()
    assert "Which configuration is best?" in text


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium")
def test_render_screenshot(cmp, tmp_path):
    html = write_report(cmp)
    png = tmp_path / "shot.png"
    assert render_screenshot(html, png)
    with Image.open(png) as im:
        assert im.size == (1280, 2000)
        grey = im.convert("L")
        assert grey.getextrema()[0] < 100  # something dark (text) was drawn
