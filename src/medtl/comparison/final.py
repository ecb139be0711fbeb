"""After a comparison: what the best configuration becomes. Per configuration, the
post-processing chosen on CV (:mod:`medtl.inference.postprocess`, ``CELL/postprocess.json``) and the
folds' best epochs (``run.json``), the epochs a final model trained on every image
(``medtl train ... data.val_fraction=0 data.test_fraction=0 train.epochs=E``) should run,
and, when the folds ran under ``train.max_time`` (a plan's share of its budget per fold),
the budget of that one full-data training (:func:`final_budget`) instead of the folds';
and ``CMP/MODEL_CARD.md`` for the best configuration, from its fold ensemble's evaluation
when there is one, else from its first fold run.
"""

from __future__ import annotations

import math
import shlex
import statistics
from pathlib import Path
from typing import Any

import yaml

from medtl.evaluation.class_offsets import OFFSETS_FILE, offsets_text
from medtl.runs.records import RunRecord, read_class_offsets, read_postprocess
from medtl.runtime.device import format_duration
from medtl.utils.files import atomic_write_text

__all__ = ["best_card", "final_budget", "final_facts", "final_lines"]

#: the final model's ``train.max_time``: its predicted fit time times this (a safety net)
FINAL_MARGIN = 1.25


def _fold_train_keys(run: Path) -> dict[str, Any]:
    """The fold run's ``train`` section of config.yaml (empty when unreadable)."""
    try:
        doc = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    train = doc.get("train") if isinstance(doc, dict) else None
    return train if isinstance(train, dict) else {}


def final_budget(records: list[RunRecord], epochs: int | None) -> tuple[float, str] | None:
    """Seconds of ``train.max_time`` for one training on every image for ``epochs`` epochs,
    and how they were found: the folds' median epoch time, scaled by every image over a
    fold's training images, times ``epochs``, plus the largest fit overhead outside epochs
    (``train_seconds`` minus the epochs), times :data:`FINAL_MARGIN`. None without the
    folds' epoch times or split sizes."""
    per_image, overhead, n_all = [], 0.0, 0
    for r in records:
        secs = [e["seconds"] for e in r.epochs if e.get("seconds") is not None]
        n_train = int(r.split.get("train") or 0)
        if not secs or n_train < 1:
            return None
        per_image.append(statistics.median(secs) / n_train)
        overhead = max(overhead, (r.train_seconds or 0.0) - sum(secs))
        n_all = max(n_all, sum(int(v or 0) for v in r.split.values()))
    if not per_image or not epochs:
        return None
    epoch_s = statistics.median(per_image) * n_all
    seconds = math.ceil((epoch_s * epochs + overhead) * FINAL_MARGIN)
    why = (
        f"{epochs} epochs on all {n_all} images at the folds' median "
        f"{epoch_s:.1f}s per epoch scaled to them, + {overhead:.0f}s overhead, "
        f"x {FINAL_MARGIN} margin"
    )
    return float(seconds), why


def final_facts(cell: Path, runs: list[Path]) -> dict[str, Any]:
    """``{"best_epochs": [...], "final_epochs": E, "postprocess": {...} | None,
    "class_offsets": {...} | None}`` of a cell:
    E is the median of the folds' best epochs counted from 1 (None without run.json). When
    the folds ran under ``train.max_time``: ``fold_max_time``, ``final_max_time`` (the
    :func:`final_budget` as a duration, or ``none`` when it cannot be estimated) and
    ``final_budget`` (why); ``fold_planned`` when a plan predicted the folds' fit time."""
    records = [RunRecord.read(r) or RunRecord(doc={}) for r in runs]
    best = [r.best_epoch for r in records]
    known = sorted(int(b) + 1 for b in best if b is not None)
    pp = read_postprocess(cell / "postprocess.json") or None
    facts: dict[str, Any] = {
        "best_epochs": best,
        "final_epochs": known[len(known) // 2] if known else None,
        "postprocess": pp,
        "class_offsets": read_class_offsets(cell / OFFSETS_FILE),
    }
    train = _fold_train_keys(runs[0]) if runs else {}
    if train.get("max_time"):
        budget = final_budget(records, facts["final_epochs"])
        facts["fold_max_time"] = str(train["max_time"])
        facts["final_max_time"] = format_duration(budget[0]) if budget else "none"
        facts["final_budget"] = (
            budget[1] if budget else "no epoch times in the folds' run.json: no budget"
        )
    if train.get("planned_seconds"):
        facts["fold_planned"] = True
    return facts


def _cv_choices(c: dict[str, Any]) -> list[str]:
    """What the folds chose for configuration ``c``: post-processing, class offsets, the final
    model's epochs (Markdown phrases)."""
    pp, epochs, offsets = c.get("postprocess"), c.get("final_epochs"), c.get("class_offsets")
    parts = []
    if pp:
        parts.append(
            f"post-processing **{pp.get('rule') or 'none'}** (CV Dice "
            f"{pp['dice_before']:.4f} before, {pp['dice_after']:.4f} after)"
        )
    if offsets and offsets.get("kept"):
        parts.append(
            f"class offsets **{offsets_text(offsets['offsets'])}** for the ensemble (out-of-fold macro-F1 "
            f"{offsets['macro_f1_before']:.4f} before, {offsets['macro_f1_after']:.4f} after)"
        )
    if epochs:
        parts.append(f"best epochs per fold {c.get('best_epochs')} -> final {epochs} epochs")
    return parts


def final_lines(results: dict[str, Any]) -> list[str]:
    """The Markdown section on post-processing and the final model (empty without facts)."""
    lines = []
    for c in results["configs"]:
        parts = _cv_choices(c)
        if parts:
            lines.append(f"- {c['rank']}. {c['configuration']}: " + "; ".join(parts))
    if not lines:
        return []
    best = results["configs"][0]
    config_file = results.get("config_file")
    final = ("data.val_fraction", "data.test_fraction", "train.epochs")  # set below, once
    final += ("train.max_time", "train.planned_seconds")  # the folds' budget and prediction
    kept = [
        o
        for o in [*(results.get("base_overrides") or []), *best["overrides"]]
        if o.split("=", 1)[0] not in final
    ]
    cmd = (
        f"medtl train {f'-c {shlex.quote(config_file)} ' if config_file else ''}"
        f"{' '.join(map(shlex.quote, kept))} data.val_fraction=0 data.test_fraction=0 "
        f"train.epochs={best.get('final_epochs') or 'E'}"
    )
    budget = []
    if best.get("fold_max_time"):
        cmd += f" train.max_time={best['final_max_time']}"
        budget = [
            "",
            f"The folds ran under train.max_time={best['fold_max_time']} each (their share of "
            f"the budget); the final model's train.max_time={best['final_max_time']}: "
            f"{best['final_budget']}.",
        ]
    if best.get("fold_planned"):
        cmd += " train.planned_seconds=none"  # the plan predicted a fold, not this run
    return [
        "",
        "## Post-processing and the final model",
        "",
        *lines,
        "",
        "Post-processing is tried on the out-of-fold predictions and kept only when it raises "
        "CV Dice; `medtl evaluate/predict CMP --config N` apply it. The final model of the "
        "best configuration, trained on every image for the CV's median best epoch:",
        "",
        f"    {' '.join(cmd.split())}",
        *budget,
    ]


def best_card(out: Path, results: dict[str, Any]) -> Path | None:
    """``CMP/MODEL_CARD.md`` of the best configuration (see the module docstring)."""
    from medtl.runs.model_card import CARD, model_card_text

    best = results["configs"][0]
    runs = [out / r for r in best["runs"]]
    if not runs or not (runs[0] / "config.yaml").is_file():
        return None
    ensemble = out / "cells" / best["cell"] / "ensemble"
    use_ensemble = any(ensemble.glob("eval/*/summary.json"))
    source = (
        f"the fold ensemble of its {len(runs)} fold models (`{ensemble}`); model, data and "
        f"training facts are those of its first fold run `{runs[0]}`"
        if use_ensemble
        else f"its first fold run `{runs[0]}` (no fold ensemble evaluated)"
    )
    pp = (best.get("postprocess") or {}).get("rule")
    head = [
        f"# Comparison {out.name}: best configuration {best['configuration']}",
        "",
        f"Rank 1 of {len(results['configs'])} by {results['primary']} over the held-out "
        f"images of {results['folds'] or 1} fold(s). Results below are of {source}."
        + (f" Masks post-processed: {pp} (chosen on CV)." if pp else ""),
        "",
    ]
    text = model_card_text(runs[0], ensemble if use_ensemble else None)
    return atomic_write_text(out / CARD, "\n".join(head) + text)
