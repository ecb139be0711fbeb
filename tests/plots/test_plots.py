"""Tests for medtl.plots: the files decode, and the plotted data is the data given."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from medtl import plots
from medtl.utils.errors import MedtlError

NAN = float("nan")


def _png(path: Path, min_w: int = 300, min_h: int = 200) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        assert im.width >= min_w and im.height >= min_h
        assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
        return im.copy()


def _lines(ax) -> dict[str, tuple[list[float], list[float]]]:
    return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()}


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- learning curves
CSV = """epoch,train_loss,val_loss,val_dice,val_iou,encoder_trainable_stages,lr_encoder,lr_decoder+heads,train_seg_loss
0,1.0,1.2,0.10,0.05,0.0,0.0001,0.001,0.9
1,0.8,,0.30,0.20,0.0,0.0001,0.001,0.7
2,0.6,0.9,0.50,0.35,3.0,0.0001,0.001,0.5
3,0.5,0.8,,0.40,3.0,0.0001,0.001,0.4
"""


def test_detect_unfreeze_epoch():
    rows = [
        {"epoch": "0", "encoder_trainable_stages": "0.0"},
        {"epoch": "1", "encoder_trainable_stages": ""},
        {"epoch": "2", "encoder_trainable_stages": "0.0"},
        {"epoch": "3", "encoder_trainable_stages": "2.0"},
        {"epoch": "4", "encoder_trainable_stages": "5.0"},
    ]
    assert plots.detect_unfreeze_epoch(rows) == 3
    assert (
        plots.detect_unfreeze_epoch(
            [
                {"epoch": 0, "encoder_trainable_stages": 5},
                {"epoch": 1, "encoder_trainable_stages": 5},
            ]
        )
        is None
    )
    assert plots.detect_unfreeze_epoch([{"epoch": "0", "train_loss": "1"}]) is None  # column absent
    assert plots.detect_unfreeze_epoch([]) is None
    # empty cell between 0 and 3 still counts as an increase at the next recorded epoch
    assert (
        plots.detect_unfreeze_epoch(
            [
                {"epoch": "0", "encoder_trainable_stages": "0"},
                {"epoch": "1", "encoder_trainable_stages": ""},
                {"epoch": "2", "encoder_trainable_stages": "3"},
            ]
        )
        == 2
    )


def test_learning_curves_series_and_unfreeze(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(CSV)
    fig = plots.learning_curves_figure(plots.read_metrics_csv(csv_path))
    ax_loss, ax_metric = fig.axes
    loss = _lines(ax_loss)
    assert loss["train loss"] == ([0, 1, 2, 3], [1.0, 0.8, 0.6, 0.5])
    assert loss["val loss"] == ([0, 2, 3], [1.2, 0.9, 0.8])  # empty cell dropped
    assert loss["train seg loss"][1] == [0.9, 0.7, 0.5, 0.4]
    assert "train cls loss" not in loss
    assert loss[plots.UNFREEZE_LABEL][0] == [2, 2]
    metric = _lines(ax_metric)
    assert metric["Dice"] == ([0, 1, 2], [0.1, 0.3, 0.5])
    assert metric["IoU"][1] == [0.05, 0.2, 0.35, 0.4]
    assert "AUROC" not in metric and "accuracy" not in metric
    assert metric[plots.UNFREEZE_LABEL][0] == [2, 2]
    assert _unfreeze_in_legend(ax_loss) and _unfreeze_in_legend(ax_metric)
    assert (
        ax_loss.get_xlabel() == "epoch"
        and ax_loss.get_title()
        and ax_metric.get_ylabel() == "score"
    )

    out = plots.learning_curves(csv_path, tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png"
    assert _png(out).size == (11 * plots.DPI, round(4.2 * plots.DPI))
    _no_temp_files(out.parent)


def _unfreeze_in_legend(ax) -> bool:
    return plots.UNFREEZE_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]


def test_learning_curves_explicit_epoch_and_missing_columns(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,train_loss,val_acc,val_macro_f1\n0,2.0,0.5,\n1,1.5,0.6,0.55\n")
    fig = plots.learning_curves_figure(plots.read_metrics_csv(csv_path), unfreeze_epoch=1)
    ax_loss, ax_metric = fig.axes
    assert _lines(ax_loss)[plots.UNFREEZE_LABEL][0] == [1, 1]
    assert _lines(ax_metric)["macro F1"] == ([1], [0.55])
    # no unfreeze and a single series: still readable, no crash
    csv_path.write_text("epoch,val_loss\n0,1.0\n1,\n")
    fig = plots.learning_curves_figure(plots.read_metrics_csv(csv_path))
    assert plots.UNFREEZE_LABEL not in _lines(fig.axes[0])
    assert any("no score columns" in t.get_text() for t in fig.axes[1].texts)
    _png(plots.learning_curves(csv_path, tmp_path / "c.png"))
    csv_path.write_text("epoch,train_loss,val_loss\n0,900.0,1.0\n1,0.5,0.6\n2,0.4,0.5\n")
    assert (
        plots.learning_curves_figure(plots.read_metrics_csv(csv_path)).axes[0].get_yscale() == "log"
    )
    csv_path.write_text("epoch,train_loss\n")  # header only
    _png(plots.learning_curves(csv_path, tmp_path / "empty.png"), min_h=100)
    with pytest.raises(MedtlError, match="missing.csv"):
        plots.learning_curves(tmp_path / "missing.csv", tmp_path / "x.png")


# ----------------------------------------------------------------------------- confusion matrix
def test_confusion_matrix_normalisation_and_cells(tmp_path):
    cm = [[8, 2, 0], [1, 3, 0], [0, 0, 0]]
    np.testing.assert_allclose(
        plots.normalise_rows(cm), [[0.8, 0.2, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 0.0]]
    )
    fig = plots.confusion_matrix_figure(cm, ["benign", "malignant", "normal"])
    ax = fig.axes[0]
    texts = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    assert (
        texts[(0, 0)] == "8\n80.0%" and texts[(1, 0)] == "1\n25.0%" and texts[(2, 2)] == "0\n0.0%"
    )
    np.testing.assert_allclose(ax.images[0].get_array(), plots.normalise_rows(cm))
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["benign", "malignant", "normal"]
    counts = (
        plots.confusion_matrix_figure(cm, ["a", "b", "c"], normalise=False)
        .axes[0]
        .images[0]
        .get_array()
    )
    np.testing.assert_array_equal(counts, cm)
    _png(plots.confusion_matrix_plot(cm, ["benign", "malignant", "normal"], tmp_path / "cm.png"))
    with pytest.raises(ValueError, match="shape"):
        plots.confusion_matrix_figure(cm, ["a", "b"])


# ----------------------------------------------------------------------------- ROC
def test_roc_curve_with_ties_matches_hand_value():
    y = [0, 0, 1, 1, 1, 0]
    s = [0.1, 0.4, 0.4, 0.8, 0.4, 0.2]
    fpr, tpr, auc = plots.roc_curve(y, s)
    # pairs (pos, neg): 0.8 beats all 3; each 0.4 beats 0.1 and 0.2 and ties 0.4 -> (3 + 2 * 2.5) / 9
    assert auc == pytest.approx(8 / 9)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1, 1, 1])
    assert plots.roc_curve([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1])[2] == 1.0
    assert plots.roc_curve([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])[2] == 0.5
    assert math.isnan(plots.roc_curve([1, 1], [0.2, 0.3])[2])
    assert plots.roc_curve([1, 0, 0], [0.9, NAN, 0.1])[2] == 1.0  # NaN score dropped


def test_roc_plot_legend_shows_auc(tmp_path):
    y = np.array([0, 0, 1, 1, 1, 0, 2, 2])
    p1 = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.2, 0.1, 0.1])
    probs = np.stack([1 - p1 - 0.05, p1, np.full(8, 0.05)], axis=1)
    probs[6:, 2] = 0.9  # class 2 perfectly separated
    fig = plots.roc_figure(y, probs, ["benign", "malignant", "normal"])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    _, _, auc1 = plots.roc_curve(y == 1, probs[:, 1])
    assert f"malignant (AUC = {auc1:.3f})" in legend
    assert "normal (AUC = 1.000)" in legend and "chance" in legend
    assert _lines(fig.axes[0])["chance"] == ([0, 1], [0, 1])
    out = plots.roc_plot(y, probs, ["benign", "malignant", "normal"], tmp_path / "roc.png")
    _png(out)
    # binary scores as 1-D: one curve for the positive class
    fig = plots.roc_figure(np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.6, 0.7]), ["neg", "pos"])
    assert "pos (AUC = 0.750)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


# ----------------------------------------------------------------------------- Dice histogram
def test_dice_histogram_ignores_nan_and_marks_mean_median(tmp_path):
    dice = [0.9, 0.8, NAN, 0.1, 0.95, 0.85]
    fig = plots.dice_histogram_figure(dice)
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches) == 5
    lines = _lines(ax)
    assert lines["mean 0.720"][0] == [pytest.approx(0.72)] * 2
    assert lines["median 0.850"][0] == [pytest.approx(0.85)] * 2
    assert "1 NaN ignored" in ax.get_title() and ax.get_xlim() == (0, 1)
    _png(plots.dice_histogram(dice, tmp_path / "dice.png"))

    by_class = {"benign": [0.9, 0.8, NAN], "malignant": [0.1, 0.95, 0.85]}
    fig = plots.dice_histogram_figure(dice, by_class)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"benign (n=2, mean 0.85)", "malignant (n=3, mean 0.63)"} <= set(labels)
    _png(plots.dice_histogram(dice, tmp_path / "dice_cls.png", by_class=by_class))
    _png(plots.dice_histogram([NAN], tmp_path / "dice_none.png"), min_h=100)


# ----------------------------------------------------------------------------- cases
def test_select_cases_hand_example_with_nan():
    scores = [0.9, NAN, 0.1, 0.5, 0.7, 0.3, NAN, 0.55, 0.95]
    # finite, high to low: 8(.95) 0(.9) 4(.7) 7(.55) 3(.5) 5(.3) 2(.1); median 0.55
    assert plots.select_cases(scores, k=2) == {"best": [8, 0], "median": [7, 3], "worst": [2, 5]}
    picked = plots.select_cases(scores, k=3)  # 7 finite < 9: shared out 3 / 2 worst / 2 median
    assert picked == {"best": [8, 0, 4], "median": [7, 3], "worst": [2, 5]}
    assert plots.select_cases([0.2, NAN, 0.8], k=4) == {"best": [2], "median": [], "worst": [0]}
    assert plots.select_cases([NAN, NAN]) == {"best": [], "median": [], "worst": []}
    many = plots.select_cases(list(np.linspace(0, 1, 20)), k=4)
    flat = many["best"] + many["median"] + many["worst"]
    assert len(flat) == len(set(flat)) == 12


def test_overlay_grid(tmp_path):
    rng = np.random.default_rng(0)
    items = [
        (f"best: benign ({i}) Dice 0.9{i}", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
        for i in range(5)
    ]
    items.append(("worst: grey float image", rng.random((30, 30))))
    fig = plots.overlay_grid_figure(items, ncols=4)
    (ax,) = fig.axes  # one axes holds every tile and caption
    shown, captions = ax.images, [t.get_text() for t in ax.texts]
    assert len(shown) == 6 and captions[0] == "best: benign (0) Dice 0.90"
    assert [t.get_color() for t in ax.texts][-1] == plots.segmentation.GROUP_COLOURS["worst"]
    np.testing.assert_array_equal(shown[0].get_array(), items[0][1])
    assert shown[5].get_array().shape == (30, 30, 3)
    # tiles keep their aspect, in reading order: 4 per row, the next row below
    left, right, bottom, top = shown[0].get_extent()
    assert (right - left) / (bottom - top) == pytest.approx(50 / 40)
    assert shown[1].get_extent()[0] > right and shown[4].get_extent()[3] > bottom
    im = _png(plots.overlay_grid(items, tmp_path / "grid.png", ncols=4))
    assert im.size == (
        12 * plots.DPI,
        round(((3.0 * 0.8 + 0.5) * 2 + 0.4) * plots.DPI),
    )  # rows follow the 4:5 images
    _png(plots.overlay_grid([], tmp_path / "none.png"), min_w=100, min_h=100)


# ----------------------------------------------------------------------------- GIF
def test_predictions_gif_frames_and_size(tmp_path):
    rng = np.random.default_rng(1)
    frames = []
    for i in range(26):
        img = rng.integers(0, 255, (64, 48), dtype=np.uint8)
        pred = np.zeros((64, 48), bool)
        pred[5:50, 5 : 30 + i % 5] = True
        truth = None if i == 1 else pred.copy()
        frames.append((img, pred, truth, f"case {i}: benign Dice {0.5 + i / 100:.2f}"))
    out = plots.predictions_gif(frames, tmp_path / "pred.gif", size=64, duration_ms=300)
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.size == (3 * 64, 64 + plots.CAPTION_HEIGHT)
        assert im.n_frames == plots.MAX_GIF_FRAMES == 24
        assert im.info["duration"] == 300
        first = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)][:2]
    body = plots.CAPTION_HEIGHT + 30  # below the panel labels
    # frame 0: prediction panel (right) and truth panel (middle) show the same white box
    assert first[0][body, 64 + 20].min() > 200 and first[0][body, 128 + 20].min() > 200
    assert first[0][body, 64 + 60].max() < 50  # outside the box: black
    # frame 1: no truth -> uniform grey panel
    assert 30 < first[1][body, 64 + 20].mean() < 70
    assert np.asarray(plots.predictions_frame(frames[0][0], frames[0][1], None, "x", 64)).shape == (
        64 + plots.CAPTION_HEIGHT,
        192,
        3,
    )
    with pytest.raises(ValueError):
        plots.predictions_gif([], tmp_path / "none.gif")
    _no_temp_files(tmp_path)
