"""The report page of one run folder: results per evaluated split, data, training, config.

Run facts (data summary, split sizes, model, timings, best epoch, status) come from
``RUN/run.json``, written by training; a run made before medtl 0.2 has none, and the page
shows what ``config.yaml``, ``splits.json`` and ``metrics.csv`` give.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medtl import plots
from medtl.comparison import fmt
from medtl.plots.reliability import CALIBRATED_FILE
from medtl.reporting.cases import overlay_grid_png
from medtl.reporting.decisions import decision_tables, lesion_table
from medtl.reporting.html import figure, png_bytes, read_json, render
from medtl.utils.files import read_csv, read_records, to_float

NO_RUN_JSON = "no run.json (run made before medtl 0.2)"
EVAL_ORDER = {"test": 0, "external": 1, "val": 2}
SEG_METRICS = ("dice", "iou", "precision", "recall", "hd95")


def _file_or(path: Path, make: Callable[[], bytes]) -> bytes | None:
    """The PNG at ``path`` if evaluate wrote one, else ``make()`` (None when impossible)."""
    if path.is_file():
        return path.read_bytes()
    try:
        return make()
    except Exception:  # a figure that cannot be drawn from what is there is left out
        return None


# ----------------------------------------------------------------------------- results
def _seg_table(seg: Mapping[str, Any], unit: str = "px") -> dict[str, Any]:
    rows = []
    for k in SEG_METRICS:
        a = seg.get(k)
        if a:
            ci = f"{fmt(a.get('ci_low'))} – {fmt(a.get('ci_high'))}"
            name = f"HD95 ({unit})" if k == "hd95" else k
            stats = [fmt(a.get(s)) for s in ("mean", "std", "median")]
            rows.append([name, *stats, ci, str(a.get("n", ""))])
    return {"head": ["metric", "mean", "std", "median", "95% CI", "n"], "rows": rows}


def _label_table(per: Mapping[str, Any], unit: str = "px") -> list[dict[str, Any]]:
    """The per-label results of a label-map evaluation (summary.json's
    ``segmentation_per_label``): one row per label, each cell the mean with its 95% CI."""
    if not per:
        return []
    rows = []
    for name, scores in per.items():
        row: list[Any] = [name]
        for k in SEG_METRICS:
            a = scores.get(k) or {}
            row.append(
                {
                    "text": fmt(a.get("mean")),
                    "ci": f"[{fmt(a.get('ci_low'))}, {fmt(a.get('ci_high'))}]",
                }
            )
        rows.append(row)
    head = ["label", *(f"HD95 ({unit})" if k == "hd95" else k for k in SEG_METRICS)]
    return [{"head": head, "rows": rows}]


def _cls_tables(cls: Mapping[str, Any]) -> list[dict[str, Any]]:
    top = [
        ["accuracy", fmt(cls.get("accuracy"))],
        ["balanced accuracy", fmt(cls.get("balanced_accuracy"))],
        ["macro F1", fmt((cls.get("macro_avg") or {}).get("f1"))],
        ["AUROC (macro)", fmt(cls.get("auroc_macro"))],
    ]
    per = [
        [c, fmt(v.get("precision")), fmt(v.get("recall")), fmt(v.get("f1"))]
        + [str(v.get("support", "")), fmt(v.get("auroc"))]
        for c, v in (cls.get("per_class") or {}).items()
    ]
    head = ["class", "precision", "recall", "F1", "support", "AUROC"]
    return [{"head": ["metric", "value"], "rows": top}, {"head": head, "rows": per}]


def _cls_figures(split_dir: Path, cls: Mapping[str, Any], names: list[str], rows: list) -> list:
    figs = []
    data = _file_or(
        split_dir / "confusion_matrix.png",
        lambda: png_bytes(plots.confusion_matrix_figure(cls["confusion_matrix"], names)),
    )
    if data:
        figs.append(figure(data, "confusion matrix", "Confusion matrix (rows: true class)"))
    if rows and names and all(f"p_{c}" in rows[0] for c in names):
        known = [r for r in rows if r.get("class") in names]
        y = np.array([names.index(r["class"]) for r in known])
        p = np.array([[to_float(r[f"p_{c}"]) for c in names] for r in known])
        if len(set(y.tolist())) >= 2:
            data = _file_or(split_dir / "roc.png", lambda: png_bytes(plots.roc_figure(y, p, names)))
            if data:
                figs.append(figure(data, "ROC curves", "One-vs-rest ROC curves"))
            data = _file_or(split_dir / "reliability.png", lambda: None)
            if data:
                ece = to_float(cls.get("ece"))
                caption = "Reliability diagram" + (f" (ECE {ece:.3f})" if ece == ece else "")
                figs.append(figure(data, "reliability diagram", caption))
    return figs


def _calibrated_figure(split_dir: Path, summary: Mapping[str, Any]) -> list:
    """``reliability_calibrated.png`` (evaluate after ``--calibrate`` kept a temperature)."""
    path, cal = split_dir / CALIBRATED_FILE, summary.get("calibration") or {}
    if not path.is_file() or not cal:
        return []
    s = cal.get("split") or {}
    caption = (
        f"Reliability after temperature scaling (T = {fmt(cal.get('temperature'))}, fitted "
        f"on val): ECE {fmt(s.get('ece_before'))} before, {fmt(s.get('ece_after'))} after"
    )
    return [figure(path.read_bytes(), "reliability diagram after temperature scaling", caption)]


def _eval_section(split_dir: Path, classes: list[str]) -> dict[str, Any]:
    """What the page shows for one ``eval/SPLIT`` folder: tables, figures, case grid."""
    summary = read_json(split_dir / "summary.json")
    split = summary.get("split", split_dir.name)
    rows = read_csv(split_dir / "per_image.csv")
    seg, cls = summary.get("segmentation"), summary.get("classification")
    unit = summary.get("distance_unit", "px")
    tables = ([_seg_table(seg, unit)] if seg else []) + (_cls_tables(cls) if cls else [])
    tables += _label_table(summary.get("segmentation_per_label") or {}, unit)
    tables += decision_tables(summary) + lesion_table(summary)  # calibration, lesions
    figs, cases = [], None
    if cls and cls.get("confusion_matrix"):
        figs += _cls_figures(split_dir, cls, cls.get("classes") or classes, rows)
        figs += _calibrated_figure(split_dir, summary)
    if seg and rows:
        dice = [to_float(r.get("dice")) for r in rows]
        data = _file_or(
            split_dir / "dice_histogram.png", lambda: png_bytes(plots.dice_histogram_figure(dice))
        )
        if data:
            figs.append(figure(data, "Dice histogram", "Per-image Dice"))
        data = _file_or(
            split_dir / "overlays_grid.png",
            lambda: overlay_grid_png(rows, [split_dir] * len(rows), split),
        )
        if data:
            caption = "Best, median and worst cases: " + (
                "each label in its colour (legend), ground-truth outline in green"
                if summary.get("segmentation_per_label")
                else "prediction in red, ground-truth outline in green"
            )
            cases = figure(data, "overlays", caption)
    return {
        "split": split,
        "n_images": summary.get("n_images", len(rows)),
        "tables": tables,
        "empty_rule": summary.get("empty_mask_rule") if seg else None,
        "threshold_note": _threshold_note(summary.get("seg_threshold")) if seg else None,
        "figures": figs,
        "cases": cases,
        "cams": _cam_grid(split_dir),
    }


def _cam_grid(split_dir: Path) -> dict[str, Any] | None:
    """The Grad-CAM grid ``medtl evaluate`` wrote for a classification head, if any."""
    path = split_dir / "cam_grid.png"
    if not path.is_file():
        return None
    caption = "Grad-CAM of the predicted class on the best and worst classified cases"
    return figure(path.read_bytes(), "Grad-CAM grid", caption)


# ----------------------------------------------------------------------------- decisions
DECISIONS_FILE = (
    "calibration.json"  # medtl.inference.decisions.CALIBRATION_FILE (no torch import here)
)


def _threshold_note(s: Mapping[str, Any] | None) -> str | None:
    """The mask threshold an evaluation used when one was stored (summary.json's
    ``seg_threshold``); None at the default 0.5."""
    if not s:
        return None
    return (
        f"Masks at threshold {fmt(s.get('value'))} ({s.get('rule')}, chosen on "
        f"{s.get('fitted_on')}; val Dice {fmt(s.get('val_dice_at_value'))} vs "
        f"{fmt(s.get('val_dice_at_default'))} at 0.5)."
    )


def _op_text(op: Mapping[str, Any]) -> str:
    per = op.get("per_class") or {}
    parts = [
        f"{c} p ≥ {fmt(r.get('threshold'), 4)} (val sensitivity {fmt(r.get('sensitivity'))}, "
        f"specificity {fmt(r.get('specificity'))})"
        for c, r in per.items()
    ]
    where = f"{op.get('name')}, chosen on {op.get('fitted_on', 'val')}"
    return f"{where} at T = {fmt(op.get('temperature'))}: " + "; ".join(parts)


def decision_pairs(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The decisions ``RUN/calibration.json`` stores, as (name, text) pairs: the mask
    threshold, the temperature (kept or not, with the validation ECE before and after) and
    the operating point per class; none for a run without decisions."""
    pairs = []
    st = doc.get("seg_threshold")
    if st:
        pairs.append(
            (
                "mask threshold",
                f"{fmt(st.get('value'), 4)} ({st.get('rule')}, on {st.get('n_images')} "
                f"{st.get('fitted_on')} images; val Dice {fmt(st.get('val_dice_at_value'))} "
                f"vs {fmt(st.get('val_dice_at_default'))} at 0.5)",
            )
        )
    t = doc.get("temperature")
    if t:
        text = (
            f"{fmt(t.get('value'), 4)} (min NLL on {t.get('n_images')} {t.get('fitted_on')} "
            f"images; val ECE {fmt(t.get('ece_before'))} -> {fmt(t.get('ece_after'))})"
        )
        if t.get("kept") is False:
            text = f"1 (not applied: {t.get('reason')})"
        pairs.append(("temperature", text))
    op = doc.get("operating_point")
    if op:
        pairs.append(("operating point", _op_text(op)))
    return pairs


# ----------------------------------------------------------------------------- data, training
def _split_table(splits: Mapping[str, Any]) -> dict[str, Any] | None:
    names = [n for n in ("train", "val", "test") if splits.get(n)]
    if not names:
        return None
    classes = sorted({e.get("label") or "-" for n in names for e in splits[n]})
    rows = [
        [c] + [sum((e.get("label") or "-") == c for e in splits[n]) for n in names] for c in classes
    ]
    rows.append(["all"] + [len(splits[n]) for n in names])
    classes_of_rows = [""] * len(classes) + ["total"]
    return {"head": ["class", *names], "rows": rows, "row_classes": classes_of_rows}


def _duplicates_line(dup: Mapping[str, Any]) -> str:
    if dup.get("enabled") is False:
        return "not grouped (data.group_duplicates=false)"
    n = dup.get("n_groups_with_duplicates") or 0
    if not n:
        return "none found"
    m = dup.get("n_images_in_them", "?")
    return f"{n} groups of near-duplicate images ({m} images), each kept in one split"


def _data_pairs(
    cfg: Mapping[str, Any], splits: Mapping[str, Any], facts: Mapping[str, Any]
) -> list:
    data_cfg, found = cfg.get("data", {}), facts.get("data") or {}
    pairs = [
        ("data", data_cfg.get("root")),
        ("layout", found.get("layout") or splits.get("layout", data_cfg.get("layout"))),
    ]
    if found.get("summary"):
        pairs.append(("found", found["summary"]))
    if found.get("duplicate_groups"):
        pairs.append(("duplicates", _duplicates_line(found["duplicate_groups"])))
    if found.get("mask_interpretation"):
        pairs.append(("masks", found["mask_interpretation"]))
    classes = found.get("classes") or splits.get("classes")
    if classes:
        pairs.append(("classes", ", ".join(classes)))
    if facts.get("split"):
        pairs.append(("split", " · ".join(f"{k} {v}" for k, v in facts["split"].items())))
    pairs.append(("split seed", splits.get("seed", data_cfg.get("seed"))))
    return pairs


def _model_line(model: Mapping[str, Any]) -> str:
    keys = ("task", "arch", "encoder", "strategy")
    line = " ".join(f"{k}={model[k]}" for k in keys if model.get(k) is not None)
    return f"{line}; weights: {model['weights']}" if model.get("weights") else line


def _finish_line(facts: Mapping[str, Any]) -> str | None:
    if facts.get("train_seconds") is None:
        return None
    text = f"finished in {to_float(facts['train_seconds']):.1f}s"
    if facts.get("best_epoch") is not None:
        text += f"; best epoch {facts['best_epoch']}"
    if facts.get("best_score") is not None:
        text += f", best {facts.get('monitor', 'score')}={to_float(facts['best_score']):.4f}"
    return text


def _training_pairs(cfg: Mapping[str, Any], facts: Mapping[str, Any], history: list) -> list:
    train = cfg.get("train", {})
    pairs = [("model", _model_line(facts["model"]))] if facts.get("model") else []
    layout = facts.get("memory_layout") or {}
    if layout.get("chosen"):
        probe = layout.get("probe_img_per_s") or {}
        measured = ", ".join(f"{k} {fmt(v, 1)} img/s" for k, v in probe.items())
        pairs.append(
            ("memory layout", layout["chosen"] + (f" (probe: {measured})" if measured else ""))
        )
    optimiser = f"{train.get('optimizer')}, lr {train.get('lr')}, {train.get('scheduler')} schedule"
    pairs.append(("optimiser", f"{optimiser}, batch {train.get('batch_size')}"))
    loss = train.get("loss") if cfg.get("task") != "classification" else train.get("cls_loss")
    pairs.append(("loss", loss))
    if facts.get("epochs"):
        seconds = [to_float(e.get("seconds")) for e in facts["epochs"]]
    else:
        seconds = [to_float(r.get("epoch_time_s")) for r in history]
    if seconds:
        pairs.append(("epochs run", f"{len(seconds)} ({fmt(sum(seconds), 1)} s of training)"))
    if facts.get("unfreeze_epochs"):
        pairs.append(("encoder unfrozen", "epoch " + ", ".join(map(str, facts["unfreeze_epochs"]))))
    finish = _finish_line(facts)
    if finish:
        pairs.append(("result", finish))
    return pairs


def _notice(facts: Mapping[str, Any]) -> str | None:
    """The 'did not finish' notice for a failed or still running run."""
    status = facts.get("status")
    if status == "failed":
        return "This run did not finish: it failed" + (
            f": {facts['error']}" if facts.get("error") else "."
        )
    if status == "running":
        return (
            "This run did not finish: it is still running (or was stopped); results may be missing."
        )
    return None


# ----------------------------------------------------------------------------- page
def run_html(run: Path) -> str:
    """The HTML page of one run folder."""
    run = Path(run)
    config_text = (run / "config.yaml").read_text(encoding="utf-8")
    cfg = yaml.safe_load(config_text) or {}
    facts, splits = read_json(run / "run.json"), read_json(run / "splits.json")
    eval_dirs = sorted(d for d in run.glob("eval/*") if (d / "summary.json").is_file())
    eval_dirs.sort(key=lambda d: (EVAL_ORDER.get(d.name, 3), d.name))
    history = read_csv(run / "metrics.csv")
    curves = None
    if history:
        data = png_bytes(plots.learning_curves_figure(history))
        curves = figure(
            data, "learning curves", "Loss (left) and validation metrics (right) per epoch"
        )
    invocations = read_records(run / "env.json")  # one per train/resume, oldest first
    env = dict(invocations[-1]) if invocations else {}
    env.pop("argv", None)
    if len(invocations) > 1:
        env["invocations"] = f"{len(invocations)} (started {invocations[0].get('time', '?')})"
    return render(
        "run.html",
        kicker="medtl run report",
        title=f"{run.parent.name}/{run.name}" if run.name.startswith("fold") else run.name,
        subtitle=_subtitle(cfg),
        run=str(run),
        headline=read_json(eval_dirs[0] / "summary.json") if eval_dirs else None,
        notice=_notice(facts),
        decisions=decision_pairs(read_json(run / DECISIONS_FILE)),
        evals=[_eval_section(d, list(splits.get("classes") or [])) for d in eval_dirs],
        data_pairs=_data_pairs(cfg, splits, facts),
        split_table=_split_table(splits),
        training_pairs=_training_pairs(cfg, facts, history),
        no_facts=NO_RUN_JSON if not facts else None,
        curves=curves,
        config_text=config_text,
        env_pairs=list(env.items()),
    )


def _subtitle(cfg: Mapping[str, Any]) -> str:
    model, data, train = cfg.get("model", {}), cfg.get("data", {}), cfg.get("train", {})
    return (
        f"task {cfg.get('task', '?')} · {model.get('arch')} decoder · {model.get('encoder')} encoder "
        f"({model.get('weights')} weights, {model.get('strategy')}) · {data.get('image_size')} px · "
        f"{train.get('epochs')} epochs"
    )


__all__ = ["NO_RUN_JSON", "decision_pairs", "run_html"]
