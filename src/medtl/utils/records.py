"""Reading the files of a run, comparison or data folder as untrusted input.

Such files may be edited by hand, truncated by a full disk or copied from elsewhere: a
``summary.json`` that is a list, a threshold that is a string, 200,000-deep nesting. The
readers here load JSON or YAML (``yaml.safe_load``: no tags, no objects) with a bounded size
and nesting depth, and :class:`Shape` checks the fields a reader uses (type, range); every
problem is one :class:`~medtl.utils.errors.DataError` line naming the file, what is wrong
and the fix, which the CLI turns into exit code 2. Example::

    fix = "delete it and run 'medtl evaluate RUN --calibrate'"
    shape = Shape(path, fix)
    doc = shape.mapping(load_json(path, fix))  # DataError: "PATH: the file is a list, ..."
    t = shape.number(doc.get("t"), "t", lo=0.0, optional=True)  # a number >= 0 or None
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from medtl.utils.errors import DataError

#: the largest file the readers load (far above what medtl writes: splits.json lists one
#: short record per image)
MAX_BYTES = 256 * 2**20
#: the deepest nesting of lists and mappings the readers accept (medtl's files nest at most
#: 7 deep: a comparison's results.json)
MAX_DEPTH = 64
#: the keys of a metrics block that hold text (:meth:`Shape.numbers`)
TEXT_KEYS = frozenset(
    {"rule", "name", "positive", "reason", "fitted_on", "classes", "empty_mask", "definition"}
)


def _fail(path: Path, what: str, fix: str) -> NoReturn:
    raise DataError(f"{path}: {what}; {fix}")


def depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of lists and mappings in ``doc`` (a scalar is 0), counted without
    recursion and stopping once ``limit`` is passed."""
    deepest, stack, seen = 0, [(doc, 1)], {}
    while stack:
        item, level = stack.pop()
        if seen.get(id(item), 0) >= level:  # a YAML alias: walked already at this depth
            continue
        seen[id(item)] = level
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack += [(c, level + 1) for c in children if isinstance(c, (dict, list))]
    return deepest


def _read_text(path: Path, fix: str, max_bytes: int) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        _fail(path, f"cannot be read ({exc.strerror or type(exc).__name__})", fix)
    if size > max_bytes:
        _fail(path, f"{size} bytes, more than the {max_bytes} a medtl file can hold", fix)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(path, "is not UTF-8 text", fix)
    except OSError as exc:
        _fail(path, f"cannot be read ({exc.strerror or type(exc).__name__})", fix)


def _parse(path: Path, text: str, fix: str, parse: Callable[[str], Any], kind: str) -> Any:
    try:
        doc = parse(text)
    except RecursionError:
        _fail(path, f"nested deeper than {MAX_DEPTH} levels", fix)
    except ValueError as exc:  # json.JSONDecodeError; yaml's errors are wrapped below
        _fail(path, f"is not valid {kind} ({_first_line(exc)})", fix)
    if depth(doc) > MAX_DEPTH:
        _fail(path, f"nested deeper than {MAX_DEPTH} levels", fix)
    return doc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return " ".join(lines[0].split())[:160] if lines else type(exc).__name__


def _json(text: str) -> Any:
    return json.loads(text)  # NaN and Infinity parse as floats (Shape.number refuses them)


def _yaml(text: str) -> Any:
    import yaml

    # libyaml's safe loader where PyYAML was built with it (the same documents, ~10x faster)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        level = 0  # the event stream first: nesting is refused before it is built
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                level += 1
                if level > MAX_DEPTH:
                    raise RecursionError
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                level -= 1
        return yaml.load(text, Loader=loader)  # noqa: S506  (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or _first_line(exc)
        raise ValueError(f"{where}{' '.join(str(problem).split())}") from None


def load_json(path: str | Path, fix: str, max_bytes: int = MAX_BYTES) -> Any:
    """The JSON document in ``path``; :class:`DataError` (ending in ``fix``) when it cannot
    be read, is larger than ``max_bytes``, is not JSON or is nested deeper than
    :data:`MAX_DEPTH`."""
    path = Path(path)
    return _parse(path, _read_text(path, fix, max_bytes), fix, _json, "JSON")


def load_yaml(path: str | Path, fix: str, max_bytes: int = MAX_BYTES) -> Any:
    """The YAML document in ``path`` read with ``yaml.safe_load`` (a tag such as
    ``!!python/object`` is refused); errors as :func:`load_json`."""
    path = Path(path)
    return _parse(path, _read_text(path, fix, max_bytes), fix, _yaml, "YAML")


def loads_json(text: str, path: str | Path, fix: str) -> Any:
    """:func:`load_json` of text that is already read (``path`` names where it came from,
    e.g. an ONNX graph's metadata entry)."""
    if len(text) > MAX_BYTES:
        _fail(Path(path), f"{len(text)} characters, more than a medtl entry holds", fix)
    return _parse(Path(path), text, fix, _json, "JSON")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a text", bool: "true/false"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


class Shape:
    """Checks the fields of one loaded document; each failure is one :class:`DataError` line
    ``PATH: WHERE is KIND, expected WHAT; FIX``."""

    def __init__(self, path: str | Path, fix: str) -> None:
        self.path, self.fix = Path(path), fix

    def fail(self, what: str) -> NoReturn:
        """Raise the one-line error for this file."""
        _fail(self.path, what, self.fix)

    def _wrong(self, where: str, value: Any, expected: str) -> NoReturn:
        self.fail(f"{where or 'the file'} is {_kind(value)}, expected {expected}")

    def mapping(self, value: Any, where: str = "", optional: bool = False) -> dict[str, Any]:
        """``value`` when it is a mapping (``{}`` for None when ``optional``)."""
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            self._wrong(where, value, "a mapping")
        return value

    def listing(self, value: Any, where: str = "", optional: bool = False) -> list[Any]:
        """``value`` when it is a list (``[]`` for None when ``optional``)."""
        if value is None and optional:
            return []
        if not isinstance(value, list):
            self._wrong(where, value, "a list")
        return value

    def get(self, doc: dict[str, Any], key: str, where: str = "") -> Any:
        """``doc[key]``; missing keys fail."""
        if key not in doc:
            self.fail(f"{_at(where, key)} is missing")
        return doc[key]

    def number(
        self,
        value: Any,
        where: str,
        lo: float | None = None,
        hi: float | None = None,
        optional: bool = False,
    ) -> float | None:
        """``value`` as a finite float in ``[lo, hi]`` (None passes when ``optional``)."""
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._wrong(where, value, _range("a number", lo, hi))
        if not math.isfinite(value) or (lo is not None and value < lo):
            self.fail(f"{where} is {value}, expected {_range('a number', lo, hi)}")
        if hi is not None and value > hi:
            self.fail(f"{where} is {value}, expected {_range('a number', lo, hi)}")
        return float(value)

    def integer(self, value: Any, where: str, lo: int | None = 0, optional: bool = False) -> Any:
        """``value`` as an int of at least ``lo`` (None passes when ``optional``)."""
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong(where, value, _range("a whole number", lo, None))
        if lo is not None and value < lo:
            self.fail(f"{where} is {value}, expected {_range('a whole number', lo, None)}")
        return value

    def text(self, value: Any, where: str, optional: bool = False) -> Any:
        """``value`` when it is a string (None passes when ``optional``)."""
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self._wrong(where, value, "a text")
        return value

    def texts(self, value: Any, where: str, optional: bool = False) -> list[str]:
        """``value`` when it is a list of strings (``[]`` for None when ``optional``)."""
        items = self.listing(value, where, optional)
        for i, item in enumerate(items):
            self.text(item, f"{where}[{i}]")
        return items

    def numbers(
        self, value: Any, where: str, optional: bool = True, texts: frozenset[str] = TEXT_KEYS
    ) -> dict[str, Any]:
        """A metrics block (``summary.json``'s ``segmentation``, ``calibration.json``'s
        ``temperature``): a mapping whose values are numbers, null, true/false, lists of
        them or such mappings; only the keys in ``texts`` may hold text."""
        block = self.mapping(value, where, optional)
        for key, item in block.items():
            at = _at(where, str(key))
            if isinstance(item, dict):
                self.numbers(item, at, texts=texts)
            elif isinstance(item, list):
                for i, x in enumerate(item):
                    self._leaf(x, f"{at}[{i}]", key in texts, nested=True)
            else:
                self._leaf(item, at, key in texts)
        return block

    def _leaf(self, value: Any, where: str, text: bool, nested: bool = False) -> None:
        if nested and isinstance(value, list):  # a row of a confusion matrix
            for i, x in enumerate(value):
                self._leaf(x, f"{where}[{i}]", text)
        elif value is None or isinstance(value, bool) or _nan(value):
            return
        elif isinstance(value, str):
            if not text:
                self._wrong(where, value, "a number")
        elif not isinstance(value, (int, float)):
            self._wrong(where, value, "a number")


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _range(kind: str, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{kind} in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{kind} >= {lo:g}"
    return kind


__all__ = ["MAX_BYTES", "MAX_DEPTH", "Shape", "depth", "load_json", "load_yaml", "loads_json"]
