"""The house rules of src/medtl, checked on the source itself (docs/architecture.md).

- no import cycle between medtl's modules (lazy imports inside functions count too: a
  cycle hidden in a function is still two modules that need each other);
- modules of about a screenful or a few (<= MAX_MODULE_LINES lines);
- functions <= MAX_FUNCTION_LINES lines, except declarative tables (argparse).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "medtl"
MAX_MODULE_LINES = 420  # "about 400"
MAX_FUNCTION_LINES = 60
DECLARATIVE = {("medtl.cli", "build_parser")}  # the argparse table


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """medtl modules that ``path`` imports anywhere (``from a import b`` counts ``a.b``
    when that is a module)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(path, name, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. A package's
    ``__init__`` re-exporting its own modules is not a cycle with them."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def edges(n: str) -> set[str]:
        return {m for m in graph[n] if not n.startswith(m + ".") and not m.startswith(n + ".")}

    def visit(n: str) -> list[str] | None:
        colour[n] = 1
        stack.append(n)
        for m in sorted(edges(n)):
            if colour.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in colour and (found := visit(m)):
                return found
        stack.pop()
        colour[n] = 2
        return None

    for n in sorted(graph):
        if n not in colour and (found := visit(n)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_src():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_size(name):
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines; split it by what it holds"


def test_function_sizes():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and (name, node.name) not in DECLARATIVE:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, long


def test_design_docs_live_in_the_project():
    root = SRC.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "](../" not in readme, "the README links a file outside the repository"
    for doc in ("docs/architecture.md", "docs/design.md"):
        assert (root / doc).is_file() and f"]({doc})" in readme, doc
    assert "Apache License" in (root / "LICENSE").read_text(encoding="utf-8")
