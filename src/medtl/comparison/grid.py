"""The grid of a comparison: ``key=a,b`` sweeps, their cartesian product and cell names.

One comma rule serves the grid and the CLI (:func:`split_overrides`): a value is split on
commas outside brackets, braces, parentheses and quotes (Hydra's sweep rule), so
``model.encoder=a,b`` is two values while ``data.classes=[a,b]`` and ``x="a,b"`` are one.

Example:
    >>> split_overrides(["model.encoder=a,b", "data.classes=[a,b]", "x=1"])
    (['data.classes=[a,b]', 'x=1'], ['model.encoder=a,b'])
    >>> expand_grid(["model.encoder=a,b"])
    [['model.encoder=a'], ['model.encoder=b']]
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

from medtl.configuration.loading import parse_override
from medtl.utils.errors import ConfigError, MedtlError

__all__ = ["base_and_cells", "cell_id", "cell_label", "expand_grid", "split_overrides"]


def _split_top_level(value: str) -> list[str]:
    """Split on commas outside brackets/braces/parentheses and quotes (Hydra's sweep rule)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(value):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return [p.strip() for p in parts]


def _sweeps(overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    seen: set[str] = set()
    out = []
    for text in overrides:
        key, value = parse_override(text)
        if key in seen:
            raise ConfigError(f"override '{key}' is given twice; give it once, e.g. {key}=a,b")
        seen.add(key)
        values = _split_top_level(value)
        if len(values) > 1 and any(v == "" for v in values):
            raise ConfigError(f"override '{text}' has an empty value in its list; e.g. {key}=a,b")
        out.append((key, values))
    return out


def _is_sweep(text: str) -> bool:
    return "=" in text and len(_split_top_level(parse_override(text)[1])) > 1


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split command-line overrides into ``(fixed, swept)``, keeping their order.

    An override is swept when its value holds more than one value by the grid's comma rule
    (:func:`expand_grid`); everything else is fixed, including text that is not
    ``key=value`` (the config loader reports it).
    """
    swept = [o for o in overrides if _is_sweep(o)]
    return [o for o in overrides if not _is_sweep(o)], swept


def expand_grid(overrides: list[str]) -> list[list[str]]:
    """The cartesian product of ``key=a,b`` sweeps (Hydra-like), first key varying slowest.

    Keys without a comma are fixed and appear in every cell; a bracketed list or a quoted
    value (``key=[a,b]``, ``key="a,b"``) is one value.

    >>> expand_grid(["model.encoder=resnet18,vgg11", "train.lr=0.01", "model.strategy=frozen,finetune"])[:2]
    [['model.encoder=resnet18', 'train.lr=0.01', 'model.strategy=frozen'], ['model.encoder=resnet18', 'train.lr=0.01', 'model.strategy=finetune']]
    """
    sweeps = _sweeps(overrides)
    choices = [[f"{key}={v}" for v in values] for key, values in sweeps]
    return [list(cell) for cell in itertools.product(*choices)]


def cell_id(overrides: Sequence[str]) -> str:
    """A stable folder name for a cell: readable slug + 8 hex digits of its overrides' hash."""
    digest = hashlib.sha1("\n".join(overrides).encode("utf-8")).hexdigest()[:8]
    words = []
    for text in overrides:
        key, value = parse_override(text)
        words.append(f"{key.rsplit('.', 1)[-1]}-{value}")
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(words)).strip("-.")[:48].rstrip("-.")
    return f"{slug or 'base'}-{digest}"


def cell_label(overrides: Sequence[str]) -> str:
    """The cell as people read it: its overrides, or ``(base config)`` for none."""
    return " ".join(overrides) if overrides else "(base config)"


def base_and_cells(
    base_overrides: Sequence[str], grid: Sequence[str], cell_list: list[list[str]] | None = None
) -> tuple[list[str], list[list[str]]]:
    """The overrides every cell shares and the cells (one override list each).

    Grid entries with one value join the base; the others span the cells by
    :func:`expand_grid`, unless ``cell_list`` gives the cells explicitly.

    Raises:
        MedtlError: both a sweep and ``cell_list`` are given.
    """
    sweeps = _sweeps(grid)
    base = list(base_overrides) + [f"{k}={v[0]}" for k, v in sweeps if len(v) == 1]
    cells = expand_grid([f"{k}={','.join(v)}" for k, v in sweeps if len(v) > 1])
    if cell_list is not None:
        if cells != [[]]:
            raise MedtlError("give the cells either as key=a,b sweeps or as --cell lists, not both")
        cells = [list(c) for c in cell_list]
    return base, cells
