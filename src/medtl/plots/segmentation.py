"""Segmentation figures: the per-image Dice histogram and grids of best/median/worst cases."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medtl.plots.common import DPI, PALETTE, as_display, new_figure, note, save_figure

GROUP_COLOURS = {"best": PALETTE[2], "median": "#333333", "worst": PALETTE[3]}


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
    fig = new_figure(6.4, 4.2)
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
        note(ax, "no finite Dice values")
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
    return save_figure(dice_histogram_figure(dice, by_class), out)


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


CELL_IN = 3.0  # a tile's width in inches
CAPTION_IN = 0.5  # the caption band above each tile
TITLE_IN = 0.4  # the figure title's band
LEGEND_IN = 0.35  # the label legend's band at the bottom, when there is one


def overlay_grid_figure(
    items: Sequence[tuple[str, np.ndarray]],
    ncols: int = 4,
    *,
    title: str = "Predicted masks on images",
    legend: Sequence[tuple[str, Sequence[float]]] | None = None,
) -> Figure:
    """A grid of titled RGB images; a title starting ``best``/``median``/``worst`` is coloured.
    ``legend``: ``(label name, RGB 0..1)`` of each label's colour (masks with several labels).

    One axes spans the figure in inches (y downwards) and holds an image per tile (nearest
    neighbour, aspect kept, centred in its cell) and a caption above it: a dozen small axes
    with a tight layout cost about five times as much to draw. Cells are
    :data:`CELL_IN` wide, as tall as the median image's aspect (clamped to 0.5-1.5) allows,
    plus :data:`CAPTION_IN` for the caption; the figure adds :data:`TITLE_IN` on top and,
    with a ``legend``, :data:`LEGEND_IN` below."""
    ncols = max(1, min(ncols, len(items) or 1))
    nrows = max(1, math.ceil(len(items) / ncols))
    aspect = float(
        np.median([np.shape(img)[0] / max(1, np.shape(img)[1]) for _, img in items] or [1.0])
    )
    cell_h = CELL_IN * min(max(aspect, 0.5), 1.5)
    legend_in = LEGEND_IN if legend else 0.0
    width, height = CELL_IN * ncols, (cell_h + CAPTION_IN) * nrows + TITLE_IN + legend_in
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    if not items:
        note(ax, "no cases to show")
    for k, (caption, img) in enumerate(items):
        row, col = divmod(k, ncols)
        _tile(ax, (col * CELL_IN, TITLE_IN + row * (cell_h + CAPTION_IN)), cell_h, caption, img)
    ax.set_xlim(0.0, width)  # the figure in inches, y downwards (after imshow, which moves them)
    ax.set_ylim(height, 0.0)
    fig.suptitle(title, y=1.0 - 0.08 / height, va="top")
    if legend:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=tuple(rgb), label=name) for name, rgb in legend]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8)
    return fig


def _tile(ax: Any, corner: tuple[float, float], cell_h: float, caption: str, img: Any) -> None:
    """One tile of :func:`overlay_grid_figure`: its caption at the top of the cell whose
    top-left corner (inches) is ``corner``, the image below it, aspect kept and centred."""
    pad = 0.05  # inches between neighbouring tiles
    x0, y0 = corner
    shown = as_display(img)
    h, w = shown.shape[:2]
    scale = min((CELL_IN - 2 * pad) / max(w, 1), (cell_h - pad) / max(h, 1))
    left = x0 + (CELL_IN - w * scale) / 2
    top = y0 + CAPTION_IN + (cell_h - pad - h * scale) / 2
    extent = (left, left + w * scale, top + h * scale, top)
    ax.imshow(shown, interpolation="nearest", extent=extent, aspect="auto")
    colour = GROUP_COLOURS.get(caption.split(":", 1)[0].strip().lower(), "black")
    # parse_math=False: a "$" in a file name is text, not broken mathtext
    ax.text(
        x0 + CELL_IN / 2,
        y0 + CAPTION_IN - 0.04,
        textwrap.fill(caption, 30),
        ha="center",
        va="bottom",
        fontsize=9,
        color=colour,
        parse_math=False,
    )


def overlay_grid(
    items: list[tuple[str, np.ndarray]],
    out: Path,
    ncols: int = 4,
    *,
    title: str = "Predicted masks on images",
    legend: Sequence[tuple[str, Sequence[float]]] | None = None,
) -> Path:
    """PNG grid of titled images (e.g. ``"best: benign (12) Dice 0.95"``); returns ``out``."""
    return save_figure(overlay_grid_figure(items, ncols, title=title, legend=legend), out)
