"""Tests for medtl.reporting: self-contained HTML of a run and of a comparison, headless render."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil

import pytest
from PIL import Image

from medtl.comparison import compare
from medtl.reporting import write_report
from medtl.reporting.run_page import NO_RUN_JSON
from medtl.utils.errors import MedtlError
from tests.conftest import TINY
from tests.screenshot import CHROMIUM, render_screenshot, require_browser

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def cmp(phantoms12, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "c"
    base = [f"data.root={phantoms12}", *TINY, "data.val_fraction=0.34"]
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
    # the table shows the sign-flip permutation and Wilcoxon p (raw and Holm), not the
    # bootstrap p (anti-conservative below 20 pairs)
    assert "Wilcoxon" in table and "perm" in table and "Holm" in table
    assert "bootstrap" not in table
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
    results = json.loads((cmp / "results.json").read_text())
    (cmp / "results.json").unlink()
    text = write_report(cmp).read_text()
    assert not (cmp / "results.json").is_file()  # collected in memory: rendering writes no results
    assert "Which configuration is best?" in text
    assert f"{results['configs'][0]['metrics']['dice']['images']['mean']:.3f}" in text


RUN_JSON = {
    "format": "medtl-run-1",
    "status": "failed",
    "error": "CUDA out of memory in epoch 3",
    "started": "2026-12-01T20:00:00Z",
    "ended": "2026-12-01T20:01:00Z",
    "data": {
        "summary": "/data/busi: layout=class_folders, 777 images (777 with masks); classes: x",
        "layout": "class_folders",
        "n_images": 777,
        "classes": ["benign", "malignant"],
        "duplicate_groups": {"n_groups_with_duplicates": 3, "n_images_in_them": 7},
        "mask_interpretation": "binary: masks thresholded at 128",
    },
    "split": {"train": 543, "val": 117, "test": 117},
    "model": {
        "task": "segmentation",
        "arch": "unet",
        "encoder": "resnet18",
        "strategy": "finetune",
        "weights": "imagenet <b>tv</b>",
    },
    "memory_layout": {"chosen": "channels_last", "probe_img_per_s": None},
    "monitor": "val_dice",
    "epochs": [{"epoch": 0, "seconds": 3.25}, {"epoch": 1, "seconds": 2.0}],
    "best_epoch": 1,
    "best_score": 0.8125,
    "unfreeze_epochs": [1],
    "train_seconds": 41.04,
}


@pytest.fixture()
def run_copy(cmp, tmp_path):
    """A trained run folder of the comparison, copied so that its run.json can be rewritten."""
    run = tmp_path / "fold0"
    shutil.copytree(next((cmp / "cells").glob("*/fold0")), run, copy_function=_link_weights)
    return run


def _link_weights(src: str, dst: str) -> None:
    """Copy a file, hard-linking the weights (model.pt, checkpoints/: hundreds of MB) that the
    tests only read; medtl replaces files it writes, so the linked originals stay as they are."""
    if src.endswith((".pt", ".ckpt")):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def test_run_report_reads_run_json(run_copy):
    (run_copy / "train.log").unlink(missing_ok=True)  # the page never reads log prose
    (run_copy / "run.json").write_text(json.dumps(RUN_JSON))
    text = write_report(run_copy).read_text()
    check_self_contained(text)
    assert "This run did not finish" in text and "CUDA out of memory in epoch 3" in text
    assert "layout=class_folders, 777 images" in text  # the data line from run.json
    assert "train 543 · val 117 · test 117" in text  # split sizes
    assert "arch=unet encoder=resnet18 strategy=finetune" in text  # the model line
    assert "weights: imagenet &lt;b&gt;tv&lt;/b&gt;" in text and "<b>tv</b>" not in text  # escaped
    assert "3 groups" in text and "binary: masks thresholded at 128" in text
    assert "finished in 41.0s; best epoch 1, best val_dice=0.8125" in text
    assert "2 (5.2 s of training)" in text  # epochs and seconds from run.json
    assert NO_RUN_JSON not in text


def test_run_report_finished_run_has_no_notice(run_copy):
    (run_copy / "run.json").write_text(
        json.dumps({**RUN_JSON, "status": "finished", "error": None})
    )
    text = write_report(run_copy).read_text()
    assert "did not finish" not in text
    (run_copy / "run.json").write_text(json.dumps({**RUN_JSON, "status": "running", "error": None}))
    assert "This run did not finish" in write_report(run_copy).read_text()


def test_run_report_without_run_json(run_copy):
    (run_copy / "run.json").unlink(missing_ok=True)
    text = write_report(run_copy).read_text()
    check_self_contained(text)
    assert NO_RUN_JSON in text
    assert "did not finish" not in text
    assert "encoder: resnet18" in text  # what config.yaml gives is still shown


def test_run_report_shows_the_mask_threshold(run_copy):
    """evaluate --seg-threshold auto: the stored decision and the threshold the evaluation
    used are on the page."""
    from medtl.evaluation.calibrate import Decisions
    from medtl.evaluation.evaluate import evaluate
    from medtl.inference.decisions import read_calibration

    evaluate(run_copy, split="val", plots=False, decide=Decisions(seg_threshold="auto"))
    st = read_calibration(run_copy)["seg_threshold"]
    text = write_report(run_copy).read_text()
    assert "<h2>Decisions</h2>" in text and "mask threshold" in text
    n = st["n_images"]
    assert f"{st['value']:.4f} (max mean val Dice, on {n} val images; val Dice " in text
    assert f"{st['val_dice_at_value']:.3f} vs {st['val_dice_at_default']:.3f} at 0.5" in text
    assert f"Masks at threshold {st['value']:.3f} (max mean val Dice, chosen on val" in text


def test_render_screenshot(cmp, tmp_path):
    require_browser(CHROMIUM)
    html = write_report(cmp)
    png = tmp_path / "shot.png"
    assert render_screenshot(html, png)
    with Image.open(png) as im:
        assert im.size == (1280, 2000)
        grey = im.convert("L")
        assert grey.getextrema()[0] < 100  # something dark (text) was drawn


def test_html_kit_escapes_and_formats():
    import doctest

    from medtl.reporting import html

    assert doctest.testmod(html).failed == 0
    cell = {"text": "a<b", "code": True, "ci": "[0.1, 0.2]"}
    out = html.render_string(
        '{% from "macros.html" import table %}{{ table(["x", "p"], rows, numeric=[1]) }}',
        rows=[[cell, {"text": "0.010", "sig": html.significant("0.010")}], ["–", "0.200"]],
    )
    assert '<code>a&lt;b</code><br><span class="ci">[0.1, 0.2]</span>' in out
    assert '<span class="sig">0.010</span>' in out and '<td class="num">0.200</td>' in out
    assert html.significant("<0.001") and not html.significant("–")
