"""What an export wrote, read back as typed records: ``export.json`` beside the graph
(:class:`ExportRecord`) and the ``medtl.*`` metadata entries inside it (:class:`GraphMeta`).

Both are untrusted input (a graph may come from elsewhere, ``export.json`` may be edited):
reading checks the shape with :class:`medtl.utils.records.Shape`, so ``classes`` nested
100,000 deep or ``image_size='abc'`` is one :class:`~medtl.utils.errors.DataError` line
naming the file and the fix (re-export), exit code 2 from the CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtl.utils.files import atomic_write_json
from medtl.utils.records import Shape, load_json, loads_json

EXPORT_FILE = "export.json"
#: the prefix of medtl's entries in an ONNX graph's metadata
META_PREFIX = "medtl."
_REEXPORT = "re-export the run with 'medtl export RUN'"


@dataclass(frozen=True)
class ExportRecord:
    """``export.json`` (``doc``: the whole file): the graph's task, classes, the temperature
    it divides by (``has_temperature`` False: an export that did not record one) and, for a
    fold ensemble, its member runs."""

    doc: dict[str, Any]
    task: str | None = None
    classes: list[str] = field(default_factory=list)
    has_temperature: bool = False
    temperature: float | None = None
    members: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, doc: Any, path: str | Path) -> ExportRecord:
        """The record of a loaded ``doc`` after checking its shape."""
        shape = Shape(path, f"delete it and {_REEXPORT}")
        doc = shape.mapping(doc)
        ensemble = shape.mapping(doc.get("ensemble"), "ensemble", optional=True)
        return cls(
            doc=doc,
            task=shape.text(doc.get("task"), "task", optional=True),
            classes=shape.texts(doc.get("classes"), "classes", optional=True),
            has_temperature="temperature" in doc,
            temperature=shape.number(doc.get("temperature"), "temperature", 1e-6, None, True),
            members=shape.texts(ensemble.get("members"), "ensemble.members", optional=True),
        )

    @classmethod
    def read(cls, folder: str | Path) -> ExportRecord | None:
        """``FOLDER/export.json``, or None when there is none."""
        path = Path(folder) / EXPORT_FILE
        if not path.is_file():
            return None
        return cls.of(load_json(path, f"delete it and {_REEXPORT}"), path)


def write_export(folder: str | Path, info: dict[str, Any]) -> Path:
    """Write ``FOLDER/export.json`` atomically; the one writer."""
    return atomic_write_json(Path(folder) / EXPORT_FILE, info)


@dataclass(frozen=True)
class GraphMeta:
    """The ``medtl.*`` metadata entries of an ONNX graph, checked (``entries``: all of them)."""

    entries: dict[str, str]
    image_size: int | None = None
    classes: list[str] = field(default_factory=list)
    task: str | None = None
    has_temperature: bool = False
    temperature: float | None = None

    @classmethod
    def of(cls, entries: dict[str, str], path: str | Path, shape_size: int | None) -> GraphMeta:
        """The entries of the graph at ``path``; ``shape_size`` (the input's fixed side)
        is the image size when no entry holds it."""
        where = f"{path} (metadata {META_PREFIX}"
        shape = Shape(path, _REEXPORT)
        size = entries.get(META_PREFIX + "image_size")
        image_size = shape_size or None
        if size is not None:
            try:
                image_size = int(size) or None
            except ValueError:
                shape.fail(f"metadata {META_PREFIX}image_size is {size[:40]!r}, not a whole number")
            if image_size is not None and image_size < 1:
                shape.fail(f"metadata {META_PREFIX}image_size is {image_size}, expected >= 1")
        text = entries.get(META_PREFIX + "classes", "[]")
        classes = loads_json(text, f"{where}classes)", _REEXPORT)
        classes = Shape(f"{where}classes)", _REEXPORT).texts(classes, "the entry")
        known, t = cls._temperature(entries.get(META_PREFIX + "temperature"), shape)
        return cls(
            entries=dict(entries),
            image_size=image_size,
            classes=classes,
            task=entries.get(META_PREFIX + "task"),
            has_temperature=known,
            temperature=t,
        )

    @staticmethod
    def _temperature(value: str | None, shape: Shape) -> tuple[bool, float | None]:
        if value is None:
            return False, None
        if value == "none":
            return True, None
        try:
            t = float(value)
        except ValueError:
            t = math.nan
        if not math.isfinite(t) or t <= 0:
            shape.fail(f"metadata {META_PREFIX}temperature is {value[:40]!r}, not a number > 0")
        return True, t


__all__ = ["EXPORT_FILE", "META_PREFIX", "ExportRecord", "GraphMeta", "write_export"]
