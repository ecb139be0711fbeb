"""The audit's view of what the masks mean: the decision training would take
(:func:`medtl.data.masks.scan.resolve`, the same call and the same one-line error) and, for
label maps, a table of label values with their pixel share and the number of images that
hold each label; labels seen in fewer than :data:`RARE_IMAGES` images are flagged.

Example::

    >>> scheme, info = interpret(samples, root)          # doctest: +SKIP
    >>> rows, coverage = label_table(scheme, samples)    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from medtl.data.masks.scan import resolve
from medtl.data.masks.scheme import JPEG_NOTE, NOISY_NOTE, MaskScheme
from medtl.data.readers import io, kept
from medtl.utils.errors import DataError
from medtl.utils.parallel import map_ordered

#: a label in fewer images than this is likely missing from the validation or test split
#: (15 % each by default): flagged as a problem
RARE_IMAGES = 5
#: files in the data root that name the labels (read by training): not stray files
NAMES_FILES = ("labels.yaml", "labels.yml", "labels.json")


def default_masks() -> SimpleNamespace:
    """The ``data.*`` mask keys at their defaults (``mask_mode=auto``, no names given)."""
    return SimpleNamespace(mask_mode="auto", labels=None, mask_colors=None)


def interpret(
    samples: Sequence[Any], root: Path | str, masks: Any = None, skip: set[str] | None = None
) -> tuple[MaskScheme | None, dict[str, Any]]:
    """What ``medtl train`` would decide for these masks: ``(scheme, info)``; ``scheme`` is
    None when training would stop, and ``info["error"]`` holds the one line it would print.
    ``masks`` carries ``mask_mode``/``labels``/``mask_colors`` (default: :func:`default_masks`);
    samples with a mask in ``skip`` (unreadable files, reported on their own) are left out."""
    skip = skip or set()
    with_masks = [s for s in samples if s.masks and not any(str(m) in skip for m in s.masks)]
    if not with_masks:
        return None, {}
    try:
        scheme = resolve(masks or default_masks(), with_masks, root)
    except DataError as exc:
        return None, {"mode": None, "description": None, "labels": [], "error": str(exc)}
    labels = [
        {"value": _plain(v), "name": n} for v, n in zip(scheme.values, scheme.names, strict=True)
    ]
    info = {"mode": scheme.mode, "description": scheme.describe(), "labels": labels}
    return scheme, {**info, "error": None}


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else int(v)


def quiet_odd_masks(odd: list[dict[str, Any]], scheme: MaskScheme | None) -> list[dict]:
    """The odd-mask entries still worth a line once the interpretation is known: none for
    label maps (values, channels and bit depth are what the scheme reads), and no
    "non-binary" reason for JPEG-noisy or interpolated binary masks (said once instead)."""
    if scheme is None:
        return odd
    if scheme.values:
        return []
    if not scheme.note.startswith((JPEG_NOTE, NOISY_NOTE)):  # NOISY_NOTE (evidence)
        return odd
    out = []
    for o in odd:
        reasons = [r for r in o["reasons"] if not r.startswith("non-binary")]
        if reasons:
            out.append({**o, "reasons": reasons})
    return out


def label_table(
    scheme: MaskScheme, samples: Sequence[Any], shapes: Sequence[tuple[int, int] | None]
) -> tuple[list[dict[str, Any]], list[float | None]]:
    """Per label (background first): stored value, name, share of all mask pixels, number
    of images holding it, ``rare``; and each sample's foreground coverage (None when its
    image or a mask was unreadable or of another size). Masks are read as training reads
    them (:func:`medtl.data.readers.io.read_mask` with ``scheme``). Structures
    (``multilabel``) may overlap: each one's share is of all mask pixels, so the shares
    may sum to more than 1."""
    n = scheme.n_labels + 1

    def one(pair: tuple[Any, tuple[int, int] | None]) -> np.ndarray | None:
        s, shape = pair
        if not s.masks or shape is None:
            return None
        try:
            idx = io.read_mask(s.masks, shape, scheme)
        except (DataError, OSError):
            return None
        if scheme.multilabel:  # structure k in bit k
            per = [int(scheme.structure(idx, k).sum()) for k in range(1, n)]
            return np.array([int((idx == 0).sum()), *per, idx.size])
        return np.array([*np.bincount(idx.ravel(), minlength=n)[:n], idx.size])

    counts = map_ordered(one, list(zip(samples, shapes, strict=True)))
    found = [c for c in counts if c is not None]
    pixels = np.sum(found, axis=0) if found else np.zeros(n + 1, np.int64)
    images = np.sum([c > 0 for c in found], axis=0) if found else np.zeros(n + 1, np.int64)
    total = max(int(pixels[n]), 1)
    rows = []
    pairs = zip((0, *scheme.values), ("background", *scheme.names), strict=True)
    for k, (value, name) in enumerate(pairs):
        rows.append(
            {
                "index": k,
                "value": _plain(value),
                "name": name,
                "pixel_share": float(pixels[k]) / total,
                "n_images": int(images[k]),
                "rare": k > 0 and int(images[k]) < RARE_IMAGES,
            }
        )
    coverage = [None if c is None else 1.0 - float(c[0]) / max(int(c[n]), 1) for c in counts]
    return rows, coverage


def mask_meaning(
    ds: Any, decoded: list[Any], rep: dict[str, Any], masks: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """For the audit of ``ds`` (``decoded``: each sample's
    :class:`medtl.data.audit.files.Decoded`): the interpretation training would take, the label table (label maps: coverage then
    counts foreground labels, and odd-mask lines the scheme explains are dropped) and the
    lines for ``problems`` (the error training would stop with; rare labels). The label
    table reads no mask file again: it takes the pixels the mask scan read
    (:mod:`medtl.data.readers.kept`)."""
    with kept.keeping():
        return _mask_meaning(ds, decoded, rep, masks)


def _mask_meaning(
    ds: Any, decoded: list[Any], rep: dict[str, Any], masks: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    skip = {u["path"] for u in rep["unreadable"]}
    scheme, info = interpret(ds.samples, ds.root, masks, skip)
    rep["odd_masks"] = quiet_odd_masks(rep["odd_masks"], scheme)
    if info.get("error"):
        return info, [], [info["error"]]
    if scheme is None or not scheme.values:
        return info, [], []
    shapes = [d.shape if d.coverage is not None else None for d in decoded]
    rows, coverage = label_table(scheme, ds.samples, shapes)
    for d, c in zip(decoded, coverage, strict=True):
        d.coverage = c if d.coverage is not None else None
    n_masked = sum(c is not None for c in coverage)
    skipped = sum(1 for s, c in zip(ds.samples, coverage, strict=True) if s.masks and c is None)
    if skipped:  # a label seen in no counted image may sit in the skipped masks
        why = _skip_reason(rep)
        info["skipped"] = {"masks": skipped, "why": why}
        for r in rows:
            r["skipped_masks"], r["skipped_why"] = skipped, why
    problems = [
        p
        for r, p in zip(rows[1:], rare_problems(rows[1:], n_masked, full=True), strict=True)
        if p and not (skipped and r["n_images"] == 0)
    ]
    problems += [
        f"label {r['value']} ({r['name']}): in none of the {n_masked} images counted; "
        f"{skipped} images' masks were skipped ({why}), so it may be there"
        for r in rows[1:]
        if skipped and r["n_images"] == 0
    ]
    return info, rows, problems


def _skip_reason(rep: dict[str, Any]) -> str:
    sizes, unreadable = len(rep["mask_size_mismatch"]), len(rep["unreadable"])
    parts = (
        [f"{sizes} of another size than their image (data.mask_resize=nearest)"] if sizes else []
    )
    parts += [f"{unreadable} unreadable files"] if unreadable else []
    return ", ".join(parts) or "unreadable"


def rare_problems(rows: list[dict[str, Any]], n_masked: int, full: bool = False) -> list[str]:
    """One line per label seen in fewer than :data:`RARE_IMAGES` images (``full``: one
    entry per row, "" for the labels that are not rare)."""
    lines = [
        f"label {r['value']} ({r['name']}): in {r['n_images']} of {n_masked} images only; "
        "it may be missing from the validation or test split (train warns; add cases)"
        if r["rare"]
        else ""
        for r in rows
    ]
    return lines if full else [line for line in lines if line]


def format_masks(info: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The report lines: the interpretation (or the line training would stop with) and the
    label table."""
    if not info:
        return []
    if info.get("error"):
        return [f"  masks: training would stop: {info['error']}"]
    lines = [f"  masks: {info['description']}"]
    if rows:
        width = max(len(r["name"]) for r in rows)
        shown = [",".join(map(str, v)) if isinstance(v, list) else str(v) for v in _values(rows)]
        vw = max(len(v) for v in shown)
        lines.append("  label values (share of mask pixels, images holding the label):")
        for r, value in zip(rows, shown, strict=True):
            flag = "  RARE" if r["rare"] else ""
            count = f"{r['n_images']} images"
            if r.get("skipped_masks") and r["n_images"] == 0:
                count, flag = f"0 of the counted images ({r['skipped_masks']} skipped)", ""
            lines.append(
                f"    {value:>{vw}}  {r['name']:<{width}}  {100 * r['pixel_share']:5.1f} %  "
                f"{count}{flag}"
            )
        if info.get("skipped"):
            k = info["skipped"]
            lines.append(f"  label table leaves out {k['masks']} images' masks: {k['why']}")
    return lines


def _values(rows: list[dict[str, Any]]) -> list[Any]:
    return [r["value"] for r in rows]
