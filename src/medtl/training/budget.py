"""``train.max_time``: a wall-clock budget for one training run.

Lightning's ``Trainer(max_time=...)`` checks the budget after every optimiser step and
stops the fit there; the run then ends like any other (model.pt = the best checkpoint's
weights, or the last weights when no validation epoch finished). :func:`budget_outcome`
says whether the budget was what stopped it, for train.log and run.json.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Timer

from medtl.runtime.device import format_duration, parse_duration
from medtl.runtime.memory import peak_memory_mb

log = logging.getLogger("medtl")


def time_budget(text: str | int | float | None) -> timedelta | None:
    """``train.max_time`` as a timedelta (None: no budget); ConfigError on a bad value."""
    return parse_duration(text)


def budget_outcome(trainer: L.Trainer, cfg: Any, elapsed: float) -> dict[str, Any] | None:
    """``{"max_time", "seconds", "stopped", "epochs_done", "note"}`` when the run had a
    budget (None otherwise); ``stopped``: the budget ended the fit before ``train.epochs``."""
    budget = time_budget(cfg.train.max_time)
    if budget is None:
        return None
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    left = timer.time_remaining("train") if timer is not None else None
    done = int(trainer.current_epoch)
    stopped = left is not None and left <= 0 and done < cfg.train.epochs
    note = (
        f"stopped at the time budget train.max_time={cfg.train.max_time} "
        f"({format_duration(budget.total_seconds())}) after {done} of {cfg.train.epochs} "
        f"epochs ({elapsed:.1f}s of fitting); model.pt is the best checkpoint's"
        if stopped
        else f"within the time budget train.max_time={cfg.train.max_time}"
    )
    return {
        "max_time": str(cfg.train.max_time),
        "seconds": budget.total_seconds(),
        "stopped": stopped,
        "epochs_done": done,
        "note": note,
    }


def record_budget(trainer: L.Trainer, cfg: Any, facts: Any, elapsed: float) -> None:
    """train.log and run.json: whether ``train.max_time`` stopped the fit (``time_budget``)
    and, for a planned recipe, the predicted against the measured fit time (``plan_check``)."""
    budget = budget_outcome(trainer, cfg, elapsed)
    if budget is not None:
        log.info(budget["note"])
        facts.update(time_budget=budget)
    if cfg.train.planned_seconds:
        planned = float(cfg.train.planned_seconds)
        check = {"predicted_s": planned, "measured_s": round(elapsed, 3)}
        check["ratio"] = round(elapsed / planned, 3)
        log.info(f"plan: predicted {planned:.1f}s of fitting, measured {elapsed:.1f}s")
        if cfg.train.planned_peak_mb:  # host RSS on CPU, torch's allocations on a GPU
            peak = peak_memory_mb(getattr(trainer.strategy.root_device, "type", "cpu"))
            check |= {"predicted_peak_mb": float(cfg.train.planned_peak_mb), "peak_mb": peak}
            log.info(
                f"plan: predicted peak memory {cfg.train.planned_peak_mb:.0f} MB, {peak:.0f} MB"
            )
        facts.update(plan_check=check)
