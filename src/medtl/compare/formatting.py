"""Number formats of the comparison tables (Markdown, CSV, HTML, the model card): one
definition of how a value, a p-value and a ``mean ± std [CI]`` summary are written."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from medtl.io_utils import to_float

__all__ = ["fmt", "fmt_p", "fmt_stat"]


def fmt(value: Any, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; ``–`` when missing or not finite."""
    v = to_float(value)
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def fmt_p(value: Any) -> str:
    """A p-value with 3 decimals, ``<0.001`` below that; ``–`` when missing."""
    v = to_float(value)
    if not math.isfinite(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def fmt_stat(
    s: dict[str, Any] | None,
    number: Callable[[Any], str] | None = None,
    ci: Callable[[str, str], str] | None = None,
) -> str:
    """``mean ± std [lo, hi]`` (the parts that exist); ``number`` formats each value and
    ``ci(lo, hi)`` the interval (the HTML report wraps it in markup)."""
    number = number or fmt
    ci = ci or (lambda lo, hi: f" [{lo}, {hi}]")
    if not s:
        return "–"
    text = number(s.get("mean"))
    if s.get("std") is not None and math.isfinite(to_float(s.get("std"))):
        text += f" ± {number(s['std'])}"
    if s.get("ci_low") is not None and math.isfinite(to_float(s.get("ci_low"))):
        text += ci(number(s["ci_low"]), number(s["ci_high"]))
    return text
