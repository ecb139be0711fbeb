"""Figures of a run: learning curves, confusion matrix, ROC, Dice histogram, case grids, GIF.

Every ``*_figure`` function builds and returns a matplotlib ``Figure`` (tests read the
plotted data back from it); the matching writer saves it as a PNG atomically and returns
the written path. Figures are made with ``matplotlib.figure.Figure`` rather than pyplot, so
no window ever opens, nothing lingers in pyplot's figure registry, and a user's own pyplot
state (e.g. in a notebook) is left alone.

Example::

    from medtl import plots
    plots.learning_curves(run / "metrics.csv", run / "eval" / "test" / "curves.png")
    plots.roc_plot(y, probs, ["benign", "malignant", "normal"], run / "roc.png")
"""

from __future__ import annotations

import csv
import math
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # headless; never switch a user's live backend
    matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from medtl.errors import MedtlError
from medtl.io_utils import atomic_write

DPI = 110
# tab10: one palette everywhere; a split, a metric or a class keeps its colour in every figure
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
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
GROUP_COLOURS = {"best": PALETTE[2], "median": "#333333", "worst": PALETTE[3]}
MAX_GIF_FRAMES = 24
CAPTION_HEIGHT = 22


# ----------------------------------------------------------------------------- helpers
def _save(fig: Figure, out: Path) -> Path:
    """Write ``fig`` as PNG atomically, then drop its artists (the figure is done with)."""
    try:
        return atomic_write(Path(out), lambda p: fig.savefig(p, format="png", dpi=DPI))
    finally:
        fig.clear()


def _float(value: Any) -> float:
    """A CSV cell as float; empty or unparsable cells are NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="tight")


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")


# ----------------------------------------------------------------------------- learning curves
def read_metrics_csv(path: Path) -> list[dict[str, str]]:
    """Rows of ``RUN/metrics.csv`` as dicts of strings (cells may be empty)."""
    path = Path(path)
    if not path.is_file():
        raise MedtlError(f"{path} not found: learning curves need the run's metrics.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _epochs(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array(
        [_float(r.get("epoch", i)) if "epoch" in r else float(i) for i, r in enumerate(rows)]
    )


def detect_unfreeze_epoch(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """First epoch whose ``encoder_trainable_stages`` is larger than the previous recorded
    value (empty cells skipped); None when the column is absent or never increases."""
    epochs = _epochs(rows)
    previous = math.nan
    for epoch, row in zip(epochs, rows, strict=True):
        stages = _float(row.get("encoder_trainable_stages"))
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
    y = np.array([_float(r.get(column)) for r in rows])
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
    fig = _new_figure(11, 4.2)
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
            _note(ax, "no epochs recorded" if not rows else f"no {ylabel} columns in metrics.csv")
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
    return _save(learning_curves_figure(read_metrics_csv(metrics_csv), unfreeze_epoch), out)


# ----------------------------------------------------------------------------- confusion matrix
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
    fig = _new_figure(side + 1.0, side)
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
    return _save(confusion_matrix_figure(cm, classes, normalise), out)


# ----------------------------------------------------------------------------- ROC
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
    fig = _new_figure(5.8, 5.2)
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
    return _save(roc_figure(y_true, probs, classes), out)


# ----------------------------------------------------------------------------- Dice histogram
def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return np.clip(v[np.isfinite(v)], 0.0, 1.0)


def dice_histogram_figure(
    dice: Sequence[float], by_class: Mapping[str, Sequence[float]] | None = None
) -> Figure:
    """Histogram of per-image Dice on [0, 1] (NaN ignored) with mean and median lines;
    stacked by class when ``by_class`` is given."""
    values = _finite(dice)
    n_nan = int(np.asarray(dice, dtype=float).size - values.size)
    bins = np.linspace(0.0, 1.0, 21)
    fig = _new_figure(6.4, 4.2)
    ax = fig.subplots()
    if by_class:
        parts = [(name, _finite(v)) for name, v in by_class.items()]
        labels = [
            f"{name} (n={v.size}, mean {v.mean():.2f})" if v.size else f"{name} (n=0)"
            for name, v in parts
        ]
        colours = [PALETTE[i % len(PALETTE)] for i in range(len(parts))]
        ax.hist(
            [v for _, v in parts],
            bins=bins,
            stacked=True,
            color=colours,
            label=labels,
            edgecolor="white",
        )
    elif values.size:
        ax.hist(
            values,
            bins=bins,
            color=PALETTE[0],
            edgecolor="white",
            label=f"images (n={values.size})",
        )
    if values.size:
        ax.axvline(
            values.mean(),
            color="black",
            linestyle="--",
            linewidth=1.3,
            label=f"mean {values.mean():.3f}",
        )
        ax.axvline(
            np.median(values),
            color="#777777",
            linestyle=":",
            linewidth=1.6,
            label=f"median {np.median(values):.3f}",
        )
        ax.legend(fontsize=8, loc="upper left")
    else:
        _note(ax, "no finite Dice values")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Dice")
    ax.set_ylabel("images")
    ax.grid(alpha=0.3, axis="y")
    ignored = f", {n_nan} NaN ignored" if n_nan else ""
    ax.set_title(f"Per-image Dice (n={values.size}{ignored})")
    return fig


def dice_histogram(
    dice: Sequence[float], out: Path, by_class: dict[str, Sequence[float]] | None = None
) -> Path:
    """PNG of the per-image Dice histogram; returns ``out``."""
    return _save(dice_histogram_figure(dice, by_class), out)


# ----------------------------------------------------------------------------- case grids
def select_cases(scores: Sequence[float], k: int = 4) -> dict[str, list[int]]:
    """Indices of the ``k`` best, ``k`` closest to the median and ``k`` worst scores.

    NaN scores are never picked and the three groups never share an index: with fewer than
    ``3k`` finite scores they are shared out (best, worst, median in that order), so each
    group gets fewer. ``best`` is highest first, ``worst`` lowest first, ``median`` closest
    first; ties go to the lower index.
    """
    s = np.asarray(scores, dtype=float).ravel()
    valid = [int(i) for i in np.flatnonzero(np.isfinite(s))]
    n = len(valid)
    if n == 0 or k <= 0:
        return {"best": [], "median": [], "worst": []}
    if n >= 3 * k:
        n_best = n_worst = n_median = k
    else:
        base, extra = divmod(n, 3)
        n_best, n_worst, n_median = base + (extra >= 1), base + (extra >= 2), base
    descending = sorted(valid, key=lambda i: (-s[i], i))
    best = descending[:n_best]
    rest = descending[n_best:]
    worst = sorted(rest, key=lambda i: (s[i], i))[:n_worst]
    middle = [i for i in rest if i not in set(worst)]
    centre = float(np.median(s[valid]))
    median = sorted(middle, key=lambda i: (abs(s[i] - centre), i))[:n_median]
    return {"best": best, "median": median, "worst": worst}


def _as_display(img: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) from grey/RGB/RGBA, bool, uint8 or any numeric array."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = a.astype(float)
        finite = a[np.isfinite(a)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        a = np.nan_to_num((a - lo) / (hi - lo if hi > lo else 1.0) * 255, nan=0.0)
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(
            f"expected an image of shape (H, W) or (H, W, 3), got {np.asarray(img).shape}"
        )
    return a


def overlay_grid_figure(
    items: Sequence[tuple[str, np.ndarray]],
    ncols: int = 4,
    *,
    title: str = "Predicted masks on images",
) -> Figure:
    """A grid of titled RGB images; a title starting ``best``/``median``/``worst`` is coloured."""
    ncols = max(1, min(ncols, len(items) or 1))
    nrows = max(1, math.ceil(len(items) / ncols))
    aspect = float(
        np.median([np.shape(img)[0] / max(1, np.shape(img)[1]) for _, img in items] or [1.0])
    )
    fig = _new_figure(3.0 * ncols, (3.0 * min(max(aspect, 0.5), 1.5) + 0.5) * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    if not items:
        _note(axes[0], "no cases to show")
    for ax, (caption, img) in zip(axes, items, strict=False):
        ax.imshow(_as_display(img), interpolation="nearest")
        colour = GROUP_COLOURS.get(caption.split(":", 1)[0].strip().lower(), "black")
        ax.set_title(textwrap.fill(caption, 30), fontsize=9, color=colour)
    fig.suptitle(title)
    return fig


def overlay_grid(
    items: list[tuple[str, np.ndarray]],
    out: Path,
    ncols: int = 4,
    *,
    title: str = "Predicted masks on images",
) -> Path:
    """PNG grid of titled images (e.g. ``"best: benign (12) Dice 0.95"``); returns ``out``."""
    return _save(overlay_grid_figure(items, ncols, title=title), out)


# ----------------------------------------------------------------------------- GIF
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, font: Any) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _panel(array: np.ndarray | None, size: int, mask: bool, label: str, font: Any) -> Image.Image:
    if array is None:
        panel = Image.new("RGB", (size, size), (45, 45, 45))
        label = f"{label}: none"
    elif mask:
        m = (np.asarray(array) > 0).astype(np.uint8) * 255
        panel = (
            Image.fromarray(m, mode="L")
            .resize((size, size), Image.Resampling.NEAREST)
            .convert("RGB")
        )
    else:
        panel = Image.fromarray(_as_display(array), mode="RGB").resize(
            (size, size), Image.Resampling.BILINEAR
        )
    draw = ImageDraw.Draw(panel)
    box = draw.textbbox((3, 2), label, font=font)
    draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
    draw.text((3, 2), label, fill=(255, 210, 0), font=font)
    return panel


def predictions_frame(
    image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None, caption: str, size: int = 160
) -> Image.Image:
    """One RGB frame: caption strip on top of ``image | ground truth | prediction``."""
    font = _font()
    frame = Image.new("RGB", (3 * size, size + CAPTION_HEIGHT), (255, 255, 255))
    for i, (arr, is_mask, label) in enumerate(
        ((image, False, "image"), (truth, True, "truth"), (pred, True, "pred"))
    ):
        frame.paste(_panel(arr, size, is_mask, label, font), (i * size, CAPTION_HEIGHT))
    draw = ImageDraw.Draw(frame)
    draw.text(
        (4, CAPTION_HEIGHT // 2),
        _fit_text(draw, caption, 3 * size - 8, font),
        fill=(0, 0, 0),
        font=font,
        anchor="lm",
    )
    return frame


def predictions_gif(
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]],
    out: Path,
    size: int = 160,
    duration_ms: int = 700,
) -> Path:
    """Animated GIF, one frame per ``(image, pred, truth_or_None, caption)`` tuple (note: the
    tuple holds the prediction before the optional truth, while the panels read left to right
    ``image | truth | pred``); at most 24 frames, each ``3 * size`` wide and
    ``size + CAPTION_HEIGHT`` high; masks white on black, a missing truth is a grey panel.
    Returns ``out``.

    GIF encoders merge identical consecutive frames, so give frames distinct captions.
    """
    if not frames:
        raise ValueError("predictions_gif needs at least one frame")
    images = [
        predictions_frame(img, pred, truth, caption, size)
        for img, pred, truth, caption in frames[:MAX_GIF_FRAMES]
    ]
    first, rest = images[0], images[1:]
    return atomic_write(
        Path(out),
        lambda p: first.save(
            p, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=0
        ),
    )
