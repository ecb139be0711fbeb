"""What the finished runs of one configuration hold, read once for :mod:`medtl.comparison.collect`:
per-image rows, per-fold means, epochs, timings, label and distance facts; and the
classification scores pooled over their images with bootstrap CIs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtl.comparison.design import TIMING_FILE
from medtl.comparison.per_label import add_label_folds
from medtl.metrics.classification import classification_scores
from medtl.metrics.resampled import macro_auroc_resampled, macro_f1_resampled
from medtl.metrics.statistics import aggregate, bootstrap_statistic_ci
from medtl.runs.records import SUMMARY_FILE, EvalSummary
from medtl.utils.files import read_csv, to_float
from medtl.utils.records import Shape, load_json

__all__ = ["N_BOOT", "SEG_METRICS", "Readings", "cls_pooled", "read_fold"]

SEG_METRICS = ("dice", "iou")
N_BOOT = 2000


def cls_pooled(rows: list[dict[str, str]], classes: list[str]) -> dict[str, dict[str, Any]]:
    """Accuracy, macro-F1 and AUROC pooled over images, with bootstrap CIs over images."""
    known = [r for r in rows if r.get("class") in classes]
    y = np.array([classes.index(r["class"]) for r in known], dtype=np.int64)
    probs = np.array([[to_float(r.get(f"p_{c}")) for c in classes] for r in known], dtype=float)
    probs = probs.reshape(len(known), len(classes))
    pred = probs.argmax(1) if len(known) else np.zeros(0, np.int64)
    scores = classification_scores(y, probs, classes)
    correct = (pred == y).astype(float)

    def f1(idx: np.ndarray) -> np.ndarray:
        return macro_f1_resampled(y, pred, len(classes), idx)

    def auroc(idx: np.ndarray) -> np.ndarray:  # NaN for a resample of one class
        return macro_auroc_resampled(y, probs, len(classes), idx)

    out = {"accuracy": aggregate(correct, n_boot=N_BOOT, seed=0)}
    for name, value, stat in (
        ("macro_f1", scores["macro_avg"]["f1"], f1),
        ("auroc", scores["auroc_macro"], auroc),
    ):
        lo, hi = bootstrap_statistic_ci(len(known), stat, n_boot=N_BOOT, seed=0, vectorized=True)
        out[name] = {
            "mean": float(value),
            "std": None,
            "n": len(known),
            "ci_low": lo,
            "ci_high": hi,
        }
    out["_confusion_matrix"] = scores["confusion_matrix"]  # type: ignore[assignment]
    return out


@dataclass
class Readings:
    """What the runs of one configuration hold: per-image rows, per-fold means, timings."""

    rows: list[dict[str, str]] = field(default_factory=list)
    folds: dict[str, list[float]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    img_s: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # foreground labels of label maps
    seg_facts: list[dict[str, Any]] = field(default_factory=list)  # unit, lesion criterion

    def add_fold(self, metric: str, value: float) -> None:
        self.folds.setdefault(metric, []).append(value)


def read_fold(got: Readings, run: Path, split: str, task: str) -> None:
    rows = read_csv(run / "eval" / split / "per_image.csv")
    record = EvalSummary.read(run / "eval" / split / SUMMARY_FILE)
    summary = record.doc
    got.rows += rows
    if task != "classification":
        for m in SEG_METRICS:
            v = np.array([to_float(r.get(m)) for r in rows])
            got.add_fold(m, float(np.nanmean(v)) if np.isfinite(v).any() else math.nan)
        add_label_folds(got, rows, summary)
        facts = ("distance_unit", "lesion_criterion")  # mm or px (medtl.evaluation.segmentation)
        got.seg_facts.append({k: summary.get(k) for k in facts})
    if task != "segmentation":
        c = record.classification or {}
        got.classes = list(c.get("classes") or got.classes)
        got.add_fold("accuracy", to_float(c.get("accuracy")))
        got.add_fold("macro_f1", to_float((c.get("macro_avg") or {}).get("f1")))
        got.add_fold("auroc", to_float(c.get("auroc_macro")))
    metrics_csv = run / "metrics.csv"
    history = read_csv(metrics_csv) if metrics_csv.is_file() else []
    got.epochs.append(len(history))
    got.train_s.append(sum(to_float(r.get("epoch_time_s")) for r in history))
    timing_file = run / TIMING_FILE
    if timing_file.is_file():
        fix = f"delete it and run 'medtl evaluate {run}' again"
        shape = Shape(timing_file, fix)
        timing = shape.mapping(load_json(timing_file, fix))
        speed = shape.number(timing.get("infer_img_per_s"), "infer_img_per_s", 0.0, None, True)
        got.img_s.append(math.nan if speed is None else speed)
