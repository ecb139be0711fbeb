"""Figures of a run and of a comparison: learning curves, confusion matrix, ROC, Dice
histogram, case grids, GIF, and the comparison report's summary figures.

Every ``*_figure`` function builds and returns a matplotlib ``Figure`` (tests read the
plotted data back from it); the matching writer saves it as a PNG atomically and returns
the written path. No window ever opens and pyplot's state is left alone (see
:mod:`medtl.plots.common`).

Modules: ``common`` (palette, figure creation, saving), ``curves`` (learning curves),
``classification`` (confusion matrix, ROC), ``reliability`` (calibration), ``segmentation`` (Dice histogram, case grids),
``gif`` (prediction GIF), ``comparison`` (figures of a ``medtl compare`` folder),
``preview`` (the data set grid of ``medtl audit --preview``).

Example::

    from medtl import plots
    plots.learning_curves(run / "metrics.csv", run / "eval" / "test" / "curves.png")
    plots.roc_plot(y, probs, ["benign", "malignant", "normal"], run / "roc.png")
"""

from medtl.plots.classification import (
    confusion_matrix_figure,
    confusion_matrix_plot,
    normalise_rows,
    roc_curve,
    roc_figure,
    roc_plot,
)
from medtl.plots.common import DPI, PALETTE, as_display, new_figure, save_figure
from medtl.plots.comparison import (
    comparison_curves_figure,
    comparison_per_image_figure,
    comparison_summary_figure,
)
from medtl.plots.curves import (
    UNFREEZE_LABEL,
    detect_unfreeze_epoch,
    learning_curves,
    learning_curves_figure,
    read_metrics_csv,
)
from medtl.plots.gif import CAPTION_HEIGHT, MAX_GIF_FRAMES, predictions_frame, predictions_gif
from medtl.plots.preview import dataset_preview_figure, dataset_preview_plot
from medtl.plots.reliability import reliability_figure, reliability_plot
from medtl.plots.segmentation import (
    dice_histogram,
    dice_histogram_figure,
    overlay_grid,
    overlay_grid_figure,
    select_cases,
)

__all__ = [
    "CAPTION_HEIGHT",
    "DPI",
    "MAX_GIF_FRAMES",
    "PALETTE",
    "UNFREEZE_LABEL",
    "as_display",
    "comparison_curves_figure",
    "comparison_per_image_figure",
    "comparison_summary_figure",
    "confusion_matrix_figure",
    "confusion_matrix_plot",
    "dataset_preview_figure",
    "dataset_preview_plot",
    "detect_unfreeze_epoch",
    "dice_histogram",
    "dice_histogram_figure",
    "learning_curves",
    "learning_curves_figure",
    "new_figure",
    "normalise_rows",
    "overlay_grid",
    "overlay_grid_figure",
    "predictions_frame",
    "predictions_gif",
    "read_metrics_csv",
    "reliability_figure",
    "reliability_plot",
    "roc_curve",
    "roc_figure",
    "roc_plot",
    "save_figure",
    "select_cases",
]
