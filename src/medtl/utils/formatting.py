"""Number formats of the comparison tables (Markdown, CSV, HTML, the model card): one
definition of how a value, a p-value and a ``mean ± std [CI]`` summary are written."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

from medtl.utils.files import to_float

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


def suggest(key: str, options: list[str] | tuple[str, ...]) -> str:
    """ "; did you mean 'x'?" for the one or two options closest to ``key`` ("" when none is
    close); dotted keys are also matched by their last part."""
    close = difflib.get_close_matches(key, list(options), n=3, cutoff=0.4)
    if not close and "." in key:  # match the leaf name against leaves
        leaf = key.rsplit(".", 1)[1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in options}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=1)]
    if not close:
        return ""

    def ratio(option: str) -> float:
        return difflib.SequenceMatcher(None, key, option).ratio()

    # near-ties are both offered: 'adamx' is one edit from 'adam' and from 'adamw'
    best = ratio(close[0])
    close = [c for c in close if ratio(c) >= best - 0.1][:2]
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
