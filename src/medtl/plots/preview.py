"""The data set preview of ``medtl audit DATA --preview``: a grid of sample images with
their mask outlines, one outline colour per class (the dataset figures of the VGG-FCN study).

Example::

    >>> import numpy as np
    >>> img = np.zeros((32, 32), np.uint8)
    >>> mask = np.zeros((32, 32), bool); mask[8:20, 8:20] = True
    >>> fig = dataset_preview_figure([img, img], [mask, None], ["benign", "normal"], ["a", "b"])
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medtl.plots.common import PALETTE, as_display, new_figure, save_figure

MAX_COLUMNS = 4
NO_CLASS = "-"  # the label of samples without one (a segmentation-only data set)


def class_colours(labels: Sequence[str | None]) -> dict[str, str]:
    """One palette colour per class, in sorted class order (a class keeps its colour)."""
    names = sorted({label or NO_CLASS for label in labels})
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _panel(ax, image: np.ndarray, mask: np.ndarray | None, colour: str, title: str) -> None:
    ax.imshow(as_display(image), interpolation="nearest")
    if mask is not None and mask.any():
        # a contour at 0.5 of the 0/1 mask: the outline, the image stays visible inside it
        ax.contour(np.asarray(mask, float), levels=[0.5], colors=[colour], linewidths=1.3)
    elif mask is not None:
        title += " (empty mask)"
    ax.set_title(title, fontsize=7, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)


def dataset_preview_figure(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    labels: Sequence[str | None],
    titles: Sequence[str],
    heading: str = "",
) -> Figure:
    """One panel per image (up to :data:`MAX_COLUMNS` a row): the image, its mask's outline
    (``None``: a sample without a mask) in its class's colour, its title; a legend of the
    classes below. ``heading`` goes above the grid."""
    n = len(images)
    if not n == len(masks) == len(labels) == len(titles):
        raise ValueError("images, masks, labels and titles must have the same length")
    cols = max(1, min(MAX_COLUMNS, n))
    rows = max(1, math.ceil(n / cols))
    fig = new_figure(2.4 * cols, 2.5 * rows + 0.6)
    fig.set_layout_engine("constrained")  # keeps the figure legend outside the panels
    colours = class_colours(labels)
    for i in range(n):
        label = labels[i] or NO_CLASS
        ax = fig.add_subplot(rows, cols, i + 1)
        _panel(ax, images[i], masks[i], colours[label], titles[i])
    if any(label is not None for label in labels):
        handles = [Line2D([0], [0], color=c, lw=2, label=name) for name, c in colours.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6))
    if heading:
        fig.suptitle(heading, fontsize=9)
    return fig


def dataset_preview_plot(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    labels: Sequence[str | None],
    titles: Sequence[str],
    out: Path,
    heading: str = "",
) -> Path:
    """:func:`dataset_preview_figure` saved as a PNG at ``out``; returns the path."""
    return save_figure(dataset_preview_figure(images, masks, labels, titles, heading), out)


def write_preview(
    root: str | Path,
    out: str | Path | None = None,
    layout: str = "auto",
    n: int = 16,
    seed: int = 0,
) -> Path:
    """``medtl audit DATA --preview``: the preview grid of the data set under ``root`` written
    to ``out`` (default ``DATA_preview.png`` beside it); returns the path.

    Example::

        >>> write_preview("Dataset_BUSI_with_GT").name     # doctest: +SKIP
        'Dataset_BUSI_with_GT_preview.png'
    """
    from medtl.data.audit.preview import preview_path, preview_samples

    images, masks, labels, titles, heading = preview_samples(root, layout, n, seed)
    target = Path(out) if out else preview_path(root)
    return dataset_preview_plot(images, masks, labels, titles, target, heading)
