"""The files of a comparison folder as typed records, each with one writer and one reader:
``OUT/compare.json`` (:class:`Design`, written by ``medtl compare`` before any cell trains)
and ``OUT/results.json`` (:class:`Results`, written by ``medtl compare --collect``).

A record keeps the whole document (``doc``, keys in the order written) and exposes the
fields readers use as typed attributes; reading checks the shape
(:class:`medtl.utils.records.Shape`), so a file that is a list, has ``configs`` as a text
or was truncated is one :class:`~medtl.utils.errors.DataError` line naming the file and
the fix (exit code 2 from the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write_json
from medtl.utils.records import Shape, load_json

DESIGN_FILE = "compare.json"
RESULTS_FILE = "results.json"
TASKS = ("segmentation", "classification", "multitask")


def _design_fix(out: Path) -> str:
    return f"delete {out} and run the comparison again (or restore {DESIGN_FILE})"


@dataclass(frozen=True)
class Design:
    """``OUT/compare.json``: the grid, base overrides, folds and their images, seeds."""

    doc: dict[str, Any]
    task: str
    folds: int
    eval_split: str
    cells: list[dict[str, Any]]
    base_overrides: list[str] = field(default_factory=list)
    grid: list[str] = field(default_factory=list)
    splits: list[dict[str, list[str]]] = field(default_factory=list)
    config_file: str | None = None
    seed: int | None = None
    n_images: int | None = None

    @classmethod
    def of(cls, doc: Any, path: str | Path) -> Design:
        """The record of a loaded ``doc`` after checking its shape."""
        path = Path(path)
        shape = Shape(path, _design_fix(path.parent))
        doc = shape.mapping(doc)
        task = shape.text(shape.get(doc, "task"), "task")
        if task not in TASKS:
            shape.fail(f"task is {task!r}, expected one of {', '.join(TASKS)}")
        cells = shape.listing(shape.get(doc, "cells"), "cells")
        for i, cell in enumerate(cells):
            cell = shape.mapping(cell, f"cells[{i}]")
            shape.text(shape.get(cell, "id", f"cells[{i}]"), f"cells[{i}].id")
            shape.texts(cell.get("overrides"), f"cells[{i}].overrides", optional=True)
        splits = shape.listing(doc.get("splits"), "splits", optional=True)
        for i, fold in enumerate(splits):
            for name, images in shape.mapping(fold, f"splits[{i}]").items():
                shape.texts(images, f"splits[{i}].{name}")
        return cls(
            doc=doc,
            task=task,
            folds=shape.integer(shape.get(doc, "folds"), "folds"),
            eval_split=shape.text(shape.get(doc, "eval_split"), "eval_split"),
            cells=cells,
            base_overrides=shape.texts(doc.get("base_overrides"), "base_overrides", True),
            grid=shape.texts(doc.get("grid"), "grid", optional=True),
            splits=splits,
            config_file=shape.text(doc.get("config_file"), "config_file", optional=True),
            seed=shape.integer(doc.get("seed"), "seed", lo=None, optional=True),
            n_images=shape.integer(doc.get("n_images"), "n_images", optional=True),
        )

    @classmethod
    def read(cls, out: str | Path) -> Design:
        """``OUT/compare.json`` (MedtlError when OUT is not a comparison folder)."""
        path = Path(out) / DESIGN_FILE
        if not path.is_file():
            raise MedtlError(
                f"{path} not found; {out} is not a comparison folder "
                f"(run 'medtl compare ... --out {out}')"
            )
        return cls.of(load_json(path, _design_fix(Path(out))), path)

    @property
    def cell_ids(self) -> list[str]:
        """The cell ids in design order."""
        return [c["id"] for c in self.cells]

    @property
    def n_test(self) -> int:
        """The images of the held-out test split (0 without one)."""
        return len((self.splits or [{}])[0].get("test", []))


def write_design(out: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``OUT/compare.json`` atomically; the one writer."""
    return atomic_write_json(Path(out) / DESIGN_FILE, doc)


def _results_fix(out: Path) -> str:
    return f"delete it and run 'medtl compare --collect {out}'"


@dataclass(frozen=True)
class Results:
    """``OUT/results.json``: every finished configuration ranked, with its tests."""

    doc: dict[str, Any]
    configs: list[dict[str, Any]]
    incomplete: list[dict[str, Any]] = field(default_factory=list)
    best: str | None = None

    @classmethod
    def of(cls, doc: Any, path: str | Path) -> Results:
        """The record of a loaded ``doc`` after checking its shape."""
        path = Path(path)
        shape = Shape(path, _results_fix(path.parent))
        doc = shape.mapping(doc)
        configs = shape.listing(shape.get(doc, "configs"), "configs")
        for i, c in enumerate(configs):
            c = shape.mapping(c, f"configs[{i}]")
            shape.text(shape.get(c, "cell", f"configs[{i}]"), f"configs[{i}].cell")
            shape.integer(shape.get(c, "rank", f"configs[{i}]"), f"configs[{i}].rank", lo=1)
            for key in ("metrics", "vs_best", "timing"):
                shape.numbers(c.get(key), f"configs[{i}].{key}")
            for key in ("per_label", "clinical", "test", "postprocess", "class_offsets"):
                shape.mapping(c.get(key), f"configs[{i}].{key}", optional=True)
            shape.number(c.get("primary"), f"configs[{i}].primary", optional=True)
            shape.text(c.get("configuration"), f"configs[{i}].configuration", optional=True)
        incomplete = shape.listing(doc.get("incomplete"), "incomplete", optional=True)
        for i, c in enumerate(incomplete):
            c = shape.mapping(c, f"incomplete[{i}]")
            shape.text(shape.get(c, "cell", f"incomplete[{i}]"), f"incomplete[{i}].cell")
        return cls(
            doc=doc,
            configs=configs,
            incomplete=incomplete,
            best=shape.text(doc.get("best"), "best", optional=True),
        )

    @classmethod
    def read(cls, out: str | Path) -> Results | None:
        """``OUT/results.json``, or None when the comparison was not collected yet."""
        path = Path(out) / RESULTS_FILE
        if not path.is_file():
            return None
        return cls.of(load_json(path, _results_fix(Path(out))), path)

    @property
    def ranked_cells(self) -> list[str]:
        """The cell ids, best first."""
        return [c["cell"] for c in sorted(self.configs, key=lambda c: c["rank"])]


def write_results(out: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``OUT/results.json`` atomically; the one writer."""
    return atomic_write_json(Path(out) / RESULTS_FILE, doc)


__all__ = [
    "DESIGN_FILE",
    "RESULTS_FILE",
    "Design",
    "Results",
    "write_design",
    "write_results",
]
