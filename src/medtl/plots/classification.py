"""Classification figures: the confusion matrix and one-vs-rest ROC curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medtl.plots.common import PALETTE, new_figure, save_figure


def normalise_rows(cm: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (each true class sums to 1; empty rows stay 0)."""
    m = np.asarray(cm, dtype=float)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def confusion_matrix_figure(
    cm: Sequence[Sequence[int]], classes: Sequence[str], normalise: bool = True
) -> Figure:
    """Heat map, true class on y, predicted on x; each cell shows the count and the row %.

    ``normalise`` colours cells by row fraction (readable under class imbalance) rather than
    by raw count.
    """
    counts = np.asarray(cm, dtype=np.int64)
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(
            f"confusion matrix has shape {counts.shape}, expected ({n}, {n}) for classes {list(classes)}"
        )
    frac = normalise_rows(counts)
    shown = frac if normalise else counts
    vmax = 1.0 if normalise else max(1, int(counts.max(initial=0)))
    side = max(4.5, 0.9 * n + 2.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(
        im,
        ax=ax,
        fraction=0.046,
        pad=0.04,
        label="fraction of true class" if normalise else "count",
    )
    size = max(6, 11 - n // 3)
    for i in range(n):
        for j in range(n):
            colour = "white" if shown[i, j] > 0.5 * vmax else "black"
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{100 * frac[i, j]:.1f}%",
                ha="center",
                va="center",
                color=colour,
                fontsize=size,
            )
    ax.set_xticks(
        range(n),
        labels=list(classes),
        rotation=30 if max(map(len, classes), default=0) > 6 else 0,
        ha="right" if max(map(len, classes), default=0) > 6 else "center",
    )
    ax.set_yticks(range(n), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(counts.sum())
    acc = np.trace(counts) / total if total else math.nan
    ax.set_title(f"Confusion matrix (n={total}, accuracy {acc:.3f})")
    return fig


def confusion_matrix_plot(
    cm: list[list[int]], classes: list[str], out: Path, normalise: bool = True
) -> Path:
    """PNG of the confusion matrix; returns ``out``."""
    return save_figure(confusion_matrix_figure(cm, classes, normalise), out)


def roc_curve(
    y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """(fpr, tpr, auc) of a binary score (``y`` truthy = positive), ties handled as one step.

    The curve starts at (0, 0) and has one point per distinct score, so the trapezoidal
    AUC equals the Mann-Whitney probability (ties count 1/2). Non-finite scores are dropped;
    AUC is NaN when there are no positives or no negatives.
    """
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, dtype=float).ravel()
    keep = np.isfinite(s)
    y, s = y[keep], s[keep]
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = (
        np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.array([], dtype=int)
    )
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(tps.size + 1, math.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(fps.size + 1, math.nan)
    if not (n_pos and n_neg):
        return fpr, tpr, math.nan
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_figure(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> Figure:
    """One-vs-rest ROC per class, AUC in the legend, chance diagonal.

    ``probs`` is (N, C); a 1-D ``probs`` is the score of ``classes[1]`` (binary), giving one curve.
    """
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        curves = [(classes[-1], y == len(classes) - 1, p)]
    else:
        if p.shape != (y.size, len(classes)):
            raise ValueError(f"probs has shape {p.shape}, expected ({y.size}, {len(classes)})")
        curves = [(name, y == c, p[:, c]) for c, name in enumerate(classes)]
    fig = new_figure(5.8, 5.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="chance")
    aucs = []
    for c, (name, positive, score) in enumerate(curves):
        fpr, tpr, auc = roc_curve(positive, score)
        colour = PALETTE[(c if p.ndim > 1 else 1) % len(PALETTE)]
        if math.isnan(auc):
            ax.plot([], [], color=colour, label=f"{name} (AUC n/a: one class only)")
            continue
        aucs.append(auc)
        ax.plot(
            fpr,
            tpr,
            color=colour,
            linewidth=1.8,
            drawstyle="default",
            label=f"{name} (AUC = {auc:.3f})",
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    macro = f", macro AUC {np.mean(aucs):.3f}" if len(aucs) > 1 else ""
    ax.set_title(f"ROC, one-vs-rest (n={y.size}{macro})")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def roc_plot(y_true: np.ndarray, probs: np.ndarray, classes: list[str], out: Path) -> Path:
    """PNG of the one-vs-rest ROC curves; returns ``out``."""
    return save_figure(roc_figure(y_true, probs, classes), out)
