"""The JSON files of a run folder as typed records, each with one writer and one reader.

``RUN/eval/<split>/summary.json`` (:class:`EvalSummary`, written by ``medtl evaluate``),
``RUN/run.json`` (:class:`RunRecord`, written by training: :class:`medtl.runs.facts.RunFacts`)
and ``RUN/calibration.json`` (:class:`Calibration`, written by ``medtl evaluate --calibrate``
and its siblings). A record keeps the whole document (``doc``, keys in the order written,
so a file read and written again is the same) and exposes the fields readers use as typed
attributes. Reading checks the shape with :class:`medtl.utils.records.Shape`: a file that is
a list, holds a string where a number belongs, a threshold outside [0, 1] or nesting 200,000
deep is one :class:`~medtl.utils.errors.DataError` line naming the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtl.runs.summary_blocks import (
    LeakFreeBlock,
    PostprocessBlock,
    SurfaceBlock,
    ThresholdBlock,
)
from medtl.utils.files import atomic_write_json
from medtl.utils.records import Shape, load_json

SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
CALIBRATION_FILE = "calibration.json"
DEFAULT_THRESHOLD = 0.5

#: the metrics blocks of summary.json (each a mapping of numbers, see Shape.numbers)
_SUMMARY_BLOCKS = (
    "segmentation",
    "classification",
    "calibration",
    "operating_points",
    "lesions",
    "msd",
    "area_error",
    "abs_area_error",
    "seg_threshold",
    "volumes",
    "postprocess",
    "leak_free",
)
#: blocks holding one metrics block per class or label
_SUMMARY_PER = ("segmentation_per_class", "segmentation_per_label")


def _summary_fix(path: Path) -> str:
    split_dir = path.parent
    run = split_dir.parent.parent
    return f"delete {split_dir} and run 'medtl evaluate {run} --split {split_dir.name}' again"


@dataclass(frozen=True)
class EvalSummary:
    """``eval/<split>/summary.json``: an evaluation's numbers (``doc``: the whole file)."""

    doc: dict[str, Any]
    split: str
    n_images: int | None
    run: str | None = None
    checkpoint: str = "best"
    loss: float | None = None
    distance_unit: str = "px"
    segmentation: dict[str, Any] | None = None
    classification: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    operating_points: dict[str, Any] | None = None
    lesions: dict[str, Any] | None = None
    seg_threshold: dict[str, Any] | None = None
    segmentation_per_label: dict[str, Any] = field(default_factory=dict)
    empty_mask_rule: str | None = None
    volumes: dict[str, Any] | None = None
    #: the typed blocks the console lines read (:mod:`medtl.runs.summary_blocks`)
    threshold: ThresholdBlock | None = None
    postprocess: PostprocessBlock | None = None
    leak_free: LeakFreeBlock | None = None
    surface: SurfaceBlock | None = None

    @classmethod
    def of(cls, doc: Any, path: str | Path) -> EvalSummary:
        """The record of a loaded ``doc`` after checking its shape (``path`` names it)."""
        path = Path(path)
        shape = Shape(path, _summary_fix(path))
        doc = shape.mapping(doc)
        for key in _SUMMARY_BLOCKS:
            shape.numbers(doc.get(key), key)
        for key in _SUMMARY_PER:
            for name, block in shape.mapping(doc.get(key), key, optional=True).items():
                shape.numbers(block, f"{key}.{name}", optional=False)
        threshold = doc.get("seg_threshold") or {}
        shape.number(threshold.get("value"), "seg_threshold.value", 0.0, 1.0, optional=True)
        for key in ("run", "split", "checkpoint", "distance_unit", "empty_mask_rule"):
            shape.text(doc.get(key), key, optional=True)
        return cls(
            doc=doc,
            split=doc.get("split") or path.parent.name,
            n_images=shape.integer(doc.get("n_images"), "n_images", optional=True),
            run=doc.get("run"),
            checkpoint=doc.get("checkpoint") or "best",
            loss=shape.number(doc.get("loss"), "loss", optional=True),
            distance_unit=doc.get("distance_unit") or "px",
            segmentation=doc.get("segmentation") or None,
            classification=doc.get("classification") or None,
            calibration=doc.get("calibration") or None,
            operating_points=doc.get("operating_points") or None,
            lesions=doc.get("lesions") or None,
            seg_threshold=doc.get("seg_threshold") or None,
            segmentation_per_label=doc.get("segmentation_per_label") or {},
            empty_mask_rule=doc.get("empty_mask_rule"),
            volumes=doc.get("volumes") or None,
            threshold=ThresholdBlock.of(doc, shape),
            postprocess=PostprocessBlock.of(doc, shape),
            leak_free=LeakFreeBlock.of(doc, shape),
            surface=SurfaceBlock.of(doc, shape),
        )

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EvalSummary:
        """The record of an in-memory summary (what ``medtl.evaluate`` returns, before or
        beside its summary.json): tuples become lists and numpy scalars numbers, as in the
        file, then the shape is checked as :meth:`of` checks a file."""
        where = (
            Path(str(doc.get("out_dir") or ".")) / SUMMARY_FILE if isinstance(doc, dict) else "."
        )
        return cls.of(_plain(doc), where)

    @classmethod
    def read(cls, path: str | Path) -> EvalSummary:
        """The summary in ``path`` (a ``summary.json`` file)."""
        path = Path(path)
        return cls.of(load_json(path, _summary_fix(path)), path)

    @property
    def labels(self) -> list[str]:
        """The foreground label names of a label-map evaluation (``[]``: binary)."""
        return list(self.segmentation_per_label)


def as_summary(summary: EvalSummary | dict[str, Any]) -> EvalSummary:
    """``summary`` as an :class:`EvalSummary` (an in-memory dict read through
    :meth:`EvalSummary.from_dict`), for the console lines of its blocks."""
    return summary if isinstance(summary, EvalSummary) else EvalSummary.from_dict(summary)


def _plain(obj: Any) -> Any:
    """``obj`` with tuples as lists and numpy scalars as Python numbers (NaN kept)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj.item() if hasattr(obj, "item") and hasattr(obj, "dtype") else obj


def write_summary(path: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``summary.json`` (strict JSON, NaN as null, atomically); the one writer."""
    return atomic_write_json(path, doc)


def read_summary(path: str | Path) -> EvalSummary:
    """:meth:`EvalSummary.read` of ``path``."""
    return EvalSummary.read(path)


# ----------------------------------------------------------------------------- run.json
def _run_fix(path: Path) -> str:
    return (
        f"delete {path} (training facts are then left out of the report and model card) "
        "or restore it from a backup"
    )


@dataclass(frozen=True)
class RunRecord:
    """``RUN/run.json``: what training knew and decided (``doc``: the whole file; the keys
    are listed in :mod:`medtl.runs.facts`)."""

    doc: dict[str, Any]
    status: str | None = None
    started: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    unfreeze_epochs: list[int] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    train_seconds: float | None = None

    @classmethod
    def of(cls, doc: Any, path: str | Path) -> RunRecord:
        """The record of a loaded ``doc`` after checking its shape."""
        path = Path(path)
        shape = Shape(path, _run_fix(path))
        doc = shape.mapping(doc)
        for key in ("status", "started", "ended", "error", "monitor", "format"):
            shape.text(doc.get(key), key, optional=True)
        for key in ("data", "split", "model", "memory_layout", "parameters"):
            shape.mapping(doc.get(key), key, optional=True)
        shape.numbers(doc.get("split"), "split")
        shape.numbers(doc.get("parameters"), "parameters")
        epochs = shape.listing(doc.get("epochs"), "epochs", optional=True)
        for i, e in enumerate(epochs):
            e = shape.mapping(e, f"epochs[{i}]")
            shape.integer(shape.get(e, "epoch", f"epochs[{i}]"), f"epochs[{i}].epoch")
            shape.number(e.get("seconds"), f"epochs[{i}].seconds", lo=0.0, optional=True)
        unfreeze = shape.listing(doc.get("unfreeze_epochs"), "unfreeze_epochs", optional=True)
        for i, e in enumerate(unfreeze):
            shape.integer(e, f"unfreeze_epochs[{i}]")
        data = doc.get("data") or {}
        shape.texts(data.get("classes"), "data.classes", optional=True)
        shape.integer(data.get("n_images"), "data.n_images", optional=True)
        for key in ("summary", "layout", "mask_interpretation"):
            shape.text(data.get(key), f"data.{key}", optional=True)
        shape.numbers(data.get("duplicate_groups"), "data.duplicate_groups")
        shape.mapping(data.get("mask_labels"), "data.mask_labels", optional=True)
        for key, value in (doc.get("model") or {}).items():
            if isinstance(value, (dict, list)):
                shape.text(value, f"model.{key}")
        layout = doc.get("memory_layout") or {}
        shape.text(layout.get("chosen"), "memory_layout.chosen", optional=True)
        shape.numbers(layout.get("probe_img_per_s"), "memory_layout.probe_img_per_s")
        return cls(
            doc=doc,
            status=doc.get("status"),
            started=doc.get("started"),
            data=data,
            split=doc.get("split") or {},
            model=doc.get("model") or {},
            epochs=list(epochs),
            unfreeze_epochs=list(unfreeze),
            best_epoch=shape.integer(doc.get("best_epoch"), "best_epoch", optional=True),
            best_score=shape.number(doc.get("best_score"), "best_score", optional=True),
            train_seconds=shape.number(
                doc.get("train_seconds"), "train_seconds", lo=0.0, optional=True
            ),
        )

    @classmethod
    def read(cls, run: str | Path) -> RunRecord | None:
        """``RUN/run.json``, or None when the run has none (made before medtl 0.2)."""
        path = Path(run) / RUN_FILE
        if not path.is_file():
            return None
        return cls.of(load_json(path, _run_fix(path)), path)


def read_run_record(run: str | Path) -> RunRecord | None:
    """:meth:`RunRecord.read` of ``run``."""
    return RunRecord.read(run)


def write_run_record(run: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``RUN/run.json`` atomically; the one writer (:class:`medtl.runs.facts.RunFacts`)."""
    return atomic_write_json(Path(run) / RUN_FILE, doc)


# ----------------------------------------------------------------------------- calibration
def _calibration_fix(path: Path) -> str:
    run = path.parent
    return f"delete it and run 'medtl evaluate {run} --calibrate' (or --seg-threshold, --youden)"


@dataclass(frozen=True)
class Calibration:
    """``RUN/calibration.json``: the decisions fitted on the validation split (``doc``: the
    whole file, ``{}`` when there is none)."""

    doc: dict[str, Any]
    temperature: float | None = None
    seg_threshold: float = DEFAULT_THRESHOLD
    operating_point: dict[str, Any] | None = None
    #: one mask threshold per structure of a multilabel run (``seg_threshold.per_structure``,
    #: in the run's structure order); None: ``seg_threshold`` for every mask
    seg_thresholds: dict[str, float] | None = None

    @classmethod
    def of(cls, doc: Any, path: str | Path) -> Calibration:
        """The record of a loaded ``doc`` after checking its shape and ranges."""
        path = Path(path)
        shape = Shape(path, _calibration_fix(path))
        doc = shape.mapping(doc)
        temp = shape.numbers(doc.get("temperature"), "temperature")
        t = shape.number(temp.get("value"), "temperature.value", lo=1e-6, optional=True)
        seg = shape.numbers(doc.get("seg_threshold"), "seg_threshold")
        value = shape.number(seg.get("value"), "seg_threshold.value", 0.0, 1.0, optional=True)
        structures = {
            str(k): float(shape.number(v, f"seg_threshold.per_structure.{k}", 0.0, 1.0))
            for k, v in shape.mapping(
                seg.get("per_structure"), "seg_threshold.per_structure", True
            ).items()
        }
        op = shape.numbers(doc.get("operating_point"), "operating_point")
        if op:
            shape.number(op.get("temperature"), "operating_point.temperature", 1e-6, None, True)
            per = shape.mapping(op.get("per_class"), "operating_point.per_class")
            for name, chosen in per.items():
                where = f"operating_point.per_class.{name}"
                chosen = shape.mapping(chosen, where)
                shape.number(shape.get(chosen, "threshold", where), f"{where}.threshold", 0, 1)
        return cls(
            doc=doc,
            temperature=t,
            seg_threshold=DEFAULT_THRESHOLD if value is None else value,
            operating_point=op or None,
            seg_thresholds=structures or None,
        )

    @property
    def mask_threshold(self) -> float | tuple[float, ...]:
        """What the masks are cut at: one threshold per structure (multilabel runs with a
        per-structure decision), else the one threshold."""
        if self.seg_thresholds:
            return tuple(self.seg_thresholds.values())
        return self.seg_threshold

    @classmethod
    def read(cls, run: str | Path) -> Calibration:
        """``RUN/calibration.json``; an empty record when the run has none."""
        path = Path(run) / CALIBRATION_FILE
        if not path.is_file():
            return cls(doc={})
        return cls.of(load_json(path, _calibration_fix(path)), path)


def write_calibration(run: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``RUN/calibration.json`` atomically; the one writer."""
    return atomic_write_json(Path(run) / CALIBRATION_FILE, doc)


# ----------------------------------------------------------------------------- postprocess.json
def read_postprocess(path: str | Path) -> dict[str, Any] | None:
    """A comparison cell's ``postprocess.json`` (the mask rule chosen on its folds:
    ``rule``, ``dice_before``, ``dice_after``, ``cv_dice``, ``source``) after checking its
    shape; None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    fix = f"delete it; 'medtl compare --collect {path.parent.parent.parent}' chooses again"
    shape = Shape(path, fix)
    doc = shape.numbers(load_json(path, fix), "", optional=False, texts=_POSTPROCESS_TEXTS)
    shape.text(doc.get("rule"), "rule", optional=True)
    return doc


_POSTPROCESS_TEXTS = frozenset({"rule", "source"})


def read_class_offsets(path: str | Path) -> dict[str, Any] | None:
    """A comparison cell's ``class_offsets.json`` (the class offsets chosen on its folds:
    ``classes``, ``offsets``, ``kept``, ``macro_f1_before``/``after``, ``n_images``) after
    checking its shape; None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    fix = f"delete it; 'medtl compare --collect {path.parent.parent.parent}' chooses again"
    shape = Shape(path, fix)
    doc = shape.numbers(load_json(path, fix), "", optional=False, texts=_OFFSETS_TEXTS)
    classes = shape.texts(shape.get(doc, "classes"), "classes")
    offsets = shape.get(doc, "offsets")
    if sorted(offsets) != sorted(classes):
        shape.fail(f"offsets names {sorted(offsets)}, expected the classes {classes}")
    return doc


_OFFSETS_TEXTS = frozenset({"classes", "rule", "source"})


__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_THRESHOLD",
    "RUN_FILE",
    "SUMMARY_FILE",
    "Calibration",
    "EvalSummary",
    "as_summary",
    "RunRecord",
    "read_class_offsets",
    "read_postprocess",
    "read_run_record",
    "read_summary",
    "write_calibration",
    "write_run_record",
    "write_summary",
]
