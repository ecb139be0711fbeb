"""The leak-free subset of an evaluated split: the images without a duplicate in train, as
``RUN/leaks.json`` lists them, scored on their own beside the full split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtl.data.leaks import read_leaks
from medtl.metrics import aggregate
from medtl.runs.records import EvalSummary, as_summary


def leak_free_summary(run: Path, split: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"leak_free": {...}}`` for ``split`` of ``run`` when ``RUN/leaks.json`` lists
    leaked images in it: the number left, the number leaked and Dice/IoU (or accuracy)
    over the images without a duplicate in train; ``{}`` otherwise."""
    leaked = set(read_leaks(run).get(split) or [])
    if not leaked:
        return {}
    clean = [r for r in rows if r["image"] not in leaked]
    out: dict[str, Any] = {"n_images": len(clean), "n_leaked": len(rows) - len(clean)}
    for key in ("dice", "iou"):
        if rows and key in rows[0]:
            out[key] = aggregate([r[key] for r in clean])
    if rows and "prediction" in rows[0]:
        known = [r for r in clean if r.get("class")]
        out["accuracy"] = aggregate([float(r["prediction"] == r["class"]) for r in known])
    return {"leak_free": out}


def leak_free_lines(summary: EvalSummary | dict[str, Any]) -> list[str]:
    """The console line of a summary's leak-free subset (none without one), from its typed
    ``leak_free`` block."""
    lf = as_summary(summary).leak_free
    if lf is None:
        return []
    got = ", ".join(f"{k} {v:.4f}" for k, v in lf.means.items())
    return [
        f"  leak-free subset: {lf.n_images} images ({lf.n_leaked} with a duplicate in "
        f"train left out): {got}"
    ]
