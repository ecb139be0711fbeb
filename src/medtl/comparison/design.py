"""The design of a comparison: one config per cell, the shared folds, ``OUT/compare.json``.

Every cell trains on the same folds (grouped, stratified k-fold of the samples with
``data.seed``; without folds, one seeded train/val/test split), so scores are paired by
image and by fold. The design is written once and checked on every re-run: a folder holds
one comparison, continued (never silently replaced) by the same settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtl.comparison.grid import cell_id
from medtl.comparison.records import DESIGN_FILE, Design, write_design
from medtl.configuration.loading import Config, load_config
from medtl.data.masks.scheme import MaskScheme
from medtl.utils.errors import ConfigError, DataError, MedtlError

__all__ = [
    "DESIGN_FILE",
    "FORMAT",
    "PAIRED_KEYS",
    "TIMING_FILE",
    "cell_config",
    "prepare_design",
    "read_design",
    "run_finished",
]

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
    # the masks' meaning: decided once for the whole comparison (one scan of the mask files)
    "data.mask_mode",
    "data.labels",
    "data.mask_colors",
)
# design entries that must match when a folder is continued
_DESIGN_KEYS = ("base_overrides", "config_file", "folds", "eval_split", "cells")

Splits = list[dict[str, list[int]]]
Found = tuple["Splits", Sequence[Any], "MaskScheme | None"]


def run_finished(run: Path, split: str) -> bool:
    """True when ``run`` holds a trained model and its evaluation on ``split``."""
    return (run / "model.pt").is_file() and (run / "eval" / split / "summary.json").is_file()


def cell_config(
    config_file: str | Path | None, base: list[str], cell: list[str], run_parent: Path, fold: int
) -> Config:
    """The config of one cell on one fold: its run folder is ``run_parent/fold<k>``."""
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
) -> Splits:
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


def _make_splits(cfg: Config, folds: int) -> Found:
    from medtl.comparison.holdout import cv_splits
    from medtl.data.pipeline import load_samples
    from medtl.data.splits import make_splits

    ds = load_samples(cfg)  # grouped: duplicate groups never straddle folds
    samples = ds.samples
    if folds:  # a test split no fold sees (none with data.test_fraction=0), then K folds
        return (
            cv_splits(samples, folds, cfg.data.test_fraction, cfg.data.seed),
            samples,
            ds.mask_scheme,
        )
    split = make_splits(samples, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed)
    return [split], samples, ds.mask_scheme


def read_design(out: Path) -> dict[str, Any]:
    """``OUT/compare.json`` as a dict, its shape checked (:class:`Design`; MedtlError when
    OUT is not a comparison folder)."""
    return Design.read(out).doc


def _splits_of(out: Path, design: dict[str, Any], cfg: Config) -> Found:
    """The folds of a continued comparison (as recorded), or new ones, with the data's mask
    scheme (None without masks), decided here once for every cell and fold."""
    if not (out / DESIGN_FILE).is_file():
        return _make_splits(cfg, design["folds"])
    previous = read_design(out)
    changed = [k for k in _DESIGN_KEYS if previous.get(k) != design[k]]
    if changed:
        raise MedtlError(
            f"{out / DESIGN_FILE} holds another comparison (different {', '.join(changed)}); "
            "use a new --out, or the same settings to continue it"
        )
    from medtl.data.pipeline import load_samples

    ds = load_samples(cfg)
    found = _paths_to_indices(previous["splits"], ds.samples, out / DESIGN_FILE)
    return found, ds.samples, ds.mask_scheme


def prepare_design(
    out: Path,
    base: list[str],
    grid: list[str],
    cells: list[list[str]],
    config_file: str | Path | None,
    folds: int,
    eval_split: str,
) -> tuple[dict[str, Any], Splits, MaskScheme | None]:
    """Check the cells are paired, fix the folds and write ``OUT/compare.json``.

    Returns:
        The design (as written), the folds as sample indices and the data's mask scheme
        (decided here, once: every cell and fold trains with it; None without masks).

    Raises:
        ConfigError: a :data:`PAIRED_KEYS` value differs between cells.
        MedtlError: ``out`` holds another comparison.
    """
    ids = [cell_id(c) for c in cells]
    configs = [
        cell_config(config_file, base, c, out / "cells" / i, 0)
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
    splits, samples, scheme = _splits_of(out, design, configs[0])
    design["splits"] = [
        {name: [str(samples[i].image) for i in idx] for name, idx in fold.items()}
        for fold in splits
    ]
    design["n_images"] = len(samples)
    write_design(out, design)
    return design, splits, scheme
