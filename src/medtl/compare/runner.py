"""Running a comparison: every cell on every fold, skipping finished runs, resuming
interrupted ones, optionally one shard of the cells per machine."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from medtl.compare.collect import collect
from medtl.compare.design import TIMING_FILE, cell_config, prepare_design, run_finished
from medtl.compare.grid import base_and_cells, cell_label
from medtl.compare.throughput import throughput
from medtl.config import Config
from medtl.errors import MedtlError
from medtl.io_utils import atomic_write_json

__all__ = ["compare", "run_fold"]

log = logging.getLogger("medtl")


def _train_fold(cfg: Config, run: Path, splits: dict[str, list[int]], progress: bool) -> str:
    """Train ``run`` from scratch, or resume it from its last checkpoint."""
    from medtl.training import train

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
    return done


def run_fold(
    cfg: Config, run: Path, splits: dict[str, list[int]], eval_split: str, progress: bool
) -> str:
    """Train (or resume) and evaluate one cell on one fold; returns what was done.

    Writes ``RUN/timing.json`` (training wall time, evaluation time, inference throughput).
    """
    from medtl.evaluate import evaluate

    if run_finished(run, eval_split):
        return "skipped (finished)"
    timing: dict[str, Any] = {}
    done = "evaluated"
    if not (run / "model.pt").is_file():
        t0 = time.perf_counter()
        done = _train_fold(cfg, run, splits, progress)
        timing["train_wall_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(run, split=eval_split, plots=False)
    timing["eval_s"] = time.perf_counter() - t0
    timing.update(throughput(run))
    atomic_write_json(run / TIMING_FILE, timing)
    return done


def _parse_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 1, 1
    i, n = int(shard[0]), int(shard[1])
    if n < 1 or not 1 <= i <= n:
        raise MedtlError(f"--shard {i}/{n} is invalid; give I/N with 1 <= I <= N, e.g. --shard 1/4")
    return i, n


def _check_folds(folds: int, eval_split: str) -> None:
    if folds == 1 or folds < 0:
        raise MedtlError(f"--folds {folds}: give 0 (one shared split) or k >= 2")
    if eval_split not in ("val", "test"):
        raise MedtlError(f"eval split '{eval_split}' is not val or test; use val")
    if folds and eval_split != "val":
        raise MedtlError("with --folds every fold is evaluated on its held-out part; use val")


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
    :func:`medtl.compare.expand_grid`). With ``folds >= 2`` each cell is trained k times on
    the folds of :func:`medtl.data.splits.kfold` and evaluated on the held-out fold; with
    ``folds=0`` all cells share one seeded train/val/test split and are evaluated on
    ``eval_split``. Finished cells are skipped and interrupted ones resumed, so re-running
    is safe. ``shard=(i, n)`` runs only the cells at positions ``p`` with
    ``p % n == i - 1``; without a shard, :func:`medtl.compare.collect` writes the results
    table at the end.
    """
    out = Path(out).absolute()
    shard_i, shard_n = _parse_shard(shard)
    _check_folds(folds, eval_split)
    base, cells = base_and_cells(base_overrides, grid, cell_list)
    design, splits = prepare_design(out, base, grid, cells, config_file, folds, eval_split)
    ids = [c["id"] for c in design["cells"]]
    for p in range(shard_i - 1, len(cells), shard_n):
        for k, fold_splits in enumerate(splits):
            run_parent = out / "cells" / ids[p]
            cfg = cell_config(config_file, base, cells[p], run_parent, k)
            t0 = time.perf_counter()
            done = run_fold(cfg, run_parent / f"fold{k}", fold_splits, eval_split, progress)
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
