"""The results table of a comparison, one builder for Markdown, CSV and the HTML report.

:func:`table_rows` gives the header and the formatted cells; :func:`results_markdown`
and the report's comparison page both render those rows, so the two never disagree.
"""

from __future__ import annotations

import math
from typing import Any

from medtl.comparison.clinical import (
    clinical_cells,
    clinical_csv,
    clinical_head,
    clinical_note,
    leak_free_note,
    table_unit,
)
from medtl.utils.files import csv_text, to_float
from medtl.utils.formatting import fmt, fmt_p, fmt_stat

__all__ = [
    "METRIC_NAMES",
    "fmt",
    "fmt_p",
    "fmt_p_holm",
    "fmt_stat",
    "has_leak_free",
    "has_test",
    "label_rows",
    "results_csv",
    "results_markdown",
    "shown_metrics",
    "table_rows",
]

METRIC_NAMES = {
    "dice": "Dice",
    "iou": "IoU",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "auroc": "AUROC",
    "score": "score (Dice+F1)/2",
}


def shown_metrics(task: str) -> list[str]:
    """The metric keys the table shows for ``task``, the primary one first."""
    return {
        "segmentation": ["dice", "iou"],
        "classification": ["macro_f1", "accuracy", "auroc"],
        "multitask": ["score", "dice", "macro_f1", "accuracy"],
    }[task]


def _header(results: dict[str, Any], names: list[str]) -> list[str]:
    head = ["rank", "configuration"]
    for i, m in enumerate(names):
        head.append(f"{METRIC_NAMES[m]} images")
        if i == 0 or results["folds"]:
            head.append(f"{METRIC_NAMES[m]} folds")
    head += clinical_head(table_unit(results["configs"]))  # segmentation: lesions, MSD, area
    head += [
        f"Δ {METRIC_NAMES[results['paired_metric']]} vs best [95% CI]",
        "p perm (Holm)",
        "p Wilcoxon (Holm)",
    ]
    if results["folds"] >= 3:
        head += ["p folds perm (Holm)", "p folds Wilcoxon (Holm)"]
    if has_test(results):
        name = METRIC_NAMES[results.get("test_metric", "dice")]
        head += [
            f"{name} test, fold models",
            f"{name} test, ensemble",
            "ensemble − folds [95% CI] p perm",
            "test Δ vs best p perm (Holm)",
        ]
        if has_leak_free(results):
            head += [f"{name} test leak-free, fold models", f"{name} test leak-free, ensemble"]
            head.append("leak-free test images")
    return head + ["train s/fold", "img/s"]


def has_leak_free(results: dict[str, Any]) -> bool:
    """True when some configuration's test split has leaked images (RUN/leaks.json)."""
    return any((c.get("test") or {}).get("leak_free") for c in results["configs"])


def has_test(results: dict[str, Any]) -> bool:
    """True when some configuration has test-split numbers (a test split held out)."""
    return any(c.get("test") for c in results["configs"])


def _test_cells(c: dict[str, Any], metric: str, leak_free: bool = False) -> list[str]:
    """Fold models' test mean ± std [CI over the K models], the ensemble's [CI over test
    images], ensemble − per-image mean of the fold models with its p, the test p vs best;
    with ``leak_free``, the same two scores on the leak-free test images and their number."""
    t = c.get("test")
    if not t:
        return ["–"] * (7 if leak_free else 4)
    ens, vs = t.get("ensemble") or {}, t.get("ensemble_vs_folds")
    gain = f"{_diff_cell(vs)} p {fmt_p(vs.get('p_permutation'))}" if vs else "–"
    best = c.get("vs_best")
    vs_best = "best" if best is None else fmt_p_holm(best.get("test"), "p_permutation")
    cells = [fmt_stat(t["folds"].get(metric)), fmt_stat(ens.get(metric)), gain, vs_best]
    if not leak_free:
        return cells
    lf = t.get("leak_free")
    if not lf:
        return [*cells, "–", "–", "–"]
    n = f"{lf['n_images']} of {lf['n_images'] + lf['n_leaked']}"
    return [*cells, fmt_stat(lf["folds"]), fmt_stat(lf.get("ensemble")), n]


def fmt_p_holm(test: dict[str, Any] | None, key: str) -> str:
    """``raw (Holm-adjusted)`` of one p-value of a paired test; ``–`` when missing."""
    test = test or {}
    if key + "_holm" not in test:
        return fmt_p(test.get(key))
    return f"{fmt_p(test.get(key))} ({fmt_p(test.get(key + '_holm'))})"


def _diff_cell(test: dict[str, Any]) -> str:
    text = f"{to_float(test['mean_diff']):+.3f}"
    if math.isfinite(to_float(test.get("ci_low"))):
        text += f" [{to_float(test['ci_low']):+.3f}, {to_float(test['ci_high']):+.3f}]"
    return text


def _vs_best_cells(vs: dict[str, Any] | None, folds: int) -> list[str]:
    if vs is None:
        return ["best", "", ""] + (["", ""] if folds >= 3 else [])
    im = vs["images"]
    row = [_diff_cell(im), fmt_p_holm(im, "p_permutation"), fmt_p_holm(im, "p_wilcoxon")]
    if folds >= 3:
        fo = vs.get("folds")
        row += [fmt_p_holm(fo, "p_permutation"), fmt_p_holm(fo, "p_wilcoxon")]
    return row


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the results table (shared by Markdown and HTML).

    Args:
        results: the dict :func:`medtl.comparison.collect` returns.

    Returns:
        ``(head, rows)``: the column titles, then one list of strings per configuration in
        rank order: rank, configuration, ``fmt_stat`` of each shown metric over images (and
        over folds), Δ/p-values against the best (``best`` on the best row), train s/fold
        and img/s.
    """
    names = shown_metrics(results["task"])
    folds, unit = results["folds"], table_unit(results["configs"])
    rows = []
    for c in results["configs"]:
        row = [str(c["rank"]), c["configuration"]]
        for i, m in enumerate(names):
            row.append(fmt_stat(c["metrics"][m]["images"]))
            if i == 0 or folds:
                row.append(fmt_stat(c["metrics"][m]["folds"]) if folds else "–")
        row += clinical_cells(c.get("clinical"), unit)
        row += _vs_best_cells(c.get("vs_best"), folds)
        if has_test(results):
            row += _test_cells(c, results.get("test_metric", "dice"), has_leak_free(results))
        t = c.get("timing") or {}
        row += [fmt(t.get("train_s"), 1), fmt(t.get("infer_img_per_s"), 1)]
        rows.append(row)
    return _header(results, names), rows


def label_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the per-label table (label maps; no rows for binary masks): one
    row per configuration and foreground label, in rank order: Dice over images and folds,
    IoU and HD95 over images, Δ Dice of that label vs the best with the paired p-values;
    with a test split, that label's test Dice of the fold models and of the fold ensemble
    (:func:`medtl.comparison.per_label.holdout_label_results`)."""
    head = ["rank", "configuration", "label", "Dice images", "Dice folds", "IoU images"]
    head += ["HD95 images", "Δ Dice vs best [95% CI]", "p perm (Holm)", "p Wilcoxon (Holm)"]
    test = _label_test(results)
    head += ["Dice test, fold models", "Dice test, ensemble"] if test else []
    rows = []
    for c in results["configs"]:
        for name, m in (c.get("per_label") or {}).items():
            folds = fmt_stat(m["dice"]["folds"]) if results["folds"] else "–"
            row = [str(c["rank"]), c["configuration"], name, fmt_stat(m["dice"]["images"]), folds]
            row += [fmt_stat(m["iou"]["images"]), fmt_stat(m["hd95"]["images"])]
            vs = (c.get("vs_best_per_label") or {}).get(name)
            if vs is None:
                row += ["best", "", ""]
            else:
                p = [fmt_p_holm(vs, "p_permutation"), fmt_p_holm(vs, "p_wilcoxon")]
                row += [_diff_cell(vs), *p]
            if test:
                t = (((c.get("test") or {}).get("per_label") or {}).get(name) or {}).get("dice")
                row += [fmt_stat((t or {}).get("folds")), fmt_stat((t or {}).get("ensemble"))]
            rows.append(row)
    return head, rows


def _label_test(results: dict[str, Any]) -> bool:
    """True when some configuration has per-label test-split numbers."""
    return any((c.get("test") or {}).get("per_label") for c in results["configs"])


def _label_markdown(results: dict[str, Any]) -> list[str]:
    head, rows = label_rows(results)
    if not rows:
        return []
    return [
        "",
        "## Per label",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i in (1, 2) else "---:" for i in range(len(head))) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "The ranking is on Dice averaged over the foreground labels (each image's mean over "
        "labels). Per label: that label's Dice, IoU and HD95 (px), mean ± std [95% BCa "
        "bootstrap CI]; Δ and p compare the configuration with the best on paired per-image "
        "Dice of that label, Holm-adjusted across the configurations, one family per label."
        + (
            " Test: that label's Dice on the held-out test split, of the K fold models (their "
            "means, [95% CI over the models]) and of the fold ensemble ([95% CI over the test "
            "images]; – until `medtl evaluate CMP --config N` has run)."
            if _label_test(results)
            else ""
        ),
    ]


def results_markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown document: question, design, table, how to read it."""
    head, rows = table_rows(results)
    folds = results["folds"]
    design = (
        f"{folds}-fold cross-validation"
        if folds
        else f"one shared split, evaluated on '{results['eval_split']}'"
    )
    lines = [
        "# Which configuration is best?",
        "",
        f"task: {results['task']}; {design}; data seed {results['seed']}; "
        f"ranked by {METRIC_NAMES[results['primary']]}"
        + (" (mean over the foreground labels)" if results.get("labels") else "")
        + " pooled over held-out images.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 1 else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        "Values: mean ± std [95% BCa bootstrap CI]; 'images' pools every held-out image, "
        "'folds' summarises the per-fold means. p-values compare each configuration with the "
        f"best on paired per-image {METRIC_NAMES[results['paired_metric']]} (and on the "
        "paired per-fold means): two-sided sign-flip permutation test (exact over all 2^n "
        "sign flips up to 16 pairs, 9999 seeded flips above) and Wilcoxon signed-rank (exact "
        "up to 16 pairs). Each cell shows the raw p, then in brackets the p adjusted by the "
        "Holm step-down method across the configurations compared with the best (one family "
        "per column).",
    ]
    if folds >= 3:
        lines.append("")
        lines.append(
            f"With {folds} folds the smallest attainable two-sided fold p is "
            f"2/2^{folds} = {2 / 2**folds:.4g}; the paired bootstrap p (results.json/csv, "
            "per-image pairs only) is computed only with >= 20 pairs, as below that it is "
            "anti-conservative."
        )
    if has_test(results):
        lines += ["", _test_note(results)]
    for note in (clinical_note(results), leak_free_note(results)):
        lines += ["", note] if note else []
    lines += _label_markdown(results)
    if results.get("incomplete"):
        lines.append("")
        lines.append(
            "Not finished yet: " + ", ".join(i["configuration"] for i in results["incomplete"])
        )
    return "\n".join(lines) + "\n"


def _test_note(results: dict[str, Any]) -> str:
    name = METRIC_NAMES[results.get("test_metric", "dice")]
    return (
        f"Test: {results.get('n_test', '?')} images held out of every fold (never trained "
        f"or validated on). 'fold models': {name} of each of the K fold models on them, "
        "mean ± std [CI] over the K models; 'ensemble': the K models' mean probability "
        "(medtl evaluate CMP --config N), [CI] over the test images; 'ensemble − folds': "
        "paired by test image against the fold models' per-image mean; 'test Δ vs best': "
        "each ensemble against the best configuration's, paired by test image. The ranking "
        "is the cross-validation's: the test split only reports."
    )


def _test_csv(c: dict[str, Any]) -> dict[str, Any]:
    t = c.get("test") or {}
    row: dict[str, Any] = {"n_test": t.get("n_images")}
    for part in ("folds", "ensemble"):
        for m, s in (t.get(part) or {}).items():
            for stat in ("mean", "std", "ci_low", "ci_high"):
                row[f"test_{part}_{m}_{stat}"] = s.get(stat)
    for name, test in (
        ("test_ensemble_vs_folds", t.get("ensemble_vs_folds")),
        ("vs_best_test", (c.get("vs_best") or {}).get("test")),
    ):
        for stat in ("mean_diff", "ci_low", "ci_high", "p_permutation", "p_wilcoxon"):
            row[f"{name}_{stat}"] = (test or {}).get(stat)
        row[f"{name}_p_permutation_holm"] = (test or {}).get("p_permutation_holm")
    lf = t.get("leak_free") or {}
    if lf:
        row["test_leak_free_n_images"], row["test_n_leaked"] = lf["n_images"], lf["n_leaked"]
        for part in ("folds", "ensemble"):
            for stat in ("mean", "std", "ci_low", "ci_high"):
                row[f"test_leak_free_{part}_{stat}"] = (lf.get(part) or {}).get(stat)
    return row


def _label_csv(c: dict[str, Any]) -> dict[str, Any]:
    """``<label>_<metric>_<images|folds>_<stat>``, ``<label>_<metric>_test_<folds|ensemble>_
    <stat>`` (with per-label test numbers) and ``<label>_vs_best_<stat>`` columns."""
    row: dict[str, Any] = {}
    for name, metrics in (c.get("per_label") or {}).items():
        for m, s in metrics.items():
            for part in ("images", "folds"):
                for stat in ("mean", "std", "ci_low", "ci_high"):
                    row[f"{name}_{m}_{part}_{stat}"] = s[part].get(stat)
        test = ((c.get("test") or {}).get("per_label") or {}).get(name) or {}
        for m, s in test.items():
            for part in ("folds", "ensemble"):
                for stat in ("mean", "std", "ci_low", "ci_high"):
                    row[f"{name}_{m}_test_{part}_{stat}"] = (s[part] or {}).get(stat)
        vs = (c.get("vs_best_per_label") or {}).get(name) or {}
        for stat in ("mean_diff", "ci_low", "ci_high", "p_permutation", "p_wilcoxon"):
            row[f"{name}_vs_best_{stat}"] = vs.get(stat)
            if stat.startswith("p_"):
                row[f"{name}_vs_best_{stat}_holm"] = vs.get(f"{stat}_holm")
    return row


def results_csv(results: dict[str, Any]) -> str:
    """One row per configuration with every number unformatted."""
    rows = []
    for c in results["configs"]:
        row: dict[str, Any] = {
            "rank": c["rank"],
            "cell": c["cell"],
            "configuration": c["configuration"],
        }
        for m, s in c["metrics"].items():
            for part in ("images", "folds"):
                for stat in ("mean", "std", "ci_low", "ci_high"):
                    row[f"{m}_{part}_{stat}"] = s[part].get(stat)
        vs = c.get("vs_best") or {}
        for part in ("images", "folds"):
            for stat in (
                "mean_diff",
                "ci_low",
                "ci_high",
                *(
                    k + sfx
                    for k in ("p_permutation", "p_wilcoxon", "p_bootstrap")
                    for sfx in ("", "_holm")
                ),
            ):
                row[f"vs_best_{part}_{stat}"] = (vs.get(part) or {}).get(stat)
        row["n_images"] = c["n_images"]
        row.update(clinical_csv(c))  # segmentation: lesions, MSD, area error (or nothing)
        row.update(_label_csv(c))
        if has_test(results):
            row.update(_test_csv(c))
        row["train_s_per_fold"] = c["timing"]["train_s"]
        row["infer_img_per_s"] = c["timing"]["infer_img_per_s"]
        rows.append(row)
    return csv_text(rows)
