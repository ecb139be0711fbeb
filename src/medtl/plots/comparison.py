"""Figures of a comparison (``medtl compare``): one row or line per configuration.

Each takes the collected results (``medtl.comparison.collect``) and returns a Figure; the
comparison report embeds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medtl.plots.common import PALETTE, new_figure, note
from medtl.utils.files import to_float


def _labels(configs: Sequence[Mapping[str, Any]], width: int = 60) -> list[str]:
    return [c["configuration"][:width] for c in configs]


def comparison_summary_figure(results: Mapping[str, Any], metric_name: str) -> Figure:
    """Primary metric per configuration: pooled mean with its 95% CI, fold means as ticks.

    ``metric_name`` labels the primary metric (e.g. ``"Dice"``); the best configuration is on top.
    """
    configs, primary = results["configs"], results["primary"]
    fig = new_figure(9.5, 0.45 * len(configs) + 1.5)
    ax = fig.subplots()
    for y, c in enumerate(configs):
        s = c["metrics"][primary]
        mean = to_float(s["images"]["mean"])
        lo, hi = to_float(s["images"].get("ci_low")), to_float(s["images"].get("ci_high"))
        colour = PALETTE[2] if y == 0 else PALETTE[0]
        if math.isfinite(lo):
            ax.plot([lo, hi], [y, y], color=colour, linewidth=3, alpha=0.55, solid_capstyle="round")
        label = "pooled mean (95% CI)" if y == 0 else None
        ax.plot([mean], [y], "o", color=colour, markersize=8, label=label)
        fold_vals = [
            v for v in s["folds"]["values"] if v is not None and math.isfinite(to_float(v))
        ]
        if results["folds"] and fold_vals:
            label = "fold means" if y == 0 else None
            ax.plot(
                fold_vals, [y] * len(fold_vals), "|", color="#333333", markersize=12, label=label
            )
    ax.set_yticks(range(len(configs)), labels=_labels(configs))
    ax.set_ylim(len(configs) - 0.4, -0.6)  # best on top
    ax.set_xlabel(metric_name)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{metric_name} by configuration (best on top)")
    return fig


def comparison_per_image_figure(
    results: Mapping[str, Any], per_image: Mapping[str, Sequence[float]]
) -> Figure:
    """Box plot of per-image Dice per configuration (``per_image``: cell id -> Dice values)."""
    configs = results["configs"]
    fig = new_figure(8.5, 0.55 * len(configs) + 1.6)
    ax = fig.subplots()
    data = [np.asarray([v for v in per_image[c["cell"]] if math.isfinite(v)]) for c in configs]
    ax.boxplot(
        data,
        vert=False,
        widths=0.55,
        showmeans=True,
        medianprops={"color": PALETTE[1]},
        meanprops={"marker": "D", "markerfacecolor": PALETTE[2], "markeredgecolor": "none"},
    )
    rng = np.random.default_rng(0)
    for y, v in enumerate(data, 1):
        ax.plot(
            v, y + rng.uniform(-0.12, 0.12, v.size), ".", color="#555555", alpha=0.35, markersize=4
        )
    ax.set_yticks(range(1, len(configs) + 1), labels=_labels(configs))
    ax.invert_yaxis()
    ax.set_xlabel("per-image Dice")
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title("Per-image Dice of every held-out image\n(box: quartiles, diamond: mean)")
    return fig


def _mean_by_epoch(
    histories: Sequence[Sequence[Mapping[str, Any]]], column: str
) -> dict[int, float]:
    """Mean of ``column`` per epoch over the folds' metrics.csv rows (empty cells skipped)."""
    by_epoch: dict[int, list[float]] = {}
    for rows in histories:
        for r in rows:
            v = to_float(r.get(column))
            if math.isfinite(v):
                by_epoch.setdefault(int(to_float(r.get("epoch"))), []).append(v)
    return {e: float(np.mean(by_epoch[e])) for e in sorted(by_epoch)}


def comparison_curves_figure(
    results: Mapping[str, Any], histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]
) -> Figure | None:
    """Train loss and validation score per epoch, one line per configuration (mean over folds).

    ``histories``: cell id -> one list of metrics.csv rows per fold. None when nothing was recorded.
    """
    fig = new_figure(11, 4.0)
    ax_loss, ax_score = fig.subplots(1, 2)
    drawn = False
    for i, c in enumerate(results["configs"]):
        colour = PALETTE[i % len(PALETTE)]
        for ax, col in ((ax_loss, "train_loss"), (ax_score, "val_score")):
            curve = _mean_by_epoch(histories[c["cell"]], col)
            if curve:
                x = list(curve)
                label = c["configuration"][:50]
                ax.plot(x, list(curve.values()), "-o", markersize=3, color=colour, label=label)
                drawn = True
    if not drawn:
        fig.clear()
        return None
    for ax, title in (
        (ax_loss, "Training loss"),
        (ax_score, "Validation score (monitored metric)"),
    ):
        if not ax.lines:
            note(ax, "not recorded in metrics.csv")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_score.legend(fontsize=8, loc="best")
    fig.suptitle("Learning curves, mean over folds")
    return fig
