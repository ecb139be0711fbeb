"""The house rules of src/medtl, checked on the source itself (docs/architecture.md).

- the layering contracts of pyproject.toml ``[tool.importlinter]`` are kept (``lint-imports``
  also runs in make lint and make test; lazy imports inside functions count);
- the package root holds at most MAX_ROOT_MODULES modules: the rest live in stage packages;
- modules of about a screenful or a few (<= MAX_MODULE_LINES lines);
- functions <= MAX_FUNCTION_LINES lines, except declarative tables (argparse);
- every verb of ``medtl.api`` is ``medtl.<verb>`` and ``import medtl`` imports no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "medtl"
MAX_ROOT_MODULES = 8
MAX_MODULE_LINES = 420  # "about 400"
MAX_FUNCTION_LINES = 60
DECLARATIVE = {("medtl.cli.parser", "build_parser")}  # the argparse table


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_import_contracts_kept():
    import logging

    from importlinter.cli import lint_imports

    # import-linter's logging dictConfig disables every existing logger (medtl's too, so a
    # later training in this process would write an empty train.log): undo that afterwards
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
    disabled = {lg.name: lg.disabled for lg in loggers}
    try:
        assert lint_imports(config_filename=str(SRC.parent / "pyproject.toml"), no_cache=True) == 0
    finally:
        for lg in loggers:
            lg.disabled = disabled[lg.name]


def test_package_root_is_small():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_every_api_verb_is_on_the_package_and_import_is_light():
    code = (
        "import sys, medtl; assert 'torch' not in sys.modules, 'import medtl imported torch'; "
        "from medtl import api; "
        "assert tuple(medtl._API) == tuple(api.__all__), (medtl._API, api.__all__); "
        "assert all(getattr(medtl, v) is getattr(api, v) for v in api.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


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
