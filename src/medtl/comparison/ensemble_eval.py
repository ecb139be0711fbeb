"""The fold ensemble's evaluation, through the single run's evaluation code.

The ensemble is one network (:class:`medtl.comparison.ensemble.FoldEnsemble`); its images,
per-image rows, masks, plots and ``summary.json`` come from the same functions
``medtl evaluate RUN`` uses (:mod:`medtl.evaluation.evaluate`), written into
``CELL/ensemble/eval/<split>/`` through a staging folder swapped in when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medtl.configuration.loading import Config
from medtl.data.pipeline import prepare
from medtl.evaluation.evaluate import (  # the single-run evaluation: one implementation
    _choose_split,
    _predict_records,
    _write_results,
)
from medtl.evaluation.output import staging_folder, writer_lock
from medtl.evaluation.split_loss import mean_loss
from medtl.inference.engine import net_device
from medtl.runs.folder import run_scheme
from medtl.runtime.cpu import threads_for
from medtl.utils.files import swap_in

__all__ = ["run_evaluation"]


def run_evaluation(
    folder: Path,
    runs: list[Path],
    net: torch.nn.Module,
    cfg: Config,
    classes: list[str],
    split: str,
    tta: bool,
    save_images: int,
    plots: bool,
    postprocess: str | None = None,
) -> dict[str, Any]:
    """Score ``net`` (the ensemble of ``runs``) on ``split`` of the first run's splits.json
    into ``folder/eval/<split>/``, masks under ``postprocess`` (a rule of
    :mod:`medtl.inference.postprocess`; Dice before and after it in the summary); returns the summary
    (also in summary.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg.data.group_duplicates = False  # grouping only matters for splitting
    with writer_lock(folder), threads_for(cfg):
        scheme = run_scheme(cfg)  # the members' masks, as the first run recorded them
        prepared = prepare(cfg, scheme=scheme)
        split, indices = _choose_split(runs[0], prepared, split)
        out_dir = folder / "eval" / split
        staging = staging_folder(out_dir, None)
        device = net_device(net)  # the members' device (load_ensemble)
        records = _predict_records(
            net,
            cfg,
            prepared,
            indices,
            classes,
            staging,
            tta,
            save_images,
            device,
            None,
            postprocess,
        )
        summary: dict[str, Any] = {
            "run": str(folder),
            "ensemble": [str(r) for r in runs],
            "split": split,
            "n_images": len(records),
            "tta": tta,
            "inference": net.describe() if hasattr(net, "describe") else "eager",
            "task": cfg.task,
            "out_dir": str(out_dir),
            "checkpoint": "best",
            "loss": mean_loss(records),
            "postprocess": postprocess,  # -> Dice before/after (medtl.inference.postprocess)
        }
        _write_results(folder, cfg, records, classes, summary, staging, plots, scheme)
        swap_in(staging, out_dir)
    return summary
