"""The HTML machinery of the report pages: a Jinja2 environment with autoescaping, the
number filters, the stylesheet and figures embedded as PNG data URIs.

Templates live in ``medtl/reporting/templates/`` (``base.html`` is the page, ``macros.html``
holds ``table``, ``kv``, ``figure`` and ``grid``); the CSS is ``medtl/reporting/style.css``.
Every value is escaped on output; only the stylesheet is marked safe.

Example::

    >>> from medtl.reporting.html import render_string
    >>> render_string("{{ x }} {{ v|num }} {{ p|p }}", x="<b>", v=0.12345, p=0.0001)
    '&lt;b&gt; 0.123 &lt;0.001'
"""

from __future__ import annotations

import base64
import io
import time
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from medtl.comparison import fmt, fmt_p
from medtl.plots import DPI
from medtl.utils.files import to_float

Figure = dict[str, str]  # {"alt", "src", "caption"}: what the ``figure`` macro draws


def significant(value: Any) -> bool:
    """True for a p-value below 0.05 (a number, or the text :func:`medtl.comparison.fmt_p` wrote)."""
    return value == "<0.001" or to_float(value) < 0.05


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: package templates, autoescaping, the number filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medtl.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt  # 3 decimals, "–" when missing; ``x|num(1)`` for one decimal
    env.filters["p"] = fmt_p  # "<0.001" or 3 decimals
    env.filters["signed"] = lambda v: f"{to_float(v):+.3f}"
    env.tests["significant"] = significant
    return env


def stylesheet() -> Markup:
    """``style.css`` (package data), safe to put inside ``<style>``."""
    return Markup(resources.files("medtl.reporting").joinpath("style.css").read_text("utf-8"))


def render(template: str, **context: Any) -> str:
    """Render a page template; the base page gets the stylesheet and a time stamp."""
    page = environment().get_template(template)
    return page.render(css=stylesheet(), stamp=time.strftime("%Y-%m-%d %H:%M"), **context)


def render_string(source: str, **context: Any) -> str:
    """Render a template given as text with the same environment (autoescape, filters)."""
    return environment().from_string(source).render(**context)


def png_bytes(fig: Any) -> bytes:
    """A matplotlib Figure as PNG bytes (the figure is cleared afterwards)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        fig.clear()
    return buf.getvalue()


def figure(data: bytes, alt: str, caption: str = "") -> Figure:
    """An embedded PNG for the ``figure`` macro (``data`` is the PNG file's bytes)."""
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return {"alt": alt, "src": src, "caption": caption}
