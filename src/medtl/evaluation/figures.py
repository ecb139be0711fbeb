"""The figures ``medtl evaluate`` writes into ``eval/<split>/``: learning curves,
confusion matrix, ROC, reliability, Dice histogram, best/median/worst overlay grid and
predictions.gif (those the task has)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medtl.evaluation.labels import histogram_groups, legend
from medtl.inference.engine import overlay
from medtl.utils.files import printable


def classification_plots(
    cls: dict[str, Any],
    classes: list[str],
    probs: list,
    y_true: list,
    out_dir: Path,
    temperature: float | None = None,
) -> list[Path]:
    """Confusion matrix, ROC (two classes present or more) and reliability diagram (a
    second one at a stored ``temperature``: :func:`medtl.plots.reliability.reliability_plots`)."""
    from medtl import plots
    from medtl.plots.reliability import reliability_plots

    written = [
        plots.confusion_matrix_plot(
            cls["confusion_matrix"], classes, out_dir / "confusion_matrix.png"
        )
    ]
    known = [i for i, y in enumerate(y_true) if y >= 0]
    if not known:
        return written
    y, p = np.array([y_true[i] for i in known]), np.stack([probs[i] for i in known])
    if len(set(y.tolist())) >= 2:
        written.append(plots.roc_plot(y, p, classes, out_dir / "roc.png"))
    return written + reliability_plots(y, p, out_dir, temperature)


def write_plots(
    run: Path,
    out_dir: Path,
    rows: list[dict[str, Any]],
    cases: dict[int, Any],
    summary: dict[str, Any],
    probs: list,
    y_true: list,
    classes: list[str],
) -> list[Path]:
    """The evaluation plots: learning curves, confusion matrix, ROC, reliability, Dice histogram,
    best/median/worst overlay grid and predictions.gif (those the task has)."""
    from medtl import plots

    written = []
    if (run / "metrics.csv").is_file():
        written.append(plots.learning_curves(run / "metrics.csv", out_dir / "learning_curves.png"))
    cls = summary.get("classification")
    if cls:
        t = (summary.get("calibration") or {}).get("temperature")  # evaluate --calibrate
        written += classification_plots(cls, classes, probs, y_true, out_dir, t)
    if "segmentation" in summary:
        dice = [r["dice"] for r in rows]
        by_class: dict[str, list[float]] = {}
        for r in rows:
            if r.get("class"):
                by_class.setdefault(r["class"], []).append(r["dice"])
        written.append(
            plots.dice_histogram(
                dice,
                out_dir / "dice_histogram.png",
                by_class=histogram_groups(rows, summary, by_class) or None,
            )
        )
        picked = plots.select_cases(dice, k=4)
        items, frames = [], []
        for group in ("best", "median", "worst"):
            for i in picked[group]:
                image, pred, truth = cases[i]
                stem = printable(Path(rows[i]["image"]).stem)  # a newline in a name
                caption = f"{group}: {stem} Dice {rows[i]['dice']:.2f}"
                items.append((caption, overlay(image, pred, truth)))
                frames.append((image, pred, truth, caption))
        if items:
            written.append(
                plots.overlay_grid(items, out_dir / "overlays_grid.png", legend=legend(summary))
            )
            written.append(plots.predictions_gif(frames, out_dir / "predictions.gif"))
    return written
