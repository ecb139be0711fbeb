"""The report page of a comparison folder: "Which configuration is best?".

A pure function of the collected results (:func:`medtl.comparison.collect` with
``write=False``) and of the run folders it names: rendering writes nothing. The results
table is :func:`medtl.comparison.table_rows`, the one table the Markdown results use too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medtl import plots
from medtl.comparison import METRIC_NAMES, fmt, table_rows
from medtl.comparison.clinical import clinical_note, leak_free_note
from medtl.comparison.tables import label_rows
from medtl.reporting.cases import overlay_grid_png
from medtl.reporting.html import figure, png_bytes, render, significant
from medtl.utils.files import read_csv, to_float

Results = Mapping[str, Any]


def _results_table(results: Results) -> dict[str, Any]:
    """:func:`medtl.comparison.table_rows` as HTML cells: the CI under the value, significant
    per-image p-values marked (per-fold ones never: few folds, see the note)."""
    head, rows = table_rows(results)
    return _html_cells(head, rows, ["best" if c["rank"] == 1 else "" for c in results["configs"]])


def _label_table(results: Results) -> dict[str, Any] | None:
    """The per-label table (:func:`medtl.comparison.tables.label_rows`) as HTML cells; None
    for binary masks."""
    head, rows = label_rows(results)
    if not rows:
        return None
    return _html_cells(head, rows, ["best" if r[0] == "1" else "" for r in rows])


def _html_cells(head: list[str], rows: list[list[str]], row_classes: list[str]) -> dict[str, Any]:
    cells = []
    for row in rows:
        out: list[Any] = []
        for name, text in zip(head, row, strict=True):
            if name == "configuration":
                out.append({"text": text, "code": True})
            elif " [" in text:
                value, _, ci = text.partition(" [")
                out.append({"text": value, "ci": "[" + ci})
            elif name.startswith("p ") and not name.startswith("p folds"):
                out.append({"text": text, "sig": significant(text)})
            else:
                out.append(text)
        cells.append(out)
    return {
        "head": head,
        "rows": cells,
        "numeric": [0, *(i for i, h in enumerate(head) if i >= 2 and h != "label")],
        "row_classes": row_classes,
    }


def _answer(results: Results) -> dict[str, Any]:
    """The facts of the one-paragraph answer: the best configuration and the runner-up."""
    best = results["configs"][0]
    s = best["metrics"][results["primary"]]["images"]
    folds = results["folds"]
    answer: dict[str, Any] = {
        "best": best["configuration"],
        "metric": METRIC_NAMES[results["primary"]],
        "mean": s["mean"],
        "ci": (s["ci_low"], s["ci_high"]) if math.isfinite(to_float(s.get("ci_low"))) else None,
        "where": f"{best['n_images']} held-out images" + (f" over {folds} folds" if folds else ""),
        "second": None,
    }
    if len(results["configs"]) > 1:
        second = results["configs"][1]
        vs = second["vs_best"]["images"]
        # the Holm-adjusted sign-flip permutation p: valid at any number of pairs (the
        # bootstrap p is only computed from 20 pairs on, see medtl.metrics.paired)
        p = to_float(vs.get("p_permutation_holm", vs.get("p_permutation")))
        answer["second"] = {
            "configuration": second["configuration"],
            "paired": METRIC_NAMES[results["paired_metric"]],
            "diff": vs["mean_diff"],
            "p": p,
            "significant": math.isfinite(p) and p < 0.05,
        }
    return answer


def _cost_rows(results: Results) -> list[list[Any]]:
    rows = []
    for c in results["configs"]:
        t = c.get("timing") or {}
        per_fold = t.get("train_s_per_fold") or []
        total = fmt(sum(to_float(v) for v in per_fold), 1) if per_fold else "–"
        epochs = ", ".join(str(e) for e in c.get("epochs") or []) or "–"
        rows.append(
            [
                {"text": c["configuration"], "code": True},
                fmt(t.get("train_s"), 1),
                total,
                epochs,
                fmt(t.get("infer_img_per_s"), 1),
            ]
        )
    return rows


def _design_pairs(results: Results, out: Path) -> list[tuple[str, Any]]:
    return [
        ("base overrides", {"text": " ".join(results["base_overrides"]) or "–", "code": True}),
        ("grid", {"text": " ".join(results["grid"]) or "–", "code": True}),
        ("folds", results["folds"] or "none (one shared split)"),
        ("scored on", results["eval_split"]),
        ("images", results.get("n_images") or "–"),
        ("data seed", results["seed"]),
        ("folder", str(out)),
    ]


def _run_files(out: Path, results: Results) -> tuple[dict, dict]:
    """Per configuration: its per-image rows with their eval folders, and its fold histories."""
    split = results["eval_split"]
    rows_of: dict[str, tuple[list[dict[str, str]], list[Path]]] = {}
    histories: dict[str, list[list[dict[str, str]]]] = {}
    for c in results["configs"]:
        rows, dirs, hist = [], [], []
        for rel in c["runs"]:
            eval_dir = out / rel / "eval" / split
            fold_rows = read_csv(eval_dir / "per_image.csv")
            rows += fold_rows
            dirs += [eval_dir] * len(fold_rows)
            hist.append(read_csv(out / rel / "metrics.csv"))
        rows_of[c["cell"]] = (rows, dirs)
        histories[c["cell"]] = hist
    return rows_of, histories


def _segmentation_figures(results: Results, rows_of: dict) -> dict[str, Any]:
    """The per-image Dice box plot and the best configuration's best and worst cases."""
    per_image = {k: [to_float(r.get("dice")) for r in rows] for k, (rows, _) in rows_of.items()}
    box = png_bytes(plots.comparison_per_image_figure(results, per_image))
    best = results["configs"][0]
    rows, dirs = rows_of[best["cell"]]
    title = f"Best configuration: {best['configuration'][:60]}"
    cases = overlay_grid_png(rows, dirs, title, groups=("best", "worst"))
    colour = "Each label in its colour" if results.get("labels") else "Prediction in red"
    caption = f"{colour}, ground-truth outline in green (when the overlay was saved by evaluate)."
    return {
        "per_image": figure(box, "per-image Dice"),
        "cases": figure(cases, "best and worst cases", caption) if cases else None,
    }


def _curve_figures(results: Results, histories: dict) -> dict[str, Any]:
    """Learning curves of every configuration, and fold 0 of the first 12 in detail."""
    curves = plots.comparison_curves_figure(results, histories)
    details = []
    for c in results["configs"][:12]:
        hist = histories[c["cell"]]
        if hist and hist[0]:
            data = png_bytes(plots.learning_curves_figure(hist[0]))
            details.append((c["configuration"], figure(data, "learning curves")))
    return {
        "curves": figure(png_bytes(curves), "learning curves per configuration")
        if curves
        else None,
        "details": details,
    }


def comparison_html(out: Path, results: Results) -> str:
    """The HTML page of comparison folder ``out`` from its collected ``results``."""
    out = Path(out)
    rows_of, histories = _run_files(out, results)
    primary = METRIC_NAMES[results["primary"]]
    summary = png_bytes(plots.comparison_summary_figure(results, primary))
    caption = "Best configuration on top; bar: 95% CI of the pooled mean; ticks: fold means."
    best = results["configs"][0]
    confusion = None
    if best.get("confusion_matrix"):
        cm = plots.confusion_matrix_figure(best["confusion_matrix"], best["classes"])
        caption_cm = "All held-out images pooled over folds (rows: true class)."
        confusion = figure(png_bytes(cm), "confusion matrix", caption_cm)
    seg = results["task"] != "classification"
    folds = results["folds"]
    design = (
        f"{folds}-fold cross-validation"
        if folds
        else f"one shared split, scored on '{results['eval_split']}'"
    )
    return render(
        "comparison.html",
        kicker="medtl comparison report",
        title="Which configuration is best?",
        subtitle=(
            f"{len(results['configs'])} configurations · task {results['task']} · {design} · "
            f"data seed {results['seed']} · ranked by {primary}"
        ),
        answer=_answer(results),
        results_table=_results_table(results),
        table_notes=[  # lesions / units and leak-free test (medtl.comparison.clinical)
            n.replace("**", "") for n in (clinical_note(results), leak_free_note(results)) if n
        ],
        label_table=_label_table(results),
        folds=folds,
        paired=METRIC_NAMES[results["paired_metric"]],
        incomplete=[i["configuration"] for i in results.get("incomplete") or []],
        summary=figure(summary, "summary", caption),
        segmentation=_segmentation_figures(results, rows_of) if seg else None,
        confusion=confusion,
        **_curve_figures(results, histories),
        cost_rows=_cost_rows(results),
        design_pairs=_design_pairs(results, out),
    )


__all__ = ["comparison_html"]
