"""``compare``: a grid of configurations x folds trained on identical splits (a paired
design), then one results table with bootstrap CIs and paired tests against the best.

Layout of a comparison folder::

    OUT/compare.json                      the design: grid, base overrides, folds, seed, splits
    OUT/cells/<cell_id>/fold<k>/          one run folder per configuration and fold
    OUT/cells/<cell_id>/fold<k>/timing.json   inference throughput measured after training
    OUT/results.{json,csv,md}             written by :func:`collect`

Every cell trains on the same folds (grouped, stratified k-fold of the samples with
``data.seed``; without folds, one seeded train/val/test split), so scores are paired by image
and by fold. Cells can be spread over machines with ``shard=(i, n)`` and merged with
:func:`collect`; same seeds give the same table either way.

Example::

    from medtl.compare import compare
    compare(["data.root=phantoms", "train.epochs=5"], ["model.strategy=frozen,finetune"],
            folds=5, out=Path("cmp"))
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtl.config import Config, load_config, parse_override
from medtl.engine.metrics import (
    aggregate,
    bootstrap_ci,
    classification_scores,
    paired_bootstrap_pvalue,
    wilcoxon_pvalue,
)
from medtl.errors import ConfigError, DataError, MedtlError
from medtl.io_utils import atomic_write_json, atomic_write_text, csv_text, read_csv

log = logging.getLogger("medtl")

DESIGN_FILE = "compare.json"
TIMING_FILE = "timing.json"
FORMAT = "medtl-compare-1"
# config values that must be equal in every cell, or the cells would not share their splits
PAIRED_KEYS = (
    "task",
    "data.root",
    "data.layout",
    "data.group_duplicates",
    "data.seed",
    "data.val_fraction",
    "data.test_fraction",
)
SEG_METRICS = ("dice", "iou")
CLS_METRICS = ("accuracy", "macro_f1", "auroc")
PRIMARY = {"segmentation": "dice", "classification": "macro_f1", "multitask": "score"}
N_BOOT = 2000


# ----------------------------------------------------------------------------- the grid
def _split_top_level(value: str) -> list[str]:
    """Split on commas outside brackets/braces/parentheses and quotes (Hydra's sweep rule)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(value):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return [p.strip() for p in parts]


def _sweeps(overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    seen: set[str] = set()
    out = []
    for text in overrides:
        key, value = parse_override(text)
        if key in seen:
            raise ConfigError(f"override '{key}' is given twice; give it once, e.g. {key}=a,b")
        seen.add(key)
        values = _split_top_level(value)
        if len(values) > 1 and any(v == "" for v in values):
            raise ConfigError(f"override '{text}' has an empty value in its list; e.g. {key}=a,b")
        out.append((key, values))
    return out


def expand_grid(overrides: list[str]) -> list[list[str]]:
    """The cartesian product of ``key=a,b`` sweeps (Hydra-like), first key varying slowest.

    Keys without a comma are fixed and appear in every cell; a bracketed list or a quoted
    value (``key=[a,b]``, ``key="a,b"``) is one value.

    >>> expand_grid(["model.encoder=resnet18,vgg11", "train.lr=0.01", "model.strategy=frozen,finetune"])[:2]
    [['model.encoder=resnet18', 'train.lr=0.01', 'model.strategy=frozen'], ['model.encoder=resnet18', 'train.lr=0.01', 'model.strategy=finetune']]
    """
    sweeps = _sweeps(overrides)
    choices = [[f"{key}={v}" for v in values] for key, values in sweeps]
    return [list(cell) for cell in itertools.product(*choices)]


def cell_id(overrides: Sequence[str]) -> str:
    """A stable folder name for a cell: readable slug + 8 hex digits of its overrides' hash."""
    digest = hashlib.sha1("\n".join(overrides).encode("utf-8")).hexdigest()[:8]
    words = []
    for text in overrides:
        key, value = parse_override(text)
        words.append(f"{key.rsplit('.', 1)[-1]}-{value}")
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(words)).strip("-.")[:48].rstrip("-.")
    return f"{slug or 'base'}-{digest}"


def cell_label(overrides: Sequence[str]) -> str:
    return " ".join(overrides) if overrides else "(base config)"


# ----------------------------------------------------------------------------- design
def _cell_config(
    config_file: str | Path | None, base: list[str], cell: list[str], run_parent: Path, fold: int
) -> Config:
    cfg = load_config(config_file, base + cell)
    cfg.output.dir = str(run_parent)
    cfg.output.name = f"fold{fold}"
    cfg.train.resume = None
    return cfg


def _value(cfg: Config, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _check_paired(configs: list[Config]) -> None:
    for key in PAIRED_KEYS:
        values = {repr(_value(c, key)) for c in configs}
        if len(values) > 1:
            raise ConfigError(
                f"'{key}' differs between cells ({', '.join(sorted(values))}); a comparison "
                f"needs the same data and splits in every cell: set {key} once, outside the grid"
            )


def _paths_to_indices(
    design_splits: list[dict[str, list[str]]], samples: Sequence[Any], where: Path
) -> list[dict[str, list[int]]]:
    index = {str(s.image): i for i, s in enumerate(samples)}
    out = []
    for fold in design_splits:
        mapped = {}
        for name, paths in fold.items():
            missing = [p for p in paths if p not in index]
            if missing:
                raise DataError(
                    f"{where}: {missing[0]} is no longer in the data; use the same data.root "
                    "or a new --out"
                )
            mapped[name] = [index[p] for p in paths]
        out.append(mapped)
    return out


def _make_splits(cfg: Config, folds: int) -> tuple[list[dict[str, list[int]]], Sequence[Any]]:
    from medtl.data.pipeline import grouped_samples
    from medtl.data.splits import kfold, make_splits

    samples = grouped_samples(cfg).samples  # duplicate groups never straddle folds
    if folds:
        return kfold(samples, folds, cfg.data.seed), samples
    split = make_splits(samples, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed)
    return [split], samples


def read_design(out: Path) -> dict[str, Any]:
    """``OUT/compare.json`` as a dict (MedtlError when OUT is not a comparison folder)."""
    path = Path(out) / DESIGN_FILE
    if not path.is_file():
        raise MedtlError(
            f"{path} not found; {out} is not a comparison folder (run 'medtl compare ... --out {out}')"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise MedtlError(
            f"{path} is not valid JSON; delete {out} and run the comparison again"
        ) from None


_DESIGN_KEYS = ("base_overrides", "config_file", "folds", "eval_split", "cells")


# ----------------------------------------------------------------------------- running cells
def run_finished(run: Path, split: str) -> bool:
    return (run / "model.pt").is_file() and (run / "eval" / split / "summary.json").is_file()


def _throughput(run: Path, min_s: float = 0.25, min_iters: int = 3) -> dict[str, Any]:
    """Forward-pass images/s of the saved model on this machine's CPU (batch = train batch)."""
    import torch

    from medtl.inference import infer
    from medtl.runs import load_bundle

    net, cfg, _ = load_bundle(run)
    size = cfg.data.image_size
    x = torch.rand(cfg.train.batch_size, cfg.model.in_channels, size, size)
    infer(net, x)  # warm-up: first call pays for allocation
    n, t0 = 0, time.perf_counter()
    while n < min_iters or (time.perf_counter() - t0 < min_s and n < 100):
        infer(net, x)
        n += 1
    elapsed = time.perf_counter() - t0
    return {
        "infer_img_per_s": n * x.shape[0] / elapsed,
        "infer_batch": int(x.shape[0]),
        "infer_device": "cpu",
        "threads": torch.get_num_threads(),
    }


def _run_fold(
    cfg: Config, run: Path, splits: dict[str, list[int]], eval_split: str, progress: bool
) -> str:
    """Train (or resume) and evaluate one cell on one fold; returns what was done."""
    from medtl.evaluate import evaluate
    from medtl.training import train

    if run_finished(run, eval_split):
        return "skipped (finished)"
    timing: dict[str, Any] = {}
    done = "evaluated"
    if not (run / "model.pt").is_file():
        t0 = time.perf_counter()
        if (run / "checkpoints" / "last.ckpt").is_file():
            cfg.train.resume = str(run)
            got = train(cfg, progress=progress)
            done = "resumed"
        else:
            if run.exists():  # killed before its first checkpoint: nothing worth keeping
                shutil.rmtree(run)
            got = train(cfg, progress=progress, splits=splits)
            done = "trained"
        if Path(got).resolve() != run.resolve():
            raise MedtlError(f"{got}: expected the run in {run}; remove {run.parent} and re-run")
        timing["train_wall_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(run, split=eval_split, plots=False)
    timing["eval_s"] = time.perf_counter() - t0
    timing.update(_throughput(run))
    atomic_write_json(run / TIMING_FILE, timing)
    return done


def _parse_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 1, 1
    i, n = int(shard[0]), int(shard[1])
    if n < 1 or not 1 <= i <= n:
        raise MedtlError(f"--shard {i}/{n} is invalid; give I/N with 1 <= I <= N, e.g. --shard 1/4")
    return i, n


def compare(
    base_overrides: list[str],
    grid: list[str],
    folds: int = 0,
    out: Path = Path("compare"),
    config_file: str | Path | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    eval_split: str = "val",
    cell_list: list[list[str]] | None = None,
) -> Path:
    """Train every configuration of ``grid`` on every fold; returns ``out``.

    ``cell_list`` gives the cells explicitly (each a list of overrides) instead of the
    cartesian product of ``grid`` (e.g. frozen+imagenet, finetune+imagenet, finetune+none).

    ``base_overrides`` apply to every cell; ``grid`` holds ``key=a,b`` sweeps (see
    :func:`expand_grid`). With ``folds >= 2`` each cell is trained k times on the folds of
    :func:`medtl.data.splits.kfold` and evaluated on the held-out fold; with ``folds=0`` all
    cells share one seeded train/val/test split and are evaluated on ``eval_split``.
    Finished cells are skipped and interrupted ones resumed, so re-running is safe.
    ``shard=(i, n)`` runs only the cells at positions ``p`` with ``p % n == i - 1``;
    without a shard, :func:`collect` writes the results table at the end.
    """
    out = Path(out).absolute()
    shard_i, shard_n = _parse_shard(shard)
    if folds == 1 or folds < 0:
        raise MedtlError(f"--folds {folds}: give 0 (one shared split) or k >= 2")
    if eval_split not in ("val", "test"):
        raise MedtlError(f"eval split '{eval_split}' is not val or test; use val")
    if folds and eval_split != "val":
        raise MedtlError("with --folds every fold is evaluated on its held-out part; use val")
    sweeps = _sweeps(grid)
    fixed = [f"{k}={v[0]}" for k, v in sweeps if len(v) == 1]
    base = list(base_overrides) + fixed
    cells = expand_grid([f"{k}={','.join(v)}" for k, v in sweeps if len(v) > 1])
    if cell_list is not None:
        if cells != [[]]:
            raise MedtlError("give the cells either as key=a,b sweeps or as --cell lists, not both")
        cells = [list(c) for c in cell_list]
    ids = [cell_id(c) for c in cells]
    configs = [
        _cell_config(config_file, base, c, out / "cells" / i, 0)
        for c, i in zip(cells, ids, strict=True)
    ]
    _check_paired(configs)
    design: dict[str, Any] = {
        "format": FORMAT,
        "base_overrides": base,
        "grid": list(grid),
        "config_file": str(Path(config_file).absolute()) if config_file else None,
        "folds": int(folds),
        "eval_split": eval_split,
        "seed": configs[0].data.seed,
        "train_seed": configs[0].train.seed,
        "task": configs[0].task,
        "cells": [{"id": i, "overrides": c} for i, c in zip(ids, cells, strict=True)],
    }
    previous = read_design(out) if (out / DESIGN_FILE).is_file() else None
    if previous is not None:
        changed = [k for k in _DESIGN_KEYS if previous.get(k) != design[k]]
        if changed:
            raise MedtlError(
                f"{out / DESIGN_FILE} holds another comparison (different {', '.join(changed)}); "
                "use a new --out, or the same settings to continue it"
            )
        from medtl.data.pipeline import load_samples

        samples = load_samples(configs[0]).samples
        splits = _paths_to_indices(previous["splits"], samples, out / DESIGN_FILE)
    else:
        splits, samples = _make_splits(configs[0], folds)
    design["splits"] = [
        {name: [str(samples[i].image) for i in idx] for name, idx in fold.items()}
        for fold in splits
    ]
    design["n_images"] = len(samples)
    atomic_write_json(out / DESIGN_FILE, design)

    mine = [p for p in range(len(cells)) if p % shard_n == shard_i - 1]
    for p in mine:
        for k, fold_splits in enumerate(splits):
            run_parent = out / "cells" / ids[p]
            cfg = _cell_config(config_file, base, cells[p], run_parent, k)
            t0 = time.perf_counter()
            done = _run_fold(cfg, run_parent / f"fold{k}", fold_splits, eval_split, progress)
            log.info(
                f"cell {p + 1}/{len(cells)} [{cell_label(cells[p])}] fold {k + 1}/{len(splits)}: "
                f"{done} ({time.perf_counter() - t0:.1f}s)"
            )
    if shard is None or shard_n == 1:
        collect(out)
    else:
        log.info(
            f"shard {shard_i}/{shard_n} done; merge all shards with 'medtl compare --collect {out}'"
        )
    return out


# ----------------------------------------------------------------------------- collecting
def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    cm = np.zeros((n_classes, n_classes))
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return float(f1.mean())


def _bootstrap_stat(
    n: int, stat: Callable[[np.ndarray], float], seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of a statistic of resampled image indices (NaN draws dropped)."""
    if n < 2:
        value = stat(np.arange(n)) if n else math.nan
        return value, value
    rng = np.random.default_rng(seed)
    draws = np.array([stat(rng.integers(0, n, n)) for _ in range(N_BOOT)])
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return math.nan, math.nan
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def _fold_stats(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    lo, hi = bootstrap_ci(finite, n_boot=N_BOOT, seed=0)
    return {
        "values": [float(x) for x in v],
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else math.nan),
        "n": int(finite.size),
        "ci_low": lo,
        "ci_high": hi,
    }


def _cls_pooled(rows: list[dict[str, str]], classes: list[str]) -> dict[str, dict[str, Any]]:
    known = [r for r in rows if r.get("class") in classes]
    y = np.array([classes.index(r["class"]) for r in known], dtype=np.int64)
    probs = np.array([[_float(r.get(f"p_{c}")) for c in classes] for r in known], dtype=float)
    probs = probs.reshape(len(known), len(classes))
    pred = probs.argmax(1) if len(known) else np.zeros(0, np.int64)
    scores = classification_scores(y, probs, classes)
    correct = (pred == y).astype(float)

    def auroc(idx: np.ndarray) -> float:
        if len(np.unique(y[idx])) < 2:
            return math.nan
        return float(classification_scores(y[idx], probs[idx], classes)["auroc_macro"])

    out = {"accuracy": aggregate(correct, n_boot=N_BOOT, seed=0)}
    for name, value, stat in (
        ("macro_f1", scores["macro_avg"]["f1"], lambda i: _macro_f1(y[i], pred[i], len(classes))),
        ("auroc", scores["auroc_macro"], auroc),
    ):
        lo, hi = _bootstrap_stat(len(known), stat)
        out[name] = {
            "mean": float(value),
            "std": None,
            "n": len(known),
            "ci_low": lo,
            "ci_high": hi,
        }
    out["_confusion_matrix"] = scores["confusion_matrix"]  # type: ignore[assignment]
    return out


def _fold_cls(summary: dict[str, Any]) -> dict[str, float]:
    c = summary.get("classification") or {}
    return {
        "accuracy": _float(c.get("accuracy")),
        "macro_f1": _float((c.get("macro_avg") or {}).get("f1")),
        "auroc": _float(c.get("auroc_macro")),
    }


def _config_result(
    cell: dict[str, Any], runs: list[Path], split: str, task: str
) -> tuple[dict[str, Any], dict[str, float]]:
    """Statistics of one configuration and its per-image paired scores (image path -> score)."""
    rows_all: list[dict[str, str]] = []
    fold_values: dict[str, list[float]] = {}
    train_s, img_s, epochs = [], [], []
    classes: list[str] = []
    for run in runs:
        rows = read_csv(run / "eval" / split / "per_image.csv")
        summary = json.loads((run / "eval" / split / "summary.json").read_text(encoding="utf-8"))
        rows_all += rows
        if task != "classification":
            for m in SEG_METRICS:
                v = np.array([_float(r.get(m)) for r in rows])
                fold_values.setdefault(m, []).append(
                    float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
                )
        if task != "segmentation":
            classes = list((summary.get("classification") or {}).get("classes") or classes)
            for m, v in _fold_cls(summary).items():
                fold_values.setdefault(m, []).append(v)
        metrics_csv = run / "metrics.csv"
        history = read_csv(metrics_csv) if metrics_csv.is_file() else []
        epochs.append(len(history))
        train_s.append(sum(_float(r.get("epoch_time_s")) for r in history))
        timing_file = run / TIMING_FILE
        if timing_file.is_file():
            img_s.append(_float(json.loads(timing_file.read_text()).get("infer_img_per_s")))

    metrics: dict[str, dict[str, Any]] = {}
    confusion = None
    if task != "classification":
        for m in SEG_METRICS:
            metrics[m] = {"images": aggregate([_float(r.get(m)) for r in rows_all], N_BOOT, 0)}
    if task != "segmentation":
        pooled = _cls_pooled(rows_all, classes)
        confusion = pooled.pop("_confusion_matrix")
        for m in CLS_METRICS:
            metrics[m] = {"images": pooled[m]}
    for m in metrics:
        metrics[m]["folds"] = _fold_stats(fold_values[m])
    if task == "multitask":
        folds_score = [
            (d + f) / 2 for d, f in zip(fold_values["dice"], fold_values["macro_f1"], strict=True)
        ]
        pooled_score = (
            metrics["dice"]["images"]["mean"] + metrics["macro_f1"]["images"]["mean"]
        ) / 2
        metrics["score"] = {
            "images": {
                "mean": pooled_score,
                "std": None,
                "n": len(rows_all),
                "ci_low": None,
                "ci_high": None,
            },
            "folds": _fold_stats(folds_score),
        }
    paired_metric = "accuracy" if task == "classification" else "dice"
    paired = {}
    for r in rows_all:
        if paired_metric == "dice":
            paired[r["image"]] = _float(r.get("dice"))
        elif r.get("class") in classes:
            paired[r["image"]] = float(r.get("prediction") == r["class"])
    result = {
        "cell": cell["id"],
        "configuration": cell_label(cell["overrides"]),
        "overrides": cell["overrides"],
        "runs": [str(Path("cells") / cell["id"] / r.name) for r in runs],
        "n_images": len(rows_all),
        "epochs": epochs,
        "primary": metrics[PRIMARY[task]]["images"]["mean"],
        "metrics": metrics,
        "timing": {
            "train_s_per_fold": [round(t, 3) for t in train_s],
            "train_s": float(np.mean(train_s)) if train_s else math.nan,
            "infer_img_per_s": float(np.nanmean(img_s)) if img_s else math.nan,
        },
    }
    if confusion is not None:
        result["confusion_matrix"] = confusion
        result["classes"] = classes
    return result, paired


def _paired_test(a: list[float], b: list[float]) -> dict[str, Any]:
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    return {
        "n": int(d.size),
        "mean_diff": float(d.mean()) if d.size else math.nan,
        "p_bootstrap": paired_bootstrap_pvalue(a, b, seed=0),
        "p_wilcoxon": wilcoxon_pvalue(a, b),
    }


def collect(out: Path, quiet: bool = False) -> dict[str, Any]:
    """Merge every finished cell under ``out`` (from any shards) into the results table.

    Writes ``results.json`` / ``results.csv`` / ``results.md`` and prints the Markdown table
    (unless ``quiet``). Configurations are ranked by the primary metric pooled over all
    held-out images (Dice; macro-F1 for classification; their mean for multitask); every
    other configuration is compared with the best on paired per-image scores (Dice;
    correctness for classification) and, with >= 3 folds, on paired per-fold primary scores.
    """
    out = Path(out).absolute()
    design = read_design(out)
    split, task, k = design["eval_split"], design["task"], max(1, design["folds"])
    configs, paired, incomplete = [], {}, []
    for cell in design["cells"]:
        runs = [out / "cells" / cell["id"] / f"fold{f}" for f in range(k)]
        missing = [f for f, r in enumerate(runs) if not run_finished(r, split)]
        if missing:
            incomplete.append(
                {
                    "cell": cell["id"],
                    "configuration": cell_label(cell["overrides"]),
                    "missing_folds": missing,
                }
            )
            continue
        result, scores = _config_result(cell, runs, split, task)
        result["position"] = len(configs) + len(incomplete)
        configs.append(result)
        paired[cell["id"]] = scores
    if not configs:
        raise MedtlError(
            f"{out}/cells holds no finished configuration; run 'medtl compare' (every shard) first"
        )
    configs.sort(
        key=lambda c: (-c["primary"] if math.isfinite(c["primary"]) else math.inf, c["position"])
    )
    best = configs[0]
    best_scores = paired[best["cell"]]
    best_folds = best["metrics"][PRIMARY[task]]["folds"]["values"]
    for rank, c in enumerate(configs, 1):
        c["rank"] = rank
        if c is best:
            c["vs_best"] = None
            continue
        keys = sorted(set(paired[c["cell"]]) & set(best_scores))
        c["vs_best"] = {
            "images": _paired_test(
                [paired[c["cell"]][i] for i in keys], [best_scores[i] for i in keys]
            )
        }
        folds = c["metrics"][PRIMARY[task]]["folds"]["values"]
        c["vs_best"]["folds"] = _paired_test(folds, best_folds) if k >= 3 else None
    results = {
        "format": "medtl-results-1",
        "task": task,
        "primary": PRIMARY[task],
        "paired_metric": "accuracy" if task == "classification" else "dice",
        "folds": design["folds"],
        "eval_split": split,
        "seed": design["seed"],
        "base_overrides": design["base_overrides"],
        "grid": design["grid"],
        "n_images": design.get("n_images"),
        "best": best["cell"],
        "configs": configs,
        "incomplete": incomplete,
    }
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.csv", results_csv(results))
    table = results_markdown(results)
    atomic_write_text(out / "results.md", table)
    if incomplete:
        log.warning(
            f"{len(incomplete)} configuration(s) not finished yet: "
            + ", ".join(i["cell"] for i in incomplete)
        )
    if not quiet:
        print(table)
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- tables
METRIC_NAMES = {
    "dice": "Dice",
    "iou": "IoU",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "auroc": "AUROC",
    "score": "score (Dice+F1)/2",
}


def shown_metrics(task: str) -> list[str]:
    return {
        "segmentation": ["dice", "iou"],
        "classification": ["macro_f1", "accuracy", "auroc"],
        "multitask": ["score", "dice", "macro_f1", "accuracy"],
    }[task]


def fmt(value: Any, digits: int = 3) -> str:
    v = _float(value)
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def fmt_p(value: Any) -> str:
    v = _float(value)
    if not math.isfinite(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def fmt_stat(
    s: dict[str, Any] | None,
    number: Any = None,
    ci: Any = None,
) -> str:
    """``mean ± std [lo, hi]`` (the parts that exist); ``number`` formats each value and
    ``ci(lo, hi)`` the interval (the HTML report wraps it in markup)."""
    number = number or fmt
    ci = ci or (lambda lo, hi: f" [{lo}, {hi}]")
    if not s:
        return "–"
    text = number(s.get("mean"))
    if s.get("std") is not None and math.isfinite(_float(s.get("std"))):
        text += f" ± {number(s['std'])}"
    if s.get("ci_low") is not None and math.isfinite(_float(s.get("ci_low"))):
        text += ci(number(s["ci_low"]), number(s["ci_high"]))
    return text


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the results table (shared by Markdown and HTML)."""
    task, paired = results["task"], results["paired_metric"]
    names = shown_metrics(task)
    head = ["rank", "configuration"]
    for i, m in enumerate(names):
        head.append(f"{METRIC_NAMES[m]} images")
        if i == 0 or results["folds"]:
            head.append(f"{METRIC_NAMES[m]} folds")
    head += [f"Δ {METRIC_NAMES[paired]} vs best", "p bootstrap", "p Wilcoxon"]
    if results["folds"] >= 3:
        head += ["p folds bootstrap", "p folds Wilcoxon"]
    head += ["train s/fold", "img/s"]
    rows = []
    for c in results["configs"]:
        row = [str(c["rank"]), c["configuration"]]
        for i, m in enumerate(names):
            row.append(fmt_stat(c["metrics"][m]["images"]))
            if i == 0 or results["folds"]:
                row.append(fmt_stat(c["metrics"][m]["folds"]) if results["folds"] else "–")
        vs = c.get("vs_best")
        if vs is None:
            row += ["best", "", ""]
            if results["folds"] >= 3:
                row += ["", ""]
        else:
            im = vs["images"]
            row += [
                f"{_float(im['mean_diff']):+.3f}",
                fmt_p(im["p_bootstrap"]),
                fmt_p(im["p_wilcoxon"]),
            ]
            if results["folds"] >= 3:
                fo = vs.get("folds") or {}
                row += [fmt_p(fo.get("p_bootstrap")), fmt_p(fo.get("p_wilcoxon"))]
        t = c.get("timing") or {}
        row += [fmt(t.get("train_s"), 1), fmt(t.get("infer_img_per_s"), 1)]
        rows.append(row)
    return head, rows


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
        f"ranked by {METRIC_NAMES[results['primary']]} pooled over held-out images.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 1 else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [
        "",
        "Values: mean ± std [95% bootstrap CI]; 'images' pools every held-out image, 'folds' "
        "summarises the per-fold means. p-values compare each configuration with the best on "
        f"paired per-image {METRIC_NAMES[results['paired_metric']]} (two-sided paired bootstrap "
        "and Wilcoxon signed-rank), without correction for multiple comparisons.",
    ]
    if results.get("incomplete"):
        lines.append("")
        lines.append(
            "Not finished yet: " + ", ".join(i["configuration"] for i in results["incomplete"])
        )
    return "\n".join(lines) + "\n"


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
            for stat in ("mean_diff", "p_bootstrap", "p_wilcoxon"):
                row[f"vs_best_{part}_{stat}"] = (vs.get(part) or {}).get(stat)
        row["n_images"] = c["n_images"]
        row["train_s_per_fold"] = c["timing"]["train_s"]
        row["infer_img_per_s"] = c["timing"]["infer_img_per_s"]
        rows.append(row)
    return csv_text(rows)
