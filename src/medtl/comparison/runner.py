"""Running a comparison: every cell on every fold, skipping finished runs, resuming
interrupted ones, optionally one shard of the cells per machine."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from medtl.comparison.collect import collect
from medtl.comparison.design import TIMING_FILE, cell_config, prepare_design, run_finished
from medtl.comparison.grid import base_and_cells, cell_label
from medtl.comparison.throughput import throughput
from medtl.configuration.loading import Config
from medtl.data.cache.modes import reusing_decoded
from medtl.data.masks.scheme import MaskScheme
from medtl.utils import parallel
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write_json
from medtl.utils.locks import folder_lock

__all__ = ["compare", "run_fold"]

log = logging.getLogger("medtl")


def _train_fold(
    cfg: Config,
    run: Path,
    splits: dict[str, list[int]],
    progress: bool,
    scheme: MaskScheme | None = None,
) -> str:
    """Train ``run`` from scratch, or resume it from its last checkpoint (``scheme``: the
    comparison's mask scheme, None to decide it from the files)."""
    from medtl.training.fit import train

    if scheme is not None:  # this cell's data.mask_resize on the comparison's decision
        scheme = scheme.resized(cfg.data.mask_resize)
    if (run / "checkpoints" / "last.ckpt").is_file():
        cfg.train.resume = str(run)
        got = train(cfg, progress=progress, scheme=scheme)
        done = "resumed"
    else:
        if run.exists():  # killed before its first checkpoint: nothing worth keeping
            with folder_lock(run, "training"):  # unless a live process is training it
                shutil.rmtree(run)
        got = train(cfg, progress=progress, splits=splits, scheme=scheme)
        done = "trained"
    if Path(got).resolve() != run.resolve():
        raise MedtlError(f"{got}: expected the run in {run}; remove {run.parent} and re-run")
    return done


def run_fold(
    cfg: Config,
    run: Path,
    splits: dict[str, list[int]],
    eval_split: str,
    progress: bool,
    scheme: MaskScheme | None = None,
) -> str:
    """Train (or resume) and evaluate one cell on one fold; returns what was done.

    ``scheme``: the comparison's mask scheme (decided once by the design; the evaluation
    reads it back from the run's config.yaml), None to let training decide it.

    Writes ``RUN/timing.json`` (training wall time, evaluation time, inference throughput).
    A fold with a held-out test split is evaluated on it too (``eval/test``).
    """
    from medtl.evaluation.evaluate import evaluate
    from medtl.runs.folder import reuse_bundles

    wanted = [eval_split] + (["test"] if splits.get("test") and eval_split != "test" else [])
    if all(run_finished(run, s) for s in wanted):
        return "skipped (finished)"
    timing: dict[str, Any] = {}
    done = "evaluated"
    if not (run / "model.pt").is_file():
        t0 = time.perf_counter()
        done = _train_fold(cfg, run, splits, progress, scheme)
        timing["train_wall_s"] = time.perf_counter() - t0
    with reuse_bundles():  # the fold's model.pt is built once for both splits and the speed
        t0 = time.perf_counter()
        for split in wanted:
            evaluate(run, split=split, plots=False, device=cfg.train.accelerator)
        timing["eval_s"] = time.perf_counter() - t0
        timing.update(throughput(run, device=cfg.train.accelerator))
    atomic_write_json(run / TIMING_FILE, timing)
    return done


def _run_cell(
    config_file: str | Path | None,
    base: list[str],
    cells: list[list[str]],
    p: int,
    splits: list[dict[str, list[int]]],
    run_parent: Path,
    eval_split: str,
    progress: bool,
    scheme: MaskScheme | None = None,
) -> None:
    """Every fold of cell ``p`` (the caller holds the cell's lock), each trained with the
    comparison's mask ``scheme``."""
    for k, fold_splits in enumerate(splits):
        cfg = cell_config(config_file, base, cells[p], run_parent, k)
        t0 = time.perf_counter()
        done = run_fold(cfg, run_parent / f"fold{k}", fold_splits, eval_split, progress, scheme)
        log.info(
            f"cell {p + 1}/{len(cells)} [{cell_label(cells[p])}] fold {k + 1}/{len(splits)}: "
            f"{done} ({time.perf_counter() - t0:.1f}s)"
        )
    if len(splits) > 1 and splits[0].get("test"):  # the K fold models as one, on the test split
        from medtl.comparison.ensemble import evaluate_cell_ensemble

        evaluate_cell_ensemble(run_parent, skip_finished=True)


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


@reusing_decoded  # every cell and fold (and the design's grouping) share one decode
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
    test_fraction: float | None = None,
) -> Path:
    """Train every configuration of ``grid`` on every fold; returns ``out``.

    ``test_fraction`` (``--test-fraction``) sets ``data.test_fraction`` for every cell: with
    folds, the share held out as a test split no fold sees (a pre-made ``test/`` folder
    instead when the data has one; 0 puts every image in the folds, see
    :mod:`medtl.comparison.holdout`). Each fold model and the fold ensemble are scored on it.

    ``cell_list`` gives the cells explicitly (each a list of overrides) instead of the
    cartesian product of ``grid`` (e.g. frozen+imagenet, finetune+imagenet, finetune+none).

    ``base_overrides`` apply to every cell; ``grid`` holds ``key=a,b`` sweeps (see
    :func:`medtl.comparison.expand_grid`). With ``folds >= 2`` each cell is trained k times on
    the folds of :func:`medtl.data.splits.kfold` and evaluated on the held-out fold; with
    ``folds=0`` all cells share one seeded train/val/test split and are evaluated on
    ``eval_split``. Finished cells are skipped and interrupted ones resumed, so re-running
    is safe. ``shard=(i, n)`` runs only the cells at positions ``p`` with
    ``p % n == i - 1``; without a shard, :func:`medtl.comparison.collect` writes the results
    table at the end.
    """
    out = Path(out).absolute()
    if test_fraction is not None:
        base_overrides = [*base_overrides, f"data.test_fraction={test_fraction}"]
    shard_i, shard_n = _parse_shard(shard)
    _check_folds(folds, eval_split)
    base, cells = base_and_cells(base_overrides, grid, cell_list)
    # the folds and the mask scheme, decided once here for every cell and fold
    design, splits, scheme = prepare_design(out, base, grid, cells, config_file, folds, eval_split)
    ids = [c["id"] for c in design["cells"]]
    mine = range(shard_i - 1, len(cells), shard_n)
    for p in parallel.progress(mine, len(mine), "comparison cells"):
        run_parent = out / "cells" / ids[p]
        run_parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(run_parent, "a comparison cell"):  # a second compare stops here
            _run_cell(config_file, base, cells, p, splits, run_parent, eval_split, progress, scheme)
    if shard is None or shard_n == 1:
        collect(out)
    else:
        log.info(
            f"shard {shard_i}/{shard_n} done; merge all shards with 'medtl compare --collect {out}'"
        )
    return out
