"""``RUN/MODEL_CARD.md``: what a trained model is, what it was trained and tested on, how
good it is (per split and class, with 95% CIs), where it fails, and what medtl cannot know.

Every fact is read from the run folder: ``run.json`` (data, split, model, timings; written
by training), ``splits.json`` (images per split and their duplicate/patient groups),
``config.yaml``, ``env.json`` (machine), ``model.pt`` (size) and ``eval/<split>/summary.json``
with ``per_image.csv`` (results, calibration, worst cases); numbers are copied, never
recomputed, except the intervals the summary has none for (accuracy, per-class recall:
:func:`medtl.metrics.bootstrap_ci` over the per-image correctness) and the calibration
(:func:`calibration`). Example::

    from medtl.runs.model_card import write_model_card
    write_model_card("runs/cls-resnet18-...")  # -> runs/cls-resnet18-.../MODEL_CARD.md
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from medtl._version import __version__
from medtl.data.splits import SplitsFile
from medtl.metrics import bootstrap_ci
from medtl.runs.folder import read_config_doc
from medtl.runs.records import SUMMARY_FILE, EvalSummary, RunRecord
from medtl.utils.files import atomic_write_text, read_csv, read_records, to_float
from medtl.utils.formatting import fmt, fmt_stat

CARD = "MODEL_CARD.md"
SEG_NAMES = {"dice": "Dice", "iou": "IoU", "precision": "precision", "recall": "recall"}
SEG_NAMES["hd95"] = "HD95 (px)"
WORST = 5


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""]


def _ci(lo: Any, hi: Any) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict[str, float]:
    """Top-label calibration of a classifier: ``ece``, the expected calibration error
    (images binned by the probability of the predicted class into ``bins`` equal-width
    bins; the bins' ``|accuracy - mean confidence|`` weighted by their share of images),
    and ``brier``, the mean squared difference between that probability and correctness."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if confidence.size == 0:
        return {"ece": float("nan"), "brier": float("nan")}
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = sum(
        abs(correct[which == b].mean() - confidence[which == b].mean()) * np.mean(which == b)
        for b in range(bins)
        if np.any(which == b)
    )
    return {"ece": float(ece), "brier": float(np.mean((confidence - correct) ** 2))}


# ----------------------------------------------------------------------------- sections
def _model_section(run: Path, cfg: dict[str, Any], facts: RunRecord) -> list[str]:
    model = {**cfg.get("model", {}), **facts.model}
    lines = ["## Model", ""]
    lines.append(f"- task: {cfg.get('task')}")
    if cfg.get("task") != "classification":
        lines.append(f"- decoder: {model.get('arch')}")
    lines.append(f"- encoder: {model.get('encoder')}")
    lines.append(f"- weights: {model.get('weights')}")
    lines.append(f"- strategy: {model.get('strategy')}")
    lines.append(f"- input: {cfg.get('data', {}).get('image_size')} px square, RGB in [0, 1]")
    size = _size(run / "model.pt")
    if size:
        lines.append(f"- size: {size}")
    return [*lines, ""]


def _size(bundle: Path) -> str | None:
    """Parameters and file size of ``model.pt`` (BatchNorm statistics are not parameters)."""
    if not bundle.is_file():
        return None
    import torch

    # mmap: the tensors' sizes without reading their data
    state = torch.load(bundle, map_location="cpu", weights_only=True, mmap=True).get(
        "state_dict", {}
    )
    stats = ("running_mean", "running_var", "num_batches_tracked")
    n = sum(
        v.numel() for k, v in state.items() if not k.endswith(stats) and k not in ("mean", "std")
    )
    return f"{n / 1e6:.2f} M parameters, {bundle.stat().st_size / 2**20:.1f} MiB (model.pt)"


def _data_section(cfg: dict[str, Any], facts: RunRecord, splits: SplitsFile) -> list[str]:
    found = facts.data
    lines = ["## Data", "", f"- folder: {cfg.get('data', {}).get('root')}"]
    lines.append(f"- layout: {found.get('layout') or splits.layout}")
    if found.get("summary"):
        lines.append(f"- found: {found['summary']}")
    entries = [e for n in ("train", "val", "test") for e in splits.entries[n]]
    counts = Counter(e.get("label") or "-" for e in entries)
    if counts:
        per = ", ".join(f"{c} {k}" for c, k in sorted(counts.items()))
        lines.append(f"- images per class (in the splits): {per}")
    dup = found.get("duplicate_groups") or {}
    if dup.get("enabled") is False:
        lines.append("- duplicates: not grouped (data.group_duplicates=false)")
    elif dup:
        n, m = dup.get("n_groups_with_duplicates") or 0, dup.get("n_images_in_them", 0)
        lines.append(
            f"- duplicates: {n} groups of near-duplicate images ({m} images), each group kept "
            "in one split"
            if n
            else "- duplicates: none found (perceptual-hash audit)"
        )
    groups = {e["group"] for e in entries if e.get("group")}
    if groups:
        lines.append(f"- groups: {len(groups)} patient/duplicate groups, none split across splits")
    if found.get("mask_interpretation"):
        lines.append(f"- masks: {found['mask_interpretation']}")
    return [*lines, ""]


def _split_section(record: SplitsFile) -> list[str]:
    splits = record.entries
    names = [n for n in ("train", "val", "test") if splits[n]]
    if not names:
        return ["## Split", "", "No splits.json in the run folder.", ""]
    classes = sorted({e.get("label") or "-" for n in names for e in splits[n]})
    rows = [
        [c, *(sum((e.get("label") or "-") == c for e in splits[n]) for n in names)] for c in classes
    ]
    rows.append(["all", *(len(splits[n]) for n in names)])
    seed = record.seed
    return [
        "## Split",
        "",
        f"Split seed {seed}; duplicate and patient groups never straddle splits. Images per split:",
        "",
        *_table(["class", *names], rows),
    ]


def _training_section(cfg: dict[str, Any], facts: RunRecord, env: dict) -> list[str]:
    train = cfg.get("train", {})
    lines = ["## Training", ""]
    epochs = facts.epochs
    if "epochs" in facts.doc:
        total = sum(to_float(e.get("seconds")) for e in epochs)
        lines.append(
            f"- epochs: {len(epochs)} run of {train.get('epochs')} ({total:.1f} s in epochs)"
        )
    else:
        lines.append(
            f"- epochs: {train.get('epochs')} configured (no run.json: actual count unknown)"
        )
    if facts.train_seconds is not None:
        lines.append(f"- wall time: {facts.train_seconds:.1f} s")
    if facts.best_epoch is not None:
        score = fmt(facts.best_score, 4)
        lines.append(f"- best epoch: {facts.best_epoch} ({facts.doc.get('monitor')} = {score})")
    lines.append(
        f"- optimiser: {train.get('optimizer')}, lr {train.get('lr')}, batch {train.get('batch_size')}"
    )
    if env:
        gpu = "CUDA available" if env.get("cuda") else "no GPU"
        lines.append(
            f"- machine: {env.get('platform')}, {env.get('cpu_count')} CPUs, {gpu}, "
            f"accelerator {env.get('accelerator')}; torch {env.get('torch')}, medtl {env.get('medtl')}"
        )
    if facts.status and facts.status != "finished":
        lines.append(f"- status: **{facts.status}** (the run did not finish)")
    return [*lines, ""]


def _correct(rows: list[dict[str, str]], classes: list[str]) -> tuple[list[dict], np.ndarray]:
    """The rows of a known class that have a prediction, and whether each is right."""
    known = [r for r in rows if r.get("class") in classes and r.get("prediction")]
    return known, np.array([r["prediction"] == r["class"] for r in known], float)


def _cls_results(cls: dict[str, Any], rows: list[dict[str, str]]) -> list[str]:
    classes = list(cls.get("classes") or [])
    known, right = _correct(rows, classes)
    acc_ci = _ci(*bootstrap_ci(right)) if right.size else ""
    lines = [
        f"- accuracy: {fmt(cls.get('accuracy'))} {acc_ci}",
        f"- balanced accuracy: {fmt(cls.get('balanced_accuracy'))}",
        f"- macro F1: {fmt((cls.get('macro_avg') or {}).get('f1'))}",
        f"- AUROC (macro, one-vs-rest): {fmt(cls.get('auroc_macro'))}",
    ]
    if known and all(f"p_{c}" in known[0] for c in classes):
        conf = np.array([max(to_float(r[f"p_{c}"]) for c in classes) for r in known])
        cal = calibration(conf, right)
        lines.append(
            f"- calibration: ECE {fmt(cal['ece'])} (10 bins), Brier {fmt(cal['brier'])} "
            "(probability of the predicted class)"
        )
    per = []
    for c, v in (cls.get("per_class") or {}).items():
        mine = np.array([ok for r, ok in zip(known, right, strict=True) if r["class"] == c])
        recall_ci = _ci(*bootstrap_ci(mine)) if mine.size else "(no images)"
        per.append(
            [c, fmt(v.get("precision")), f"{fmt(v.get('recall'))} {recall_ci}", fmt(v.get("f1"))]
            + [v.get("support", ""), fmt(v.get("auroc"))]
        )
    head = ["class", "precision", "recall [95% CI]", "F1", "support", "AUROC"]
    return ["Classification:", "", *lines, "", *_table(head, per)]


def _seg_results(summary: dict[str, Any]) -> list[str]:
    seg = summary.get("segmentation") or {}
    rows = [[SEG_NAMES[k], fmt_stat(seg[k]), seg[k].get("n", "")] for k in SEG_NAMES if seg.get(k)]
    lines = ["Segmentation (mean ± std [95% CI]):", "", *_table(["metric", "value", "n"], rows)]
    per = summary.get("segmentation_per_class") or {}
    if per:
        rows = [[c, fmt_stat(v.get("dice")), fmt_stat(v.get("iou"))] for c, v in per.items()]
        lines += ["Per class:", "", *_table(["class", "Dice", "IoU"], rows)]
    if summary.get("empty_mask_rule"):
        lines += [f"Empty masks: {summary['empty_mask_rule']}", ""]
    return lines


def _worst(rows: list[dict[str, str]], summary: dict[str, Any]) -> list[str]:
    """The :data:`WORST` lowest-Dice images (mask tasks) or lowest probability given to the
    true class (classification)."""
    if "segmentation" in summary:
        scored = [(to_float(r.get("dice")), r) for r in rows]
        what, head = "Dice", ["image", "class", "Dice", "predicted area", "true area"]
        cells = [
            lambda r: r.get("class") or "-",
            lambda r: r.get("pred_area"),
            lambda r: r.get("true_area"),
        ]
    else:
        scored = [(to_float(r.get(f"p_{r.get('class')}")), r) for r in rows]
        what, head = "p(true class)", ["image", "class", "p(true class)", "predicted"]
        cells = [lambda r: r.get("class"), lambda r: r.get("prediction")]
    scored = sorted((s for s in scored if np.isfinite(s[0])), key=lambda t: t[0])[:WORST]
    table = [
        [Path(r["image"]).name, cells[0](r), fmt(s), *(c(r) for c in cells[1:])] for s, r in scored
    ]
    return [f"Worst cases (lowest {what}):", "", *_table(head, table)] if table else []


def _results_section(run: Path) -> list[str]:
    lines = ["## Results", ""]
    dirs = sorted(d for d in run.glob("eval/*") if (d / "summary.json").is_file())
    if not dirs:
        return [*lines, f"Not evaluated yet: run `medtl evaluate {run}`.", ""]
    for d in dirs:
        record, rows = EvalSummary.read(d / SUMMARY_FILE), read_csv(d / "per_image.csv")
        summary = record.doc
        tta = ", flip TTA" if summary.get("tta") else ""
        lines += [f"### {record.split} ({record.n_images} images{tta})", ""]
        if record.segmentation:
            lines += _seg_results(summary)
        if record.classification:
            lines += _cls_results(record.classification, rows)
        lines += _worst(rows, summary)
        if (d / "cam_grid.png").is_file():
            lines += [
                f"Grad-CAM of the best and worst cases: ![cam grid](eval/{d.name}/cam_grid.png)",
                "",
            ]
    return lines


def _use_and_limits(cfg: dict[str, Any], facts: RunRecord, run: Path) -> list[str]:
    task, root = cfg.get("task"), cfg.get("data", {}).get("root")
    classes = ", ".join(facts.data.get("classes") or []) or "the lesion masks"
    n_test = facts.split.get("test")
    lines = [
        "## Intended use",
        "",
        f"Research only: a {task} model for {classes}, on images like those in {root}, "
        "to be compared with other models on the same data. It is not a medical device and "
        "has not been validated for diagnosis; a person who knows where the images come from "
        "has to decide what else it may be used for (medtl cannot).",
        "",
        "## Known limits",
        "",
        f"- Tested on {n_test if n_test is not None else 'an unknown number of'} held-out images "
        "from the same folder as the training data: no external site, device or population.",
        "- The 95% CIs are percentile bootstrap intervals over images; with few test images "
        "they are wide, and images of one patient are not independent unless the data named "
        "the patient (groups) or near-duplicates were found.",
        "- medtl cannot know: who the patients were, which scanners and settings made the "
        "images, whether the labels and masks are right, the prevalence where the model "
        "would be used, or how it does for subgroups the data does not record.",
        "- Duplicate detection is perceptual hashing of pixels: re-acquisitions of the same "
        "lesion and crops are not found.",
    ]
    if (cfg.get("model") or {}).get("weights") in ("none", None):
        lines.append(
            "- The encoder was trained from random initialisation (no pretrained weights)."
        )
    return [*lines, ""]


def card_inputs(run: Path) -> tuple[dict[str, Any], RunRecord, SplitsFile]:
    """``config.yaml``, ``run.json`` and ``splits.json`` of ``run``, each checked, with every
    ``eval/*/summary.json`` checked too: a damaged file is one DataError line, raised by
    ``medtl evaluate`` before it writes anything."""
    cfg = read_config_doc(run)
    facts = RunRecord.read(run) or RunRecord(doc={})
    splits = SplitsFile.read(run / "splits.json", missing_ok=True)
    for summary in sorted(run.glob(f"eval/*/{SUMMARY_FILE}")):
        EvalSummary.read(summary)
    return cfg, facts, splits


def model_card_text(run: str | Path, results_from: str | Path | None = None) -> str:
    """The Markdown model card of a run folder (see the module docstring); ``results_from``
    takes the results from another folder's ``eval/`` (a fold ensemble's)."""
    run = Path(run)
    cfg, facts, splits = card_inputs(run)
    env = (read_records(run / "env.json") or [{}])[-1]  # the latest invocation
    lines = [
        f"# Model card: {run.name}",
        "",
        f"Written by medtl {__version__} on {time.strftime('%Y-%m-%d')} from the run folder "
        f"`{run}`; results are copied from `eval/<split>/summary.json`.",
        "",
    ]
    if not facts.doc:
        lines += [
            "_No run.json (run made before medtl 0.2): data and training facts are partial._",
            "",
        ]
    lines += _model_section(run, cfg, facts) + _data_section(cfg, facts, splits)
    lines += _split_section(splits) + _training_section(cfg, facts, env)
    lines += _results_section(Path(results_from or run)) + _use_and_limits(cfg, facts, run)
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(run: str | Path) -> Path:
    """Write ``RUN/MODEL_CARD.md``; returns its path."""
    return atomic_write_text(Path(run) / CARD, model_card_text(run))


__all__ = ["CARD", "calibration", "card_inputs", "model_card_text", "write_model_card"]
