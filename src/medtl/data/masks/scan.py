"""Read every mask file once for its values (:func:`scan`) and decide what they mean
(:func:`decide`, the rules of :mod:`medtl.data.masks.scheme`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.masks.binary_rule import binary_scheme, noisy
from medtl.data.masks.scheme import (
    BINARY_NOTE,
    MAX_LABELS,
    MAX_STRUCTURES,
    MULTILABEL_NOTE,
    MaskScheme,
    names_file,
    parse_colors,
    parse_labels,
)
from medtl.data.readers import io, kept
from medtl.utils.errors import DataError

JPEG_SUFFIXES = (".jpg", ".jpeg")


@dataclass
class FileFacts:
    """What one mask file holds: ``kind`` grey | rgb | float | palette | multi."""

    path: Path
    kind: str
    values: dict = field(default_factory=dict)  # value (int or RGB tuple) -> pixel count
    palette: tuple | None = None
    jpeg: bool = False
    near_extremes: float = 0.0  # share of pixels within 32 of 0 or 255 (8-bit grey)
    #: 8-bit grey with 0, 255 and a few other values: the share of the other values' pixels
    #: that lie on an edge between 0 and 255 (:func:`edge_share`)
    on_edges: float = 0.0
    emptied: bool = False  # non-zero values that the binarisation rule makes empty
    channels: int = 1

    def shown(self, limit: int = 8) -> str:
        vals = sorted(self.values, key=lambda v: (isinstance(v, tuple), v))
        text = ",".join(str(v).replace(" ", "") for v in vals[:limit])
        return text + (f",... ({len(vals)} values)" if len(vals) > limit else "")


_FOUND: dict[str, tuple[tuple[int, int] | None, FileFacts]] = {}


def remember(facts: Sequence[FileFacts]) -> None:
    """Hand the next :func:`scan` the facts of masks another reader decoded (the audit's
    decode), so that it reads none of them again: each is taken once, a file whose size or
    modification time changed since is read again; a call replaces what an earlier one left."""
    _FOUND.clear()
    _FOUND.update((os.fspath(f.path), (_stamp(f.path), f)) for f in facts)


def _stamp(path: Path) -> tuple[int, int] | None:
    st = os.stat(path) if os.path.isfile(path) else None
    return (st.st_size, st.st_mtime_ns) if st else None


def facts_of(path: Path, arr: np.ndarray, header: dict[str, Any]) -> FileFacts:
    """What :func:`scan` finds in ``path`` from its pixels ``arr`` and the ``header`` that
    :func:`medtl.data.readers.io.read_array` filled."""
    return _facts_of(Path(path), arr, header.get("mode"), header.get("palette"))


def _file_facts(path: Path) -> FileFacts:
    """One read of ``path`` (its pixels kept for the decode, :mod:`medtl.data.readers.kept`)."""
    got = _FOUND.pop(os.fspath(path), None)
    known = kept.facts(path)
    if known is None and got is not None and got[0] is not None and got[0] == _stamp(path):
        known = got[1]
    if known is not None:
        return known
    header: dict = {}
    arr = io.read_array(path, header=header)
    facts = _facts_of(path, arr, header.get("mode"), header.get("palette"))
    kept.keep(path, arr, facts)
    return facts


def _facts_of(path: Path, arr: np.ndarray, mode: str | None, palette: list | None) -> FileFacts:
    facts = FileFacts(path, "grey", jpeg=path.suffix.lower() in JPEG_SUFFIXES)
    facts.emptied = bool(arr.any()) and not bool(io.binarise_mask(arr).any())
    if arr.ndim == 3:
        facts.channels = arr.shape[2]
        if arr.shape[2] > 4:
            facts.kind = "multi"
            return facts
        chans = arr[..., : 3 if arr.shape[2] >= 3 else 1]
        if not (chans == chans[..., :1]).all():
            facts.kind = "rgb"
            flat = chans.reshape(-1, chans.shape[2])
            colours, counts = np.unique(flat, axis=0, return_counts=True)
            facts.values = {
                tuple(int(c) for c in col): int(n) for col, n in zip(colours, counts, strict=True)
            }
            return facts
        arr = chans[..., 0]
    if np.issubdtype(arr.dtype, np.floating):
        facts.kind = "float"
        facts.values = {float(v): 0 for v in np.unique(arr)[:64]}
        return facts
    if mode == "P":
        facts.kind, facts.palette = "palette", tuple(palette or ())
    vals, counts = io.value_counts(arr)
    facts.values = {int(v): int(n) for v, n in zip(vals, counts, strict=True)}
    if arr.dtype == np.uint8 and arr.size:
        facts.near_extremes = float(((arr <= 32) | (arr >= 223)).mean())
        if 2 < len(vals) <= MAX_LABELS and {0, 255} <= set(facts.values):
            facts.on_edges = edge_share(arr)
    return facts


def edge_share(arr: np.ndarray) -> float:
    """The share of an 8-bit mask's pixels other than 0 and 255 that lie on an edge between
    the two: with both a 0 and a 255 pixel among their 8 neighbours. Anti-aliased edges of
    a 0/255 mask are one pixel wide (1.0); a label's region, or a band two pixels wide
    between background and another label, has pixels that touch one side only."""
    off = (arr != 0) & (arr != 255)
    if not off.any():
        return 0.0
    return float((_beside(arr == 0) & _beside(arr == 255))[off].mean())


def _beside(m: np.ndarray) -> np.ndarray:
    """``m`` grown by one pixel (8-connected)."""
    h, w = m.shape
    padded, out = np.pad(m, 1), np.zeros_like(m)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def scan(paths: Sequence[Path]) -> list[FileFacts]:
    """The facts of every mask file (decoded on the decoding threads, in order)."""
    from medtl.utils.parallel import map_ordered

    return map_ordered(_file_facts, list(paths))


def _union(facts: Sequence[FileFacts]) -> dict:
    total: dict = {}
    for f in facts:
        for v, n in f.values.items():
            total[v] = total.get(v, 0) + n
    return total


def binary_with_edges(path: Path | str, arr: np.ndarray) -> bool:
    """Whether one mask array is a binary mask with noisy or anti-aliased edges (the rule
    :func:`decide` applies), not a label map: for readers that see one file at a time."""
    return noisy(_facts_of(Path(path), arr, None, None))


def _named(values: Sequence, given: Any) -> tuple[tuple, tuple[str, ...]]:
    if not given:
        return tuple(values), tuple(f"label_{v}" for v in values)
    return parse_labels(given)


def _labels(facts: Sequence[FileFacts], mode: str, given: Any) -> MaskScheme:
    """Label maps (or palette indices): 0 background, every other value one label."""
    for f in facts:
        if f.kind in ("rgb", "multi"):
            raise DataError(
                f"{f.path}: multi-channel label map (colours {f.shown(4)}); save one channel, "
                "or set data.mask_mode=colors with data.mask_colors"
            )
        if f.kind == "float":
            raise DataError(
                f"{f.path}: float mask (values {min(f.values):.3g}..{max(f.values):.3g}); labels "
                "must be integers: save it as an 8/16-bit PNG, or set data.mask_mode=binary"
            )
        if mode == "palette" and f.kind != "palette":
            raise DataError(f"{f.path}: not a palette PNG; set data.mask_mode=labels (or auto)")
    if mode == "palette":
        first = facts[0]
        for f in facts[1:]:
            if f.palette != first.palette:
                raise DataError(
                    f"{f.path}: its palette differs from {first.path}'s; re-save the masks with "
                    "one palette, or set data.mask_mode=labels to use the indices as they are"
                )
    found = sorted(v for v in _union(facts) if v != 0)
    if len(found) > MAX_LABELS and not given:
        worst = max(facts, key=lambda f: len(f.values))
        raise DataError(
            f"{worst.path}: mask values {worst.shown()} are too many for a label map "
            f"(> {MAX_LABELS}); set data.mask_mode=binary to threshold them, or data.labels"
        )
    values, names = _named(found, given)
    outside = sorted(set(found) - set(values))
    if outside:
        f = next(f for f in facts if set(f.values) & set(outside))
        raise DataError(
            f"{f.path}: mask value(s) {outside[:5]} outside data.labels "
            f"({','.join(map(str, values))}); add them to data.labels or fix the mask"
        )
    missing = sorted(set(values) - set(found))
    if missing:
        raise DataError(
            f"{facts[0].path.parent}: label value(s) {missing} of data.labels occur in no mask; "
            "remove them from data.labels or check the masks"
        )
    palette = tuple(facts[0].palette or ()) if mode == "palette" else ()
    return MaskScheme(mode, tuple(values), names, palette=palette)


def _as_rgb(c: Any) -> tuple:
    return c if isinstance(c, tuple) else (c, c, c)


def _colors(facts: Sequence[FileFacts], colors: str | None) -> MaskScheme:
    found = sorted(c for c in _union(facts) if isinstance(c, tuple) and any(c))
    found += sorted((v, v, v) for v in _union(facts) if isinstance(v, int) and v)
    if colors:
        values, names = parse_colors(colors)
        for f in facts:
            bad = [c for c in map(_as_rgb, f.values) if any(c) and c not in values]
            if bad:
                raise DataError(
                    f"{f.path}: colour {bad[0]} is not in data.mask_colors; add it (R,G,B:name)"
                )
        missing = [n for c, n in zip(values, names, strict=True) if c not in found]
        if missing:
            raise DataError(
                f"{facts[0].path.parent}: data.mask_colors label(s) {missing} occur in no mask; "
                "remove them or check the masks"
            )
        return MaskScheme("colors", values, names)
    if len(found) > MAX_LABELS:
        worst = max(facts, key=lambda f: len(f.values))
        raise DataError(
            f"{worst.path}: RGB mask with {len(worst.values)} colours is not a colour-coded label "
            "map; set data.mask_mode=binary, or data.mask_colors=R,G,B:name;..."
        )
    names = tuple("color_" + "_".join(map(str, c)) for c in found)
    return MaskScheme("colors", tuple(found), names)


def decide(facts: Sequence[FileFacts], mode: str, given: Any, colors: str | None) -> MaskScheme:
    """The scheme for ``mode`` (auto: decided) from the files' facts."""
    if not facts:
        return MaskScheme("binary", note=BINARY_NOTE)
    if mode == "binary":
        return binary_scheme(facts, strict=True)  # type: ignore[return-value]
    if mode in ("labels", "palette"):
        return _labels(facts, mode, given)
    if mode == "colors":
        return _colors(facts, colors)
    if colors or any(f.kind == "rgb" for f in facts):
        got = None if colors else binary_scheme(facts, strict=False)
        return got or _colors(facts, colors)
    if given:
        return _labels(facts, _label_kind(facts), given)
    got = binary_scheme(facts, strict=False)
    if got is not None:
        return got
    return _labels(facts, _label_kind(facts), None)


def _label_kind(facts: Sequence[FileFacts]) -> str:
    return "palette" if all(f.kind == "palette" for f in facts) else "labels"


def mask_files(samples: Sequence[Any]) -> list[Path]:
    return [Path(m) for s in samples for m in s.masks]


def _structures(samples: Sequence[Any]) -> tuple[str, ...]:
    """The structure names of a ``structures`` layout (empty for any other)."""
    for s in samples:
        names = getattr(s, "meta", {}).get("structures")
        if names:
            return tuple(names)
    return ()


def _multilabel(facts: Sequence[FileFacts], names: tuple[str, ...], mode: str) -> MaskScheme:
    """One binary mask per structure: each file must fit the binary rule."""
    if not names:
        raise DataError(
            "data.mask_mode=multilabel needs one mask folder per structure "
            "(images/ + masks/<structure>/, layout 'structures')"
        )
    if mode not in ("auto", "multilabel"):
        raise DataError(
            f"data.mask_mode={mode}: the masks come one folder per structure "
            f"({', '.join(names)}); set data.mask_mode=multilabel (or auto), or binary for their union"
        )
    if len(names) > MAX_STRUCTURES:
        raise DataError(
            f"{len(names)} structures ({', '.join(names)}): at most {MAX_STRUCTURES}; "
            "move the others out of masks/"
        )
    binary = binary_scheme(facts, strict=True) if facts else None
    note = MULTILABEL_NOTE + (f"; {binary.note}" if binary and binary.note != BINARY_NOTE else "")
    values = tuple(range(1, len(names) + 1))
    return MaskScheme("multilabel", values, names, note=f"chosen: {note}")


def resolve(data_cfg: Any, samples: Sequence[Any], root: Path | str) -> MaskScheme:
    """Decide the scheme of ``samples``' masks from ``data_cfg`` and the files (see module
    docstring); raise a one-line DataError for anything ambiguous or inconsistent."""
    facts = scan(mask_files(samples))
    mode = getattr(data_cfg, "mask_mode", "auto") or "auto"
    names = _structures(samples)
    if mode == "multilabel" or (names and mode != "binary"):
        scheme = _multilabel(facts, names, mode)
        recorded = getattr(data_cfg, "labels", None)
        if mode == "multilabel" and recorded and parse_labels(recorded)[1] != names:
            raise DataError(
                f"{root}: structures {', '.join(names)} differ from the run's "
                f"({parse_labels(recorded)[1]}); evaluate on data with the same mask folders"
            )
        return scheme
    given = getattr(data_cfg, "labels", None) or names_file(root)
    colors = getattr(data_cfg, "mask_colors", None)
    return decide(facts, mode, given, colors)


def resolve_into(data_cfg: Any, ds: Any) -> MaskScheme:
    """:func:`resolve` for a discovered data set, the decision written back into
    ``data_cfg`` (``mask_mode``, ``labels``, ``mask_colors``: config.yaml records it).
    A binary decision leaves the config as it was."""
    scheme = resolve(data_cfg, ds.samples, ds.root)
    if scheme.values:
        for key, value in scheme.config_values().items():
            setattr(data_cfg, key, value)
    return scheme
