"""After a comparison: what the best configuration becomes. Per configuration, the
post-processing chosen on CV (:mod:`medtl.inference.postprocess`, ``CELL/postprocess.json``) and the
folds' best epochs (``run.json``), the epochs a final model trained on every image
(``medtl train ... data.val_fraction=0 data.test_fraction=0 train.epochs=E``) should run;
and ``CMP/MODEL_CARD.md`` for the best configuration, from its fold ensemble's evaluation
when there is one, else from its first fold run.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from medtl.runs.records import RunRecord, read_postprocess
from medtl.utils.files import atomic_write_text

__all__ = ["best_card", "final_facts", "final_lines"]


def final_facts(cell: Path, runs: list[Path]) -> dict[str, Any]:
    """``{"best_epochs": [...], "final_epochs": E, "postprocess": {...} | None}`` of a cell:
    E is the median of the folds' best epochs counted from 1 (None without run.json)."""
    best = [(RunRecord.read(r) or RunRecord(doc={})).best_epoch for r in runs]
    known = sorted(int(b) + 1 for b in best if b is not None)
    pp = read_postprocess(cell / "postprocess.json") or None
    return {
        "best_epochs": best,
        "final_epochs": known[len(known) // 2] if known else None,
        "postprocess": pp,
    }


def final_lines(results: dict[str, Any]) -> list[str]:
    """The Markdown section on post-processing and the final model (empty without facts)."""
    lines = []
    for c in results["configs"]:
        pp, epochs = c.get("postprocess"), c.get("final_epochs")
        parts = []
        if pp:
            parts.append(
                f"post-processing **{pp.get('rule') or 'none'}** (CV Dice "
                f"{pp['dice_before']:.4f} before, {pp['dice_after']:.4f} after)"
            )
        if epochs:
            parts.append(f"best epochs per fold {c.get('best_epochs')} -> final {epochs} epochs")
        if parts:
            lines.append(f"- {c['rank']}. {c['configuration']}: " + "; ".join(parts))
    if not lines:
        return []
    best = results["configs"][0]
    config_file = results.get("config_file")
    final = ("data.val_fraction", "data.test_fraction", "train.epochs")  # set below, once
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
