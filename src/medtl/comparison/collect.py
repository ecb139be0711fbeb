"""Collecting a comparison: every finished cell's held-out scores -> ``OUT/results.*``.

Per configuration, each metric is summarised twice: pooled over every held-out image
(``images``) and over the per-fold means (``folds``), with the statistics of
:mod:`medtl.metrics.statistics`. Configurations are ranked by the primary metric pooled
over images, and each is compared with the best on paired per-image scores (and, with
>= 3 folds, on paired per-fold scores) by the tests of :mod:`medtl.metrics.paired`
(sign-flip permutation, exact up to 16 pairs; Wilcoxon; the bootstrap p only with >= 20
pairs), every p-value Holm-adjusted across the configurations.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from medtl.comparison.clinical import clinical_result, leak_free_test
from medtl.comparison.design import run_finished
from medtl.comparison.final import best_card, final_facts, final_lines
from medtl.comparison.grid import cell_label
from medtl.comparison.per_label import (
    holdout_label_results,
    keep_label_scores,
    label_tests,
)
from medtl.comparison.readings import N_BOOT, SEG_METRICS, Readings, cls_pooled, read_fold
from medtl.comparison.records import Design, write_results
from medtl.comparison.tables import results_csv, results_markdown
from medtl.metrics.paired import holm, paired_test
from medtl.metrics.statistics import aggregate, fold_summary
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write_text, json_safe, to_float

__all__ = [
    "CLS_METRICS",
    "HOLM_KEYS",
    "N_BOOT",
    "PRIMARY",
    "SEG_METRICS",
    "TEST_METRIC",
    "collect",
    "run_finished_ensemble",
]

log = logging.getLogger("medtl")

CLS_METRICS = ("accuracy", "macro_f1", "auroc")
PRIMARY = {"segmentation": "dice", "classification": "macro_f1", "multitask": "score"}
HOLM_KEYS = ("p_permutation", "p_wilcoxon", "p_bootstrap")


# ----------------------------------------------------------------------------- one configuration
def _metrics(got: Readings, task: str) -> tuple[dict[str, dict[str, Any]], Any]:
    """Every metric over images and over folds, and the pooled confusion matrix (or None)."""
    metrics: dict[str, dict[str, Any]] = {}
    confusion = None
    if task != "classification":
        for m in SEG_METRICS:
            metrics[m] = {"images": aggregate([to_float(r.get(m)) for r in got.rows], N_BOOT, 0)}
    if task != "segmentation":
        pooled = cls_pooled(got.rows, got.classes)
        confusion = pooled.pop("_confusion_matrix")
        for m in CLS_METRICS:
            metrics[m] = {"images": pooled[m]}
    for m in metrics:
        metrics[m]["folds"] = fold_summary(got.folds[m], n_boot=N_BOOT, seed=0)
    if task == "multitask":
        folds_score = [
            (d + f) / 2 for d, f in zip(got.folds["dice"], got.folds["macro_f1"], strict=True)
        ]
        pooled_score = (
            metrics["dice"]["images"]["mean"] + metrics["macro_f1"]["images"]["mean"]
        ) / 2
        metrics["score"] = {
            "images": {
                "mean": pooled_score,
                "std": None,
                "n": len(got.rows),
                "ci_low": None,
                "ci_high": None,
            },
            "folds": fold_summary(folds_score, n_boot=N_BOOT, seed=0),
        }
    return metrics, confusion


def _paired_scores(got: Readings, task: str) -> dict[str, float]:
    """Per-image scores for the paired tests: Dice, or correctness for classification."""
    paired = {}
    for r in got.rows:
        if task != "classification":
            paired[r["image"]] = to_float(r.get("dice"))
        elif r.get("class") in got.classes:
            paired[r["image"]] = float(r.get("prediction") == r["class"])
    return paired


def _config_result(
    cell: dict[str, Any], runs: list[Path], split: str, task: str
) -> tuple[dict[str, Any], dict[str, float]]:
    """Statistics of one configuration and its per-image paired scores (image path -> score)."""
    got = Readings()
    for run in runs:
        read_fold(got, run, split, task)
    metrics, confusion = _metrics(got, task)
    result = {
        "cell": cell["id"],
        "configuration": cell_label(cell["overrides"]),
        "overrides": cell["overrides"],
        "runs": [str(Path("cells") / cell["id"] / r.name) for r in runs],
        "n_images": len(got.rows),
        "epochs": got.epochs,
        "primary": metrics[PRIMARY[task]]["images"]["mean"],
        "metrics": metrics,
        "timing": {
            "train_s_per_fold": [round(t, 3) for t in got.train_s],
            "train_s": float(np.mean(got.train_s)) if got.train_s else math.nan,
            "infer_img_per_s": float(np.nanmean(got.img_s)) if got.img_s else math.nan,
        },
    }
    if got.labels:
        keep_label_scores(result, got, N_BOOT)  # per-label table (compare.per_label)
    clinical = clinical_result(got.rows, got.seg_facts) if task != "classification" else None
    if clinical:
        result["clinical"] = clinical  # lesions, MSD, area error (compare.clinical)
    if confusion is not None:
        result["confusion_matrix"] = confusion
        result["classes"] = got.classes
    return result, _paired_scores(got, task)


# ----------------------------------------------------------------------------- the test split
TEST_METRIC = {"segmentation": "dice", "classification": "macro_f1", "multitask": "dice"}


def _test_readings(run: Path, task: str) -> tuple[Readings, dict[str, float]]:
    got = Readings()
    read_fold(got, run, "test", task)
    return got, _paired_scores(got, task)


def _test_result(
    cell: Path, runs: list[Path], task: str
) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """Test-split numbers of one configuration: each fold model's (summarised over the K
    models: mean, CI), the fold ensemble's (over the test images, CI) and the paired test
    of the ensemble against the per-image mean of the fold models. None without a test
    split (``--test-fraction 0``); the ensemble's per-image paired scores beside it."""
    if not all(run_finished(r, "test") for r in runs):
        return None, {}
    folds, fold_scores = Readings(), []
    for run in runs:
        got, scores = _test_readings(run, task)
        fold_scores.append(scores)
        folds.classes = got.classes or folds.classes
        for m, values in got.folds.items():
            folds.folds.setdefault(m, []).extend(values)
    names = [m for m in (*SEG_METRICS, *CLS_METRICS) if m in folds.folds]
    result: dict[str, Any] = {
        "n_images": len(fold_scores[0]),
        "folds": {m: fold_summary(folds.folds[m], n_boot=N_BOOT, seed=0) for m in names},
        "ensemble": None,
        "ensemble_vs_folds": None,
    }
    if labels := holdout_label_results(cell, runs, N_BOOT):  # label maps (compare.per_label)
        result["per_label"] = labels
    ens = cell / "ensemble"
    metric = TEST_METRIC[task]
    result["leak_free"] = leak_free_test(  # pre-made test/ with duplicates in train
        runs,
        ens if run_finished_ensemble(ens) else None,
        metric,
        lambda rows: _pooled(rows, metric, folds.classes),
    )
    if not run_finished_ensemble(ens):
        return result, {}
    got, ens_scores = _test_readings(ens, task)
    metrics, _ = _metrics(got, task)
    result["ensemble"] = {m: metrics[m]["images"] for m in names}
    keys = sorted(ens_scores)
    mean_fold = [float(np.nanmean([f.get(k, math.nan) for f in fold_scores])) for k in keys]
    result["ensemble_vs_folds"] = paired_test([ens_scores[k] for k in keys], mean_fold)
    return result, ens_scores


def _pooled(rows: list[dict[str, str]], metric: str, classes: list[str]) -> dict[str, Any]:
    """``metric`` over ``rows`` with its CI over images, as the pooled columns compute it."""
    if metric in SEG_METRICS:
        return aggregate([to_float(r.get(metric)) for r in rows], N_BOOT, 0)
    return cls_pooled(rows, classes)[metric]


def run_finished_ensemble(folder: Path) -> bool:
    """True when a fold ensemble's test evaluation is complete (``eval/test/summary.json``)."""
    return (folder / "eval" / "test" / "summary.json").is_file()


# ----------------------------------------------------------------------------- all configurations
def _gather(
    out: Path, design: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Results of the finished configurations, their paired scores, the unfinished ones."""
    split, task, k = design["eval_split"], design["task"], max(1, design["folds"])
    configs, paired, incomplete = [], {}, []
    for cell in design["cells"]:
        runs = [out / "cells" / cell["id"] / f"fold{f}" for f in range(k)]
        missing = [f for f, r in enumerate(runs) if not run_finished(r, split)]
        if missing:
            label = cell_label(cell["overrides"])
            incomplete.append(
                {"cell": cell["id"], "configuration": label, "missing_folds": missing}
            )
            continue
        result, scores = _config_result(cell, runs, split, task)
        result["position"] = len(configs) + len(incomplete)
        result["test"], test_scores = _test_result(out / "cells" / cell["id"], runs, task)
        result.update(final_facts(out / "cells" / cell["id"], runs))  # CV post-proc., epochs
        configs.append(result)
        paired[cell["id"]] = scores
        paired[f"test:{cell['id']}"] = test_scores
    if not configs:
        raise MedtlError(
            f"{out}/cells holds no finished configuration; run 'medtl compare' (every shard) first"
        )
    return configs, paired, incomplete


def _rank(
    configs: list[dict[str, Any]], paired: dict[str, dict[str, float]], task: str, k: int
) -> None:
    """Sort by the primary metric; test every configuration against the best, in place."""
    configs.sort(
        key=lambda c: (-c["primary"] if math.isfinite(c["primary"]) else math.inf, c["position"])
    )
    best = configs[0]
    best_scores = paired[best["cell"]]
    best_folds = best["metrics"][PRIMARY[task]]["folds"]["values"]
    for rank, c in enumerate(configs, 1):
        c["rank"] = rank
        if c is best:
            c["vs_best"] = None
            continue
        mine = paired[c["cell"]]
        keys = sorted(set(mine) & set(best_scores))
        c["vs_best"] = {
            "images": paired_test([mine[i] for i in keys], [best_scores[i] for i in keys])
        }
        folds = c["metrics"][PRIMARY[task]]["folds"]["values"]
        c["vs_best"]["folds"] = paired_test(folds, best_folds) if k >= 3 else None
        c["vs_best"]["test"] = _vs_best_test(paired, c["cell"], best["cell"])
    _adjust(configs[1:])


def _vs_best_test(
    paired: dict[str, dict[str, float]], cell: str, best: str
) -> dict[str, Any] | None:
    """The ensemble of ``cell`` against the best configuration's ensemble, paired by test
    image (None without both ensembles' test scores)."""
    mine, theirs = paired.get(f"test:{cell}") or {}, paired.get(f"test:{best}") or {}
    keys = sorted(set(mine) & set(theirs))
    if not keys:
        return None
    return paired_test([mine[i] for i in keys], [theirs[i] for i in keys])


def _adjust(others: list[dict[str, Any]]) -> None:
    """Holm-adjust each p-value column across the configurations compared with the best
    (one family per test and per level, images, folds or test), as ``<key>_holm`` beside it."""
    for part in ("images", "folds", "test"):
        tests = [c["vs_best"][part] for c in others if c["vs_best"].get(part)]
        for key in HOLM_KEYS:
            for t, adj in zip(tests, holm([t[key] for t in tests]), strict=True):
                t[f"{key}_holm"] = adj


def collect(out: Path, quiet: bool = False, write: bool = True) -> dict[str, Any]:
    """Merge every finished cell under ``out`` (from any shards) into the results table.

    Writes ``results.json`` / ``results.csv`` / ``results.md`` (unless ``write`` is False:
    then nothing is written and the same dict is returned) and prints the Markdown table
    (unless ``quiet``). Configurations are ranked by the primary metric pooled over all
    held-out images (Dice; macro-F1 for classification; their mean for multitask); every
    other configuration is compared with the best on paired per-image scores (Dice;
    correctness for classification) and, with >= 3 folds, on paired per-fold primary scores;
    each p-value comes raw and Holm-adjusted across the configurations (``<key>_holm``).

    Returns:
        The results as ``results.json`` holds them (NaN as None).
    """
    out = Path(out).absolute()
    record = Design.read(out)
    design, task = record.doc, record.task
    configs, paired, incomplete = _gather(out, design)
    _rank(configs, paired, task, max(1, record.folds))
    label_tests(configs)
    results = {
        "format": "medtl-results-1",
        "task": task,
        "primary": PRIMARY[task],
        "paired_metric": "accuracy" if task == "classification" else "dice",
        "folds": record.folds,
        "eval_split": record.eval_split,
        "seed": record.seed,
        "config_file": record.config_file,  # the -c FILE every cell started from
        "base_overrides": record.base_overrides,
        "grid": record.grid,
        "n_images": record.n_images,
        "n_test": record.n_test,
        "test_metric": TEST_METRIC[task],
        "best": configs[0]["cell"],
        "labels": list(configs[0].get("per_label") or {}),
        "configs": configs,
        "incomplete": incomplete,
    }
    extra = final_lines(results)  # post-processing and the final model
    table = results_markdown(results) + ("\n".join(extra) + "\n" if extra else "")
    if write:
        write_results(out, results)
        atomic_write_text(out / "results.csv", results_csv(results))
        atomic_write_text(out / "results.md", table)
        best_card(out, results)  # CMP/MODEL_CARD.md of the best configuration
    if incomplete:
        log.warning(
            f"{len(incomplete)} configuration(s) not finished yet: "
            + ", ".join(i["cell"] for i in incomplete)
        )
    if not quiet:
        print(table)
    return json.loads(json.dumps(json_safe(results), default=str, allow_nan=False))
