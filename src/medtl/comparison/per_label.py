"""Per-label results of a comparison whose masks hold several labels.

The ranking stays on the primary metric, which for label maps is already the mean
foreground Dice (evaluate's ``dice`` column is the mean over foreground labels, see
:func:`medtl.metrics.segmentation.label_scores`). Beside it, every configuration gets, per
foreground label, Dice / IoU / HD95 pooled over held-out images and over the per-fold means
(:func:`~medtl.metrics.statistics.aggregate`, :func:`~medtl.metrics.statistics.fold_summary`),
and a paired test of its per-image Dice of that label against the best configuration's
(:func:`~medtl.metrics.paired.paired_test`), Holm-adjusted across the configurations compared
with the best, one family per label and test (:func:`~medtl.metrics.paired.holm`).
Binary runs have no labels and get nothing (``labels`` is ``[]``).

With a held-out test split, :func:`holdout_label_results` gives the same numbers on it: per
label, the K fold models' test means (:func:`~medtl.metrics.statistics.fold_summary` over
the models, as the main table's test columns) and the fold ensemble's per-image scores
(``CELL/ensemble/eval/test/``, :func:`~medtl.metrics.statistics.aggregate`) when it has
been evaluated; ``compare.collect`` stores them as ``configs[i]["test"]["per_label"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtl.metrics.paired import holm, paired_test
from medtl.metrics.statistics import aggregate, fold_summary
from medtl.runs.records import SUMMARY_FILE, EvalSummary
from medtl.utils.files import read_csv, to_float

__all__ = [
    "LABEL_METRICS",
    "add_label_folds",
    "keep_label_scores",
    "label_results",
    "label_scores",
    "label_tests",
    "labels_of",
    "holdout_label_results",
]

LABEL_METRICS = ("dice", "iou", "hd95")
_SCORES = "_label_scores"  # per-image Dice per label, kept on a result until label_tests
_HOLM = ("p_permutation", "p_wilcoxon", "p_bootstrap")


def labels_of(summary: dict[str, Any]) -> list[str]:
    """The foreground label names of an evaluation's ``summary.json`` (``[]``: binary)."""
    return list(summary.get("segmentation_per_label") or {})


def _mean(values: list[float]) -> float:
    v = np.array(values, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


def add_label_folds(got: Any, rows: list[dict[str, str]], summary: dict[str, Any]) -> None:
    """Record one fold's labels and its per-label means (``<metric>_<label>``) on the
    readings ``got`` (:class:`medtl.comparison.readings.Readings`)."""
    names = labels_of(summary)
    if not names:
        return
    got.labels = names
    for name in names:
        for m in LABEL_METRICS:
            got.add_fold(f"{m}_{name}", _mean([to_float(r.get(f"{m}_{name}")) for r in rows]))


def label_results(got: Any, n_boot: int, seed: int = 0) -> dict[str, Any]:
    """``{label: {metric: {"images": aggregate, "folds": fold_summary}}}`` of one
    configuration's readings (``{}`` for binary masks)."""
    out: dict[str, Any] = {}
    for name in getattr(got, "labels", []):
        out[name] = {
            m: {
                "images": aggregate(
                    [to_float(r.get(f"{m}_{name}")) for r in got.rows], n_boot, seed
                ),
                "folds": fold_summary(got.folds[f"{m}_{name}"], n_boot=n_boot, seed=seed),
            }
            for m in LABEL_METRICS
        }
    return out


def label_scores(got: Any) -> dict[str, dict[str, float]]:
    """``{label: {image: Dice of that label}}``: the pairs of the per-label tests."""
    return {
        name: {r["image"]: to_float(r.get(f"dice_{name}")) for r in got.rows}
        for name in getattr(got, "labels", [])
    }


def label_tests(configs: list[dict[str, Any]]) -> None:
    """Per label, every configuration against the best (``configs[0]``, ranked) on paired
    per-image Dice of that label, as ``vs_best_per_label`` (None on the best); p-values
    Holm-adjusted across the others per label and test (``<key>_holm``). Drops the scores
    :func:`label_results`' caller kept under ``_label_scores``."""
    scores = [c.pop(_SCORES, {}) for c in configs]
    if not any(scores):
        return  # binary masks: no per-label numbers
    best = scores[0]
    for c, mine in zip(configs, scores, strict=True):
        c["vs_best_per_label"] = None if c is configs[0] else {}
        if c is configs[0]:
            continue
        for name, per_image in mine.items():
            theirs = best.get(name, {})
            keys = sorted(set(per_image) & set(theirs))
            c["vs_best_per_label"][name] = paired_test(
                [per_image[k] for k in keys], [theirs[k] for k in keys]
            )
    for name in configs[0].get("per_label") or {}:
        tests = [c["vs_best_per_label"].get(name) for c in configs[1:]]
        tests = [t for t in tests if t]
        for key in _HOLM:
            for t, adj in zip(tests, holm([t[key] for t in tests]), strict=True):
                t[f"{key}_holm"] = adj


def keep_label_scores(result: dict[str, Any], got: Any, n_boot: int) -> None:
    """Put the per-label results on a configuration's ``result`` and keep its per-image
    per-label Dice for :func:`label_tests`."""
    result["per_label"] = label_results(got, n_boot=n_boot)
    result[_SCORES] = label_scores(got)


def _split_readings(folder: Path, split: str) -> tuple[list[str], list[dict[str, str]]] | None:
    """The labels and per-image rows of ``folder/eval/<split>`` (None: not evaluated)."""
    summary_file = folder / "eval" / split / SUMMARY_FILE
    if not summary_file.is_file():
        return None
    labels = EvalSummary.read(summary_file).labels
    return labels, read_csv(folder / "eval" / split / "per_image.csv")


def holdout_label_results(
    cell: Path, runs: Sequence[Path], n_boot: int, seed: int = 0, split: str = "test"
) -> dict[str, Any]:
    """Per-label numbers of one configuration on the held-out ``split``:
    ``{label: {metric: {"folds": fold_summary, "ensemble": aggregate | None}}}``, where
    ``folds`` summarises each fold model's mean over the test images (one value per model)
    and ``ensemble`` the fold ensemble's per-image scores (``cell/ensemble``; None until
    ``medtl evaluate CMP --config N`` has run). ``{}`` for binary masks or while a fold
    model's test evaluation is missing."""
    read = [_split_readings(Path(r), split) for r in runs]
    folds = [f for f in read if f is not None]
    if not folds or len(folds) < len(read) or not folds[0][0]:
        return {}
    ensemble = _split_readings(Path(cell) / "ensemble", split)
    out: dict[str, Any] = {}
    for name in folds[0][0]:
        out[name] = {}
        for m in LABEL_METRICS:
            key = f"{m}_{name}"
            means = [_mean([to_float(r.get(key)) for r in rows]) for _, rows in folds]
            ens = [to_float(r.get(key)) for r in ensemble[1]] if ensemble else None
            out[name][m] = {
                "folds": fold_summary(means, n_boot=n_boot, seed=seed),
                "ensemble": aggregate(ens, n_boot, seed) if ens is not None else None,
            }
    return out
