"""``RUN/run.json``: what training knew and decided, written as data while it runs.

Written atomically by the process that owns the run folder (rank 0): at the start (status
``running``), after every epoch (its seconds), once the memory layout is chosen, and at
the end (``finished`` with the best epoch and score, or ``failed`` with a one-line error).
A resumed run keeps the epochs already recorded and appends. The report reads this file,
never train.log. Keys (format ``medtl-run-1``)::

    status, error, started, ended, data{summary, layout, n_images, classes,
    duplicate_groups{n_groups_with_duplicates, n_images_in_them, enabled},
    mask_interpretation, mask_labels}, split{train, val, test}, model{task, arch, encoder, strategy,
    weights}, memory_layout{chosen, probe_img_per_s}, monitor, epochs[{epoch, seconds}],
    best_epoch, best_score, unfreeze_epochs, train_seconds
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from medtl.data.masks.scheme import BINARY_NOTE
from medtl.runs.records import RUN_FILE, RunRecord, write_run_record
from medtl.utils.files import to_float

RUN_JSON = RUN_FILE
FORMAT = "medtl-run-1"
#: the rule data.io.binarise_mask applies (its module docstring has the details)
MASK_RULE = (
    "binary: foreground where the value is >= half the file's range (128 for 8-bit, "
    "32768 for 16-bit), 1 in 0/1 label masks, 0.5 in 0..1 float masks; several masks "
    "of one image merged by union"
)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def duplicate_groups(samples: list[Any]) -> dict[str, int]:
    """Groups holding more than one sample (duplicates or a user-given group) and their size."""
    sizes = [n for n in Counter(s.group for s in samples if s.group).values() if n > 1]
    return {"n_groups_with_duplicates": len(sizes), "n_images_in_them": sum(sizes)}


def data_facts(cfg: Any, data: Any) -> dict[str, Any]:
    """The data decisions of one run: what was found, grouped and how masks were read."""
    ds = data.dataset
    with_masks = cfg.task != "classification" or ds.has_masks
    scheme = getattr(ds, "mask_scheme", None)  # decided by medtl.data.masks.scheme (data.mask_mode)
    rule = scheme.describe() if scheme is not None and scheme.values else MASK_RULE
    if scheme is not None and not scheme.values and scheme.note != BINARY_NOTE:
        rule = f"{MASK_RULE} ({scheme.note})"
    return {
        "summary": ds.summary(),
        "layout": ds.layout,
        "n_images": len(ds.samples),
        "classes": list(data.classes),
        "duplicate_groups": {
            **duplicate_groups(ds.samples),
            "enabled": bool(cfg.data.group_duplicates),
        },
        "mask_interpretation": rule if with_masks else None,
        "mask_labels": _labels_fact(scheme) if with_masks else None,
        "grouping": ds.grouping,  # patients/volumes from names, CSV or files (data.groups)
        "window": list(ds.window) if ds.window else None,
        "fallback_window": list(ds.fallback_window) if ds.fallback_window else None,
    }


def _labels_fact(scheme: Any) -> dict[str, Any] | None:
    """The labels of a label-map scheme: mode and ``{name: stored value}``."""
    if scheme is None or not scheme.values:
        return None
    values = [list(v) if isinstance(v, tuple) else v for v in scheme.values]
    return {"mode": scheme.mode, "labels": dict(zip(scheme.names, values, strict=True))}


def best_epoch(rows: list[dict[str, Any]], monitor: str, score: float | None) -> int | None:
    """The epoch of metrics.csv whose ``monitor`` value is the checkpoint's best score
    (the earliest of equal ones: the checkpoint only moves on a strict improvement)."""
    if score is None:
        return None
    found = [(abs(to_float(r.get(monitor)) - score), int(r["epoch"])) for r in rows]
    found = [f for f in found if not math.isnan(f[0])]
    return min(found)[1] if found else None


class RunFacts:
    """The run.json of one run folder; ``write=False`` (other ranks) keeps it in memory."""

    def __init__(self, run: Path, write: bool = True):
        self.path = Path(run) / RUN_JSON
        self.write = write
        self.facts: dict[str, Any] = {}

    def start(self, **facts: Any) -> None:
        """Status running with ``facts`` (data, split, model, monitor); a resumed run keeps
        its recorded epochs, unfreeze epochs, training time and start time."""
        old = RunRecord.read(self.path.parent) or RunRecord(doc={})
        self.facts = {
            "format": FORMAT,
            "status": "running",
            "error": None,
            "started": old.started or _now(),
            "ended": None,
            **facts,
            "memory_layout": None,
            "epochs": old.epochs,
            "best_epoch": None,
            "best_score": None,
            "unfreeze_epochs": old.unfreeze_epochs,
            "train_seconds": old.train_seconds,
        }
        self._save()

    def update(self, **facts: Any) -> None:
        self.facts.update(facts)
        self._save()

    def epoch(self, epoch: int, seconds: float, unfrozen: bool = False) -> None:
        """One finished epoch (replacing an earlier record of the same epoch)."""
        kept = [e for e in self.facts["epochs"] if e["epoch"] != epoch]
        self.facts["epochs"] = [*kept, {"epoch": epoch, "seconds": seconds}]
        if unfrozen and epoch not in self.facts["unfreeze_epochs"]:
            self.facts["unfreeze_epochs"] = sorted([*self.facts["unfreeze_epochs"], epoch])
        self._save()

    def finish(self, best: int | None, score: float | None, seconds: float) -> None:
        """Status finished; ``train_seconds`` adds this call's fit time to earlier ones."""
        before = self.facts.get("train_seconds") or 0.0
        self.update(
            status="finished",
            ended=_now(),
            best_epoch=best,
            best_score=score,
            train_seconds=round(before + seconds, 3),
        )

    def fail(self, exc: BaseException) -> None:
        """Status failed with the error's first line (the exception itself propagates)."""
        if not self.facts:
            return
        text = str(exc).strip().splitlines()
        self.update(
            status="failed",
            ended=_now(),
            error=f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__,
        )

    def _save(self) -> None:
        if self.write:
            write_run_record(self.path.parent, self.facts)
