"""What every figure shares: the headless backend, the palette, figure creation and saving.

Figures are made with ``matplotlib.figure.Figure`` rather than pyplot, so no window ever
opens, nothing lingers in pyplot's figure registry, and a user's own pyplot state (e.g. in
a notebook) is left alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # headless; never switch a user's live backend
    matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure

from medtl.utils.files import atomic_write

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


def save_figure(fig: Figure, out: Path) -> Path:
    """Write ``fig`` as PNG atomically, then drop its artists (the figure is done with)."""
    try:
        return atomic_write(Path(out), lambda p: fig.savefig(p, format="png", dpi=DPI))
    finally:
        fig.clear()


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches at :data:`DPI`, tight layout."""
    return Figure(figsize=(width, height), dpi=DPI, layout="tight")


def note(ax: Any, text: str) -> None:
    """Grey text in the middle of ``ax`` (says why a panel is empty)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")


def as_display(img: np.ndarray) -> np.ndarray:
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
