"""Reliability diagram: accuracy against confidence per bin, with the ECE in the title.

The bins and the ECE come from :mod:`medtl.metrics.calibration` (one definition); a
perfectly calibrated model lies on the diagonal. Bars below the diagonal are
over-confident bins, above it under-confident ones; the lower panel shows how many images
each bin holds.

After ``medtl evaluate RUN --calibrate`` keeps a temperature ``T`` (``RUN/calibration.json``),
:func:`reliability_plots` writes a second diagram, ``reliability_calibrated.png``, of the
same images at ``softmax(z / T)`` (:func:`medtl.metrics.calibration.scaled_probabilities`);
``reliability.png`` always shows the network's own probabilities (``T = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medtl.metrics.calibration import (
    ECE_BINS,
    expected_calibration_error,
    reliability_bins,
    scaled_probabilities,
)
from medtl.plots.common import PALETTE, new_figure, note, save_figure

__all__ = ["CALIBRATED_FILE", "reliability_figure", "reliability_plot", "reliability_plots"]
CALIBRATED_FILE = "reliability_calibrated.png"


def reliability_figure(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    n_bins: int = ECE_BINS,
    title: str = "Reliability",
) -> Figure:
    """Top-label reliability diagram of ``probs`` (N, C) against labels ``y_true`` (N,);
    ``title`` starts the title (n, bins and ECE follow)."""
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probs, dtype=float).reshape(y.size, -1)
    b = reliability_bins(y, p, n_bins)
    fig = new_figure(5.2, 6.0)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = (b["edges"][:-1] + b["edges"][1:]) / 2
    width = 1.0 / n_bins
    used = b["count"] > 0
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="perfect")
    if used.any():
        ax.bar(
            centres[used],
            b["accuracy"][used],
            width=width * 0.9,
            color=PALETTE[0],
            alpha=0.8,
            label="accuracy",
        )
        ax.plot(
            b["confidence"][used],
            b["accuracy"][used],
            "o",
            color=PALETTE[1],
            markersize=4,
            label="mean confidence",
        )
    else:
        note(ax, "no images")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_ylabel("accuracy of the bin")
    ax.grid(alpha=0.3)
    ece = expected_calibration_error(y, p, n_bins)
    ece_text = "n/a" if not np.isfinite(ece) else f"{ece:.3f}"
    ax.set_title(f"{title} (n={y.size}, {n_bins} bins, ECE {ece_text})")
    ax.legend(fontsize=8, loc="upper left")
    hist.bar(centres, b["count"], width=width * 0.9, color="#777777")
    hist.set_xlabel("confidence (largest class probability)")
    hist.set_ylabel("images")
    return fig


def reliability_plot(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, out: Path, n_bins: int = ECE_BINS
) -> Path:
    """PNG of :func:`reliability_figure`; returns ``out``."""
    return save_figure(reliability_figure(y_true, probs, n_bins), out)


def reliability_plots(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    out_dir: Path,
    temperature: float | None = None,
) -> list[Path]:
    """``out_dir/reliability.png`` of ``probs`` and, when a ``temperature`` other than 1 is
    given (the one ``RUN/calibration.json`` stores), ``out_dir/reliability_calibrated.png``
    of the same images after temperature scaling; returns the paths written."""
    written = [reliability_plot(y_true, probs, Path(out_dir) / "reliability.png")]
    if temperature is not None and float(temperature) != 1.0:
        scaled = scaled_probabilities(np.asarray(probs, dtype=float), float(temperature))
        title = f"Reliability at T={float(temperature):.3g}"
        fig = reliability_figure(y_true, scaled, title=title)
        written.append(save_figure(fig, Path(out_dir) / CALIBRATED_FILE))
    return written
