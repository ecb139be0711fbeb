"""``medtl report DIR``: one self-contained HTML page for a run or a comparison folder.

The page has inline CSS and every figure embedded as a base64 PNG, so it can be mailed,
archived or opened offline; it never references anything outside itself. Rendering writes
nothing but the page: a comparison's results are collected in memory
(``medtl.comparison.collect(write=False)``) when ``results.json`` is missing or incomplete.

Modules: ``run_page`` (a run folder), ``comparison_page`` (a comparison folder), ``html``
(Jinja2 templates with autoescaping, filters, embedded figures), ``cases`` (case grids from
evaluate's files); templates in ``templates/``, the stylesheet ``style.css``.

Example::

    from medtl.reporting import write_report
    write_report(Path("cmp"))      # -> cmp/report.html ("Which configuration is best?")
    write_report(Path("runs/seg-unet-resnet18-finetune-20250101-120000"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtl.reporting.comparison_page import comparison_html
from medtl.reporting.run_page import run_html
from medtl.utils.errors import MedtlError
from medtl.utils.files import atomic_write_text

REPORT = "report.html"


def comparison_results(out: Path) -> dict[str, Any]:
    """The collected results of comparison folder ``out``, without writing anything:
    ``results.json`` when it covers every cell of the design, else collected afresh."""
    from medtl.comparison import collect
    from medtl.comparison.records import Design, Results

    design, stored = Design.read(out), Results.read(out)
    if stored is None or not stored.configs:
        return collect(out, quiet=True, write=False)
    if len(stored.configs) + len(stored.incomplete) != len(design.cells):
        return collect(out, quiet=True, write=False)
    return stored.doc


def write_report(path: Path) -> Path:
    """Write ``DIR/report.html`` for a run folder or a comparison folder; returns its path."""
    path = Path(path)
    if (path / "compare.json").is_file():
        text = comparison_html(path, comparison_results(path))
    elif (path / "config.yaml").is_file():
        text = run_html(path)
    else:
        raise MedtlError(
            f"{path} is neither a run folder (config.yaml) nor a comparison folder "
            "(compare.json); give the folder 'medtl train' or 'medtl compare' wrote"
        )
    return atomic_write_text(path / REPORT, text)


__all__ = ["REPORT", "comparison_html", "comparison_results", "run_html", "write_report"]
