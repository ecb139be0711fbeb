"""Post-processing rules for predicted masks (``--postprocess RULE``; applied to each
foreground label of a label map on its own):

- ``none``: the mask as predicted;
- ``largest``: keep only the largest connected component (8-connected);
- ``min_area=A``: remove components below ``A`` pixels, or below ``A%`` of the image's
  area with a percent sign (``min_area=0.5%``), so one rule fits images of any size.

The rule a comparison chose on cross-validation (:mod:`medtl.evaluation.postprocess`) is
read back from ``CELL/postprocess.json`` by :func:`cell_rule`. Example:

    >>> import numpy as np
    >>> m = np.zeros((8, 8), bool); m[0:3, 0:3] = True; m[6, 6] = True
    >>> int(apply_rule(m, "largest").sum()), int(apply_rule(m, "min_area=2").sum())
    (9, 9)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medtl.runs.records import read_postprocess
from medtl.utils.errors import ConfigError

__all__ = [
    "POSTPROCESS_FILE",
    "apply_rule",
    "cell_rule",
    "largest_component",
    "parse_rule",
    "remove_small",
]

POSTPROCESS_FILE = "postprocess.json"
_EIGHT = np.ones((3, 3), bool)


def parse_rule(text: str | None) -> str | None:
    """``"none"``/None -> None; ``"largest"``, ``"min_area=A"`` or ``"min_area=A%"`` as given
    (checked); anything else is a :class:`ConfigError` naming the forms."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    rule = str(text).strip().lower().replace(" ", "")
    if rule == "largest":
        return rule
    if rule.startswith("min_area="):
        value = rule.split("=", 1)[1].rstrip("%")
        try:
            ok = float(value) >= 0
        except ValueError:
            ok = False
        if ok:
            return rule
    raise ConfigError(
        f"--postprocess {text}: give largest, min_area=A (pixels), min_area=A% (of the image) "
        "or none"
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a binary mask (all of an empty one)."""
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def remove_small(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """A binary mask without its 8-connected components of fewer than ``min_pixels`` pixels."""
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def _binary(mask: np.ndarray, rule: str) -> np.ndarray:
    if rule == "largest":
        return largest_component(mask)
    value = rule.split("=", 1)[1]
    pixels = float(value.rstrip("%"))
    if value.endswith("%"):
        pixels = pixels / 100.0 * mask.size
    return remove_small(mask, pixels)


def apply_rule(mask: np.ndarray, rule: str | None, multilabel: bool = False) -> np.ndarray:
    """``mask`` (bool, or uint8 label indices) under ``rule`` (see :func:`parse_rule`); a label
    map is processed label by label, removed pixels becoming background. ``multilabel``: the
    mask holds structure ``k`` in bit ``k`` (one sigmoid per structure), and each structure is
    processed on its own."""
    rule = parse_rule(rule)
    if rule is None:
        return mask
    if multilabel:
        planes = [_binary(((mask >> k) & 1) > 0, rule) for k in range(8)]
        return sum((p.astype(np.uint8) << k for k, p in enumerate(planes)), np.zeros_like(mask))
    if mask.dtype == bool:
        return _binary(mask.astype(bool), rule)
    out = np.zeros_like(mask)
    for k in np.unique(mask):
        if k:
            out[_binary(mask == k, rule)] = k
    return out


def cell_rule(cell: Path) -> str | None:
    """The rule a cell's ``postprocess.json`` chose (None without one or when none won)."""
    doc = read_postprocess(Path(cell) / POSTPROCESS_FILE)
    return doc.get("rule") if doc else None
