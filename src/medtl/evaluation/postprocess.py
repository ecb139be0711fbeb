"""The post-processing of a comparison chosen on cross-validation, as nnU-Net does, and
evaluate's before/after summary of the applied rule.

After a comparison's folds, :func:`choose_for_cell` re-scores every fold's out-of-fold
predictions (``foldK/eval/<split>/predictions/*_pred.png``, or a multilabel run's
``*_<structure>.png``, against the truth masks at the original size) under ``none`` and each of :data:`CANDIDATES`, and keeps the rule with the
highest CV Dice only when it raises the Dice of ``none``; the choice and every candidate's
CV Dice go to ``CELL/postprocess.json``, which the fold ensemble's evaluate and predict
apply (rules: :mod:`medtl.inference.postprocess`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medtl.inference.postprocess import POSTPROCESS_FILE, apply_rule, parse_rule
from medtl.runs.records import EvalSummary, as_summary, read_postprocess
from medtl.utils.files import atomic_write_json

__all__ = [
    "CANDIDATES",
    "choose_for_cell",
    "choose_rule",
    "dice_function",
    "postprocess_lines",
    "postprocess_summary",
    "scored",
]

log = logging.getLogger("medtl")
CANDIDATES = ("largest", "min_area=0.1%", "min_area=0.5%", "min_area=1%")


def scored(
    pred: np.ndarray, truth: np.ndarray, rule: str | None, row: dict, scheme: Any, empty: str
) -> np.ndarray:
    """``pred`` under ``rule``; with a rule, ``row["dice_raw"]`` is the image's Dice before it
    (as :func:`dice_function` scores it): the per-image column evaluate writes beside Dice."""
    if parse_rule(rule) is None:
        return pred
    row["dice_raw"] = round(float(dice_function(scheme, empty)(pred, truth)), 6)
    return apply_rule(pred, rule, _multilabel(scheme))


def _multilabel(scheme: Any) -> bool:
    return bool(getattr(scheme, "multilabel", False))


def choose_rule(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    dice_of,
    candidates: tuple[str, ...] = CANDIDATES,
    multilabel: bool = False,
) -> dict[str, Any]:
    """The rule among ``candidates`` with the highest mean Dice over ``pairs`` (out-of-fold
    ``(pred, truth)``), kept only when it beats no post-processing; ``rule`` is None
    otherwise (``multilabel``: masks with structure ``k`` in bit ``k``, each structure
    processed on its own). Returns ``{"rule", "dice_before", "dice_after", "cv_dice": {rule:
    Dice}}``."""

    def after(p: np.ndarray, r: str | None) -> np.ndarray:
        return apply_rule(p, r, multilabel)

    cv = {
        name: float(np.mean([dice_of(after(p, r), t) for p, t in pairs])) if pairs else 0.0
        for name, r in (("none", None), *((c, c) for c in candidates))
    }
    best = max(candidates, key=lambda c: cv[c]) if candidates else "none"
    rule = best if cv[best] > cv["none"] + 1e-9 else None
    return {
        "rule": rule,
        "dice_before": cv["none"],
        "dice_after": cv[rule or "none"],
        "cv_dice": cv,
        "n_images": len(pairs),
    }


def _out_of_fold(
    runs: list[Path], split: str, cfg: Any, scheme: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(pred, truth)`` at the original size for every image a fold model did not train on
    (``cfg``, ``scheme``: the first fold's config and mask scheme)."""
    from medtl.data.cache.decode import read_originals
    from medtl.data.pipeline import prepare
    from medtl.inference.engine import safe_name
    from medtl.utils.files import read_csv

    cfg.data.group_duplicates = False
    ds = prepare(cfg, scheme=scheme).dataset
    where = {str(s.image): i for i, s in enumerate(ds.samples)}
    pairs = []
    for run in runs:
        folder = run / "eval" / split
        rows = read_csv(folder / "per_image.csv")
        idx = [where[r["image"]] for r in rows if r["image"] in where]
        truth = read_originals(ds.samples, idx, ds.window, ds.fallback_window, scheme)
        for i in idx:
            s = ds.samples[i]
            name = safe_name(f"{s.label + '_' if s.label else ''}{s.image.stem}")
            pred = _read_pred(folder / "predictions" / f"{name}_pred.png", scheme)
            if pred is not None:
                pairs.append((pred, truth[i][1]))
    return pairs


def _read_pred(path: Path, scheme: Any) -> np.ndarray | None:
    """A saved predicted mask as evaluate scores it; a multilabel run's one file per
    structure (``<name>_<structure>.png``) packed into bits (None when one is missing)."""
    from PIL import Image

    if _multilabel(scheme):
        from medtl.inference.engine import structure_paths

        files = structure_paths(path, scheme)
        if not all(f.is_file() for f in files):
            return None
        bits = [
            (np.asarray(Image.open(f)) > 127).astype(np.uint8) << k for k, f in enumerate(files)
        ]
        return np.sum(bits, axis=0, dtype=np.uint8)
    if not path.is_file():
        return None
    arr = np.asarray(Image.open(path))
    return scheme.to_index(arr, path) if scheme is not None else arr > 127


def dice_function(scheme: Any, empty: str):
    """``dice_of(pred, truth)``: an image's Dice as evaluate scores it (label maps: the mean
    over labels), for :func:`scored` and :func:`choose_rule`."""
    from medtl.evaluation.labels import image_scores

    return lambda p, t: image_scores(p, t, scheme, empty)["dice"]


def choose_for_cell(
    cell: Path, runs: list[Path], split: str = "val", write: bool = True
) -> dict[str, Any] | None:
    """The post-processing of a configuration chosen on its folds' out-of-fold predictions
    (``CELL/postprocess.json``; reused while newer than every fold's evaluation). None for a
    classification comparison."""
    from medtl.runs.folder import read_config, run_scheme

    cfg = read_config(runs[0])
    if cfg.task == "classification":
        return None
    path = cell / POSTPROCESS_FILE
    sources = [r / "eval" / split / "per_image.csv" for r in runs]
    if path.is_file() and all(path.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return read_postprocess(path)
    scheme = run_scheme(cfg)  # the folds' masks, as training decided them
    dice_of = dice_function(scheme, cfg.train.empty_mask)
    pairs = _out_of_fold(runs, split, cfg, scheme)
    doc = choose_rule(pairs, dice_of, multilabel=_multilabel(scheme))
    doc.update(source=f"out-of-fold predictions, eval/{split} of {len(runs)} fold(s)")
    log.info(
        f"{cell.name}: post-processing {doc['rule'] or 'none'} (CV Dice "
        f"{doc['dice_before']:.4f} -> {doc['dice_after']:.4f})"
    )
    if write:
        atomic_write_json(path, doc)
    return doc


# ----------------------------------------------------------------------------- evaluate's summary
def postprocess_summary(rows: list[dict[str, Any]], rule: str | None) -> dict[str, Any]:
    """``{"postprocess": {"rule", "dice_before", "dice_after"}}`` over an evaluation's rows
    (empty without a rule): Dice before and after the rule on the same images."""
    if parse_rule(rule) is None:
        return {}
    before = [float(r["dice_raw"]) for r in rows if "dice_raw" in r]
    after = [float(r["dice"]) for r in rows if "dice_raw" in r]
    pp = {"rule": rule, "dice_before": _mean(before), "dice_after": _mean(after)}
    return {"postprocess": pp}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def postprocess_lines(summary: EvalSummary | dict[str, Any]) -> list[str]:
    """The console line of :func:`postprocess_summary` for ``format_summary`` (the
    summary's typed ``postprocess`` block)."""
    pp = as_summary(summary).postprocess
    if pp is None:
        return []
    return [
        f"  post-processing {pp.rule}: Dice {pp.dice_before:.4f} before, {pp.dice_after:.4f} after"
    ]
