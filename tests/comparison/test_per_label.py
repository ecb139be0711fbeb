"""compare and report with label maps: ranking by mean foreground Dice, a
per-label table with CIs and paired tests in results.json/md/csv and in the HTML report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import medtl.data.masks.scan as scan_module
from medtl.comparison import collect, compare
from medtl.metrics import aggregate, holm, paired_test
from medtl.runs.folder import run_scheme
from tests.conftest import TINY, record_calls

LABELS = ["lesion", "ring"]


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "eval" / "val" / "per_image.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def scanned_cmp(label_phantoms, tmp_path_factory) -> tuple[Path, list[str]]:
    """Two configurations, two folds on label maps, and the mask scans their comparison ran."""
    out = tmp_path_factory.mktemp("cmp") / "a"
    base = [f"data.root={label_phantoms}", "task=segmentation", *TINY, "data.test_fraction=0"]
    with pytest.MonkeyPatch.context() as mp:
        scans = record_calls(mp, scan_module, "scan")
        compare(base, ["model.strategy=frozen,finetune"], folds=2, out=out)
    return out, scans


@pytest.fixture(scope="module")
def cmp(scanned_cmp):
    return scanned_cmp[0]


def test_two_configs_two_folds_scan_the_masks_once(scanned_cmp):
    """A comparison decides the mask scheme once and hands it to every cell and fold."""
    out, scans = scanned_cmp
    assert len(scans) == 1  # the design's; 4 trainings and 4 evaluations read it back
    runs = sorted(out.glob("cells/*/fold*"))
    assert len(runs) == 4
    for run in runs:  # every run records the decision, and reads it back as decided
        data = yaml.safe_load((run / "config.yaml").read_text())["data"]
        assert (data["mask_mode"], data["labels"]) == ("labels", "1:lesion,2:ring")
        scheme = run_scheme(run)
        assert (scheme.mode, scheme.values, scheme.names) == ("labels", (1, 2), ("lesion", "ring"))
        assert (run / "eval" / "val" / "summary.json").is_file()


@pytest.mark.slow
def test_per_label_numbers_equal_per_image_means(cmp):
    res = json.loads((cmp / "results.json").read_text())
    assert res["labels"] == LABELS and res["primary"] == "dice"
    for c in res["configs"]:
        runs = [cmp / r for r in c["runs"]]
        rows = [r for run in runs for r in _rows(run)]
        # the ranking metric is the mean foreground Dice (each image's mean over labels)
        mean_fg = [np.mean([float(r[f"dice_{n}"]) for n in LABELS]) for r in rows]
        assert c["primary"] == pytest.approx(np.mean(mean_fg), abs=1e-5)
        for name in LABELS:
            for m in ("dice", "iou", "hd95"):
                got = c["per_label"][name][m]
                values = [float(r[f"{m}_{name}"]) for r in rows]
                assert got["images"]["mean"] == pytest.approx(np.nanmean(values), rel=1e-9)
                assert got["images"] == pytest.approx(aggregate(values, 2000, 0), nan_ok=True)
                folds = [np.nanmean([float(r[f"{m}_{name}"]) for r in _rows(run)]) for run in runs]
                assert got["folds"]["values"] == pytest.approx(folds, rel=1e-9)
    primaries = [c["primary"] for c in res["configs"]]
    assert primaries == sorted(primaries, reverse=True)


def test_per_label_paired_tests_against_the_best(cmp):
    res = json.loads((cmp / "results.json").read_text())
    best, other = res["configs"]
    assert best["vs_best_per_label"] is None
    b_rows = {r["image"]: r for run in best["runs"] for r in _rows(cmp / run)}
    o_rows = {r["image"]: r for run in other["runs"] for r in _rows(cmp / run)}
    keys = sorted(b_rows)
    for name in LABELS:
        want = paired_test(
            [float(o_rows[k][f"dice_{name}"]) for k in keys],
            [float(b_rows[k][f"dice_{name}"]) for k in keys],
        )
        got = other["vs_best_per_label"][name]
        for key in ("mean_diff", "p_permutation", "p_wilcoxon"):
            assert got[key] == pytest.approx(want[key], nan_ok=True)
        assert got["p_permutation_holm"] == pytest.approx(holm([want["p_permutation"]])[0])
    md = (cmp / "results.md").read_text()
    assert "## Per label" in md and "mean over the foreground labels" in md
    assert md.count("| lesion |") == 2 and md.count("| ring |") == 2
    row = next(csv.DictReader((cmp / "results.csv").open()))
    assert float(row["ring_dice_images_mean"]) == pytest.approx(
        best["per_label"]["ring"]["dice"]["images"]["mean"], rel=1e-6
    )
    assert "ring_vs_best_p_permutation_holm" in row


def test_collect_in_memory_keeps_the_per_label_results(cmp):
    again = collect(cmp, quiet=True, write=False)
    assert again["labels"] == LABELS
    assert not math.isnan(again["configs"][0]["per_label"]["lesion"]["dice"]["images"]["mean"])


def test_report_pages_show_per_label_tables(cmp):
    from medtl.reporting import write_report

    page = write_report(cmp).read_text()
    assert "<h2>Per label</h2>" in page and ">ring<" in page
    assert "Each label in its colour" in page
    res = json.loads((cmp / "results.json").read_text())
    run = cmp / res["configs"][0]["runs"][0]
    page = write_report(run).read_text()
    summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
    dice = summary["segmentation_per_label"]["ring"]["dice"]
    assert "<td>ring</td>" in page and f"{dice['mean']:.3f}" in page
    assert "each label in its colour" in page


@pytest.fixture(scope="module")
def cmp_test(tmp_path_factory):
    """Label phantoms, 2 folds plus a held-out test split (compare evaluates the ensemble)."""
    from medtl.data.phantoms import make_label_phantoms

    root = make_label_phantoms(tmp_path_factory.mktemp("ph2t") / "d", n=14, size=32, labels=2)
    out = tmp_path_factory.mktemp("cmp") / "t"
    compare([f"data.root={root}", *TINY, "data.test_fraction=0.3"], ["train.lr=0.01"], 2, out)
    return out


def test_per_label_numbers_on_the_test_split_and_the_ensemble(cmp_test):
    from medtl.comparison.per_label import holdout_label_results
    from medtl.comparison.tables import fmt_stat, label_rows, results_csv, results_markdown

    res = collect(cmp_test, quiet=True, write=False)
    c = res["configs"][0]
    cell = cmp_test / "cells" / c["cell"]
    runs = [cmp_test / r for r in c["runs"]]
    got = holdout_label_results(cell, runs, 2000)
    assert set(got) == set(LABELS)

    def test_rows(folder: Path) -> list[dict[str, str]]:
        with (folder / "eval" / "test" / "per_image.csv").open(newline="") as fh:
            return list(csv.DictReader(fh))

    ens_rows = test_rows(cell / "ensemble")
    assert len(ens_rows) == c["test"]["n_images"] >= 3
    for name in LABELS:
        for m in ("dice", "iou", "hd95"):
            key = f"{m}_{name}"
            means = [np.nanmean([float(r[key]) for r in test_rows(run)]) for run in runs]
            assert got[name][m]["folds"]["values"] == pytest.approx(means, rel=1e-9, nan_ok=True)
            values = [float(r[key]) for r in ens_rows]
            assert got[name][m]["ensemble"] == pytest.approx(
                aggregate(values, 2000, 0), nan_ok=True
            )
    # binary / unevaluated: nothing; without the ensemble's evaluation: folds only
    assert holdout_label_results(cell, [*runs, cell / "nofold"], 2000) == {}
    fold_only = holdout_label_results(cell / "nocell", runs, 2000)
    assert fold_only["ring"]["dice"]["ensemble"] is None
    # compare.collect stores them as configs[i]["test"]["per_label"]
    assert c["test"]["per_label"]["ring"]["dice"]["folds"]["values"] == pytest.approx(
        got["ring"]["dice"]["folds"]["values"], nan_ok=True
    )
    head, rows = label_rows(res)
    assert head[-2:] == ["Dice test, fold models", "Dice test, ensemble"]
    ring = next(r for r in rows if r[2] == "ring")
    assert ring[-2] == fmt_stat(got["ring"]["dice"]["folds"])
    assert ring[-1] == fmt_stat(got["ring"]["dice"]["ensemble"])
    assert "of the fold ensemble" in results_markdown(res)
    row = next(csv.DictReader(results_csv(res).splitlines()))
    assert float(row["ring_dice_test_ensemble_mean"]) == pytest.approx(
        got["ring"]["dice"]["ensemble"]["mean"], rel=1e-6
    )
    assert float(row["lesion_iou_test_folds_mean"]) == pytest.approx(
        got["lesion"]["iou"]["folds"]["mean"], rel=1e-6
    )
