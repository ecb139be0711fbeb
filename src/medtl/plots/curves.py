"""Learning curves from ``RUN/metrics.csv``: losses and validation metrics per epoch."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medtl.plots.common import PALETTE, new_figure, note, save_figure
from medtl.utils.errors import MedtlError
from medtl.utils.files import to_float

SPLIT_COLOURS = {"train": PALETTE[0], "val": PALETTE[1]}
LOSS_STYLES = {"loss": "-", "seg_loss": "--", "cls_loss": ":"}
METRICS = {  # column -> (label, colour)
    "val_dice": ("Dice", PALETTE[2]),
    "val_iou": ("IoU", PALETTE[4]),
    "val_macro_f1": ("macro F1", PALETTE[3]),
    "val_acc": ("accuracy", PALETTE[5]),
    "val_auroc": ("AUROC", PALETTE[9]),
}
UNFREEZE_LABEL = "encoder unfrozen"


def read_metrics_csv(path: Path) -> list[dict[str, str]]:
    """Rows of ``RUN/metrics.csv`` as dicts of strings (cells may be empty)."""
    path = Path(path)
    if not path.is_file():
        raise MedtlError(f"{path} not found: learning curves need the run's metrics.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _epochs(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array(
        [to_float(r.get("epoch", i)) if "epoch" in r else float(i) for i, r in enumerate(rows)]
    )


def detect_unfreeze_epoch(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """First epoch whose ``encoder_trainable_stages`` is larger than the previous recorded
    value (empty cells skipped); None when the column is absent or never increases."""
    epochs = _epochs(rows)
    previous = math.nan
    for epoch, row in zip(epochs, rows, strict=True):
        stages = to_float(row.get("encoder_trainable_stages"))
        if math.isnan(stages):
            continue
        if not math.isnan(previous) and stages > previous:
            return int(epoch)
        previous = stages
    return None


def _series(rows: Sequence[Mapping[str, Any]], column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) of ``column`` with empty cells dropped; None if it has no values."""
    if not any(column in r for r in rows):
        return None
    x = _epochs(rows)
    y = np.array([to_float(r.get(column)) for r in rows])
    keep = np.isfinite(x) & np.isfinite(y)
    return (x[keep], y[keep]) if keep.any() else None


def learning_curves_figure(
    rows: Sequence[Mapping[str, Any]], unfreeze_epoch: int | None = None
) -> Figure:
    """Two panels: losses (train vs val, with seg/cls parts) and validation metrics.

    ``unfreeze_epoch=None`` means "detect it" (see :func:`detect_unfreeze_epoch`); it is drawn
    as a dashed vertical line labelled ``"encoder unfrozen"`` in both panels.
    """
    if unfreeze_epoch is None:
        unfreeze_epoch = detect_unfreeze_epoch(rows)
    fig = new_figure(11, 4.2)
    ax_loss, ax_metric = fig.subplots(1, 2)
    marker = "o" if len(rows) <= 30 else None
    for split in ("train", "val"):
        for part, style in LOSS_STYLES.items():
            s = _series(rows, f"{split}_{part}")
            if s is not None:
                label = f"{split} {part.replace('_', ' ')}"
                ax_loss.plot(
                    *s, style, color=SPLIT_COLOURS[split], marker=marker, markersize=3, label=label
                )
    for column, (label, colour) in METRICS.items():
        s = _series(rows, column)
        if s is not None:
            ax_metric.plot(*s, "-", color=colour, marker=marker, markersize=3, label=label)
    ax_metric.set_ylim(-0.02, 1.02)
    losses = np.concatenate([ln.get_ydata() for ln in ax_loss.get_lines()] or [np.ones(1)])
    if losses.min() > 0 and losses.max() > 20 * np.median(
        losses
    ):  # one blow-up would flatten the rest
        ax_loss.set_yscale("log")
    for ax, title, ylabel in (
        (ax_loss, "Loss", "loss"),
        (ax_metric, "Validation metrics", "score"),
    ):
        has_data = bool(ax.lines)
        if unfreeze_epoch is not None:
            ax.axvline(
                unfreeze_epoch, color="#555555", linestyle="--", linewidth=1.2, label=UNFREEZE_LABEL
            )
        if not has_data:
            note(ax, "no epochs recorded" if not rows else f"no {ylabel} columns in metrics.csv")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle("Learning curves")
    return fig


def learning_curves(metrics_csv: Path, out: Path, unfreeze_epoch: int | None = None) -> Path:
    """PNG of the run's learning curves from ``RUN/metrics.csv``; returns ``out``."""
    return save_figure(learning_curves_figure(read_metrics_csv(metrics_csv), unfreeze_epoch), out)
