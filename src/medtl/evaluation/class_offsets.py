"""Class offsets of a fold ensemble, chosen on its folds' out-of-fold predictions.

A classifier trained with class weights (``train.class_weights=auto``: each class weighted by
the inverse of its share) calls the minority classes more often than they occur; its argmax
is not the decision with the best macro-F1. After a comparison's folds,
:func:`choose_for_cell` reads every fold's validation predictions (``foldK/eval/val/
per_image.csv``: the true class and ``p_<class>``; together the out-of-fold predictions of the
images the folds share) and chooses one offset per class, added to the log-probabilities
before the argmax, that maximises their macro-F1 (the first class's offset is 0; coordinate
ascent over :data:`GRID`, a step only on a strict gain, so no offset moves without evidence).
The offsets are kept only when they raise the out-of-fold macro-F1; the choice goes to
``CELL/class_offsets.json``, which the fold ensemble's evaluate, predict and export apply
(:class:`medtl.comparison.ensemble.FoldEnsemble`), and ``--class-offsets none`` turns off.
The test split is never read. Measured on BUSI (docs/results.md section 9, "Five folds"):
out-of-fold macro-F1 0.757 -> 0.782 (offsets 0 / -1.8 / -1.0), the ensemble on the held-out
test split 0.776 -> 0.832.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medtl.runs.records import read_class_offsets
from medtl.utils.files import atomic_write_json

__all__ = [
    "GRID",
    "OFFSETS_FILE",
    "choose_for_cell",
    "fit_offsets",
    "macro_f1",
    "offsets_of",
    "offsets_text",
]

log = logging.getLogger("medtl")
OFFSETS_FILE = "class_offsets.json"
GRID = np.round(np.arange(-2.0, 2.0001, 0.1), 2)
"""Candidate offsets (log-probability units: -2 divides a class's odds by e^2 = 7.4)."""
_ROUNDS = 10


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Unweighted mean over the ``k`` classes of each class's F1 (0 for a class never true
    nor predicted, as scikit-learn's ``zero_division=0``)."""
    out = []
    for c in range(k):
        tp = int(((pred == c) & (y == c)).sum())
        wrong = int(((pred == c) != (y == c)).sum())
        out.append(2 * tp / (2 * tp + wrong) if tp else 0.0)
    return float(np.mean(out))


def fit_offsets(y: np.ndarray, logp: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(offsets, macro-F1 at argmax, macro-F1 with the offsets)`` for true classes ``y``
    (n,) and log-probabilities ``logp`` (n, k): coordinate ascent over :data:`GRID` for
    classes 1..k-1, from zero, a step only on a strict gain."""
    k = logp.shape[1]
    off = np.zeros(k)
    before = best = macro_f1(y, logp.argmax(1), k)
    for _ in range(_ROUNDS):
        moved = False
        for c in range(1, k):
            for g in GRID:
                trial = off.copy()
                trial[c] = g
                score = macro_f1(y, (logp + trial).argmax(1), k)
                if score > best + 1e-12:
                    best, off, moved = score, trial, True
        if not moved:
            break
    return off, before, best


def _out_of_fold(runs: list[Path], classes: list[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    ys, ps = [], []
    for run in runs:
        with open(run / "eval" / split / "per_image.csv", newline="") as f:
            for row in csv.DictReader(f):
                ys.append(classes.index(row["class"]))
                ps.append([float(row[f"p_{c}"]) for c in classes])
    return np.asarray(ys), np.log(np.clip(np.asarray(ps), 1e-9, 1.0))


def choose_for_cell(
    cell: Path,
    runs: list[Path],
    classes: list[str] | None = None,
    split: str = "val",
    write: bool = True,
) -> dict[str, Any] | None:
    """The class offsets of a configuration chosen on its folds' out-of-fold predictions
    (``CELL/class_offsets.json``; reused while newer than every fold's evaluation); None when
    the folds have no class predictions (segmentation) or fewer than 2 classes. ``classes``:
    in the order of the class head (default: the ``p_<class>`` columns' order, which
    evaluate writes in that order)."""
    sources = [r / "eval" / split / "per_image.csv" for r in runs]
    if not sources or not all(s.is_file() for s in sources):
        return None
    with open(sources[0], newline="") as f:
        header = next(csv.reader(f), [])
    if classes is None:
        classes = [h[2:] for h in header if h.startswith("p_")]
    if len(classes) < 2 or "class" not in header or any(f"p_{c}" not in header for c in classes):
        return None
    path = cell / OFFSETS_FILE
    if path.is_file() and all(path.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return read_class_offsets(path)
    y, logp = _out_of_fold(runs, classes, split)
    off, before, after = fit_offsets(y, logp)
    kept = after > before
    doc = {
        "classes": classes,
        "offsets": {c: float(o) for c, o in zip(classes, off if kept else 0 * off, strict=True)},
        "kept": kept,
        "macro_f1_before": round(before, 6),
        "macro_f1_after": round(after, 6),
        "n_images": len(y),
        "rule": "log-probability offsets maximising out-of-fold macro-F1 (coordinate "
        "ascent over -2..2, step 0.1; kept only when macro-F1 rises)",
        "source": f"out-of-fold predictions, eval/{split} of {len(runs)} fold(s)",
    }
    log.info(
        f"{cell.name}: class offsets {offsets_text(doc['offsets']) if kept else 'none'} "
        "(out-of-fold macro-F1 "
        f"{before:.4f} -> {after if kept else before:.4f}, {len(y)} images)"
    )
    if write:
        atomic_write_json(path, doc)
    return doc


def offsets_text(offsets: dict[str, float]) -> str:
    """``"benign +0.0, malignant -1.8"``: the offsets as the log, results.md and the export
    line name them."""
    return ", ".join(f"{c} {float(o):+.1f}" for c, o in offsets.items())


def offsets_of(cell: Path, classes: list[str], use: str = "cv") -> np.ndarray | None:
    """The offsets ``CELL/class_offsets.json`` kept, in the order of ``classes`` (None when
    ``use`` is ``none``, without the file, when none were kept or the classes differ)."""
    doc = None if use == "none" else read_class_offsets(Path(cell) / OFFSETS_FILE)
    if not doc or not doc.get("kept") or list(doc["classes"]) != list(classes):
        return None
    return np.asarray([float(doc["offsets"][c]) for c in classes])
