"""What the mask files mean (``data.mask_mode``), decided once per data set, never silently.

Modes:

* ``binary``: the documented binarisation rule of :mod:`medtl.data.readers.io` (one foreground
  label, sigmoid head). Mask files whose values are not binary (e.g. label maps 0/1/2), or
  that hold non-zero values the rule would turn into an empty mask, are an error.
* ``labels``: one-channel integer label maps (8 or 16 bit); value 0 is background and every
  other value one label. Values need not be contiguous (0/128/255 are three classes): they
  are remapped to 0..C for training and mapped back on output.
* ``palette``: mode-P PNGs, the palette index is the label (every file the same palette;
  the run records it in ``data.mask_palette`` and predicted masks are written with it).
* ``colors``: RGB masks, each colour one label (``data.mask_colors``), black is background.
* ``multilabel``: one binary mask file per structure (the ``structures`` layout,
  :mod:`medtl.data.layouts.structures`); structures may overlap, so they cannot be one label map.
  Structure ``k`` (1-based) is bit ``k - 1`` of the decoded ``uint8`` mask (at most
  :data:`MAX_STRUCTURES`), the model has one sigmoid channel per structure, and predicted
  masks are written one file per structure (``<name>_<structure>.png``). ``auto`` chooses it
  for the ``structures`` layout; ``binary`` there trains on the union of the structures.
* ``auto`` decides from the files (:func:`medtl.data.masks.scan.decide`): binary when every mask fits the binary
  rule (two values; or JPEG-noisy / interpolated 0/255 masks, thresholded at 128), labels
  for a small set of integer values, palette for mode-P PNGs with more than two indices,
  colors for RGB masks with a few distinct colours. Anything else stops with one line that
  names a file, the values found and the key that resolves it.

Names: ``data.labels=1:lesion,2:halo`` (or ``labels.yaml``/``labels.json`` in the data root,
``{1: lesion, 2: halo}``) and ``data.mask_colors=255,0,0:tumour;0,255,0:edema``. The decision
is written back into the config (``data.mask_mode``, ``data.labels``, ``data.mask_colors``,
``data.mask_palette``), so config.yaml records it; training hands the one decided
:class:`MaskScheme` to the model builder, the loss and the metrics, and a run read back
(evaluate, predict, explain, app, export, report) rebuilds it once from that record
(:func:`medtl.runs.folder.run_scheme`) without reading a mask file. Predicted masks are
written in the masks' own encoding (:func:`medtl.inference.engine.save_mask`).

Example:
    >>> import numpy as np
    >>> s = MaskScheme("labels", (128, 255), ("a", "b"))
    >>> s.to_index(np.array([[0, 128], [255, 0]], np.uint8)).tolist()
    [[0, 1], [2, 0]]
    >>> s.to_stored(np.array([[0, 1], [2, 0]], np.uint8)).tolist()
    [[0, 128], [255, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.readers import io
from medtl.utils.errors import DataError
from medtl.utils.records import load_json, load_yaml

MODES = ("auto", "binary", "labels", "palette", "colors", "multilabel")
#: structures of a multilabel scheme: one bit each of a uint8 mask
MAX_STRUCTURES = 8
MULTILABEL_NOTE = (
    "one binary mask per structure (masks/<structure>/ or <name>_<structure>); structures "
    "may overlap, so one sigmoid channel each instead of a label map"
)
#: more distinct values (or colours) than this is not a label map
MAX_LABELS = 32
JPEG_NOTE = "JPEG-compressed binary masks, thresholded at 128"
NOISY_NOTE = "binary masks with intermediate (interpolated) values, thresholded at 128"
BINARY_NOTE = "binary masks (the binarisation rule of medtl.data.readers.io)"
#: share of pixels that must lie within 32 of 0 or 255 for a many-valued 8-bit mask to be binary
NOISY_SHARE = 0.95


@dataclass(frozen=True)
class MaskScheme:
    """The decided interpretation: ``values[k-1]`` is the stored value (int, or an RGB tuple
    for ``colors``) of label ``k``; ``binary`` without values applies the binarisation rule.

    ``resize`` is ``data.mask_resize`` (``none``: a mask of another size than its image is an
    error; ``nearest``: resized to it when the aspect ratios agree). It travels with the
    scheme to every mask read (:func:`medtl.data.readers.io.read_mask`) and into the decode
    cache's fingerprint, so two data sets loaded in one process never share it."""

    mode: str
    values: tuple = ()
    names: tuple[str, ...] = ()
    note: str = ""
    palette: tuple[int, ...] = ()  # palette masks: the files' palette (R, G, B, R, ...)
    resize: str = "none"  # data.mask_resize: none | nearest

    def resized(self, mode: str | None) -> MaskScheme:
        """This scheme with ``data.mask_resize`` = ``mode`` (None: ``none``)."""
        return replace(self, resize=mode or "none")

    @property
    def n_labels(self) -> int:
        """Foreground labels (1 for binary)."""
        return max(1, len(self.values))

    @property
    def multilabel(self) -> bool:
        """One binary mask per structure (overlapping): one sigmoid channel each."""
        return self.mode == "multilabel"

    @property
    def multi(self) -> bool:
        """Scored per label: more than one foreground label (a softmax head with
        ``n_labels + 1`` channels), or structures (``multilabel``)."""
        return self.n_labels > 1 or self.multilabel

    @property
    def channels(self) -> int:
        """Output channels of the segmentation head."""
        if self.multilabel:
            return self.n_labels
        return self.n_labels + 1 if self.multi else 1

    def structure(self, bits: np.ndarray, k: int) -> np.ndarray:
        """Structure ``k`` (1-based) of a ``multilabel`` mask -> ``bool (H, W)``."""
        return (np.asarray(bits).astype(np.uint8) >> (k - 1)) & 1 > 0

    def shown(self, mask: np.ndarray) -> np.ndarray:
        """A mask as overlays draw it: unchanged, except ``multilabel`` bits -> the index
        of each pixel's first structure (name order; the overlays' legend colours)."""
        if not self.multilabel:
            return mask
        out = np.zeros(mask.shape, np.uint8)
        for k in range(self.n_labels, 0, -1):
            out[self.structure(mask, k)] = k
        return out

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.names or ("foreground",)

    def describe(self) -> str:
        """The decision in one line (train.log, audit, run.json)."""
        if not self.values:
            return f"binary: {self.note or BINARY_NOTE}"
        if self.multilabel:
            return f"multilabel: {', '.join(self.names)} ({self.note or MULTILABEL_NOTE})"
        pairs = ", ".join(
            f"{_fmt_value(v)}={n}" for v, n in zip(self.values, self.names, strict=True)
        )
        kind = {"labels": "label masks", "palette": "palette masks", "colors": "colour masks"}
        return f"{self.mode}: {kind.get(self.mode, self.mode)}, background 0, {pairs}" + (
            f" ({self.note})" if self.note else ""
        )

    def to_index(self, arr: np.ndarray, path: Path | str = "mask") -> np.ndarray:
        """One mask array -> ``bool (H, W)`` (binary) or ``uint8 (H, W)`` label indices."""
        if not self.values or self.multilabel:  # multilabel: one structure's file
            return io.binarise_mask(arr)
        if self.mode == "colors":
            rgb = _rgb(arr)
            out = np.zeros(rgb.shape[:2], np.uint8)
            known = ~rgb.any(axis=2)
            for k, colour in enumerate(self.values, 1):
                hit = (rgb == np.array(colour, rgb.dtype)).all(axis=2)
                out[hit], known = k, known | hit
            if not known.all():
                bad = tuple(int(c) for c in rgb[~known][0])
                raise DataError(f"{path}: colour {bad} is not in data.mask_colors; add it there")
            return out
        grey = _grey(arr, path)
        lut = np.full(int(max(grey.max(initial=0), max(self.values))) + 1, 255, np.uint8)
        lut[0] = 0
        for k, v in enumerate(self.values, 1):
            lut[int(v)] = k
        out = lut[grey.astype(np.int64)]
        if (out == 255).any():
            bad = sorted(set(np.unique(grey[out == 255]).tolist()))[:5]
            raise DataError(
                f"{path}: mask value(s) {bad} outside data.labels ({self.labels_text()}); "
                "add them to data.labels or fix the mask"
            )
        return out

    def to_stored(self, index: np.ndarray) -> np.ndarray:
        """Predicted label indices -> the masks' own values (bool stays bool; RGB for colours)."""
        if not self.values or index.dtype == bool:
            return index
        if self.mode == "colors":
            table = np.array([(0, 0, 0), *self.values], np.uint8)
            return table[index]
        dtype = np.uint16 if max(self.values) > 255 else np.uint8
        return np.array([0, *self.values], dtype)[index]

    def labels_text(self) -> str:
        """``data.labels`` (or ``data.mask_colors``) text of this scheme."""
        if self.mode == "colors":
            return ";".join(
                f"{','.join(map(str, v))}:{n}" for v, n in zip(self.values, self.names, strict=True)
            )
        return ",".join(f"{v}:{n}" for v, n in zip(self.values, self.names, strict=True))

    def config_values(self) -> dict[str, Any]:
        """What the config records of the decision (``data.*`` keys)."""
        if self.mode == "colors":
            return {"mask_mode": "colors", "labels": None, "mask_colors": self.labels_text()}
        out = {"mask_mode": self.mode, "labels": self.labels_text() or None, "mask_colors": None}
        if self.mode == "palette":  # the files' palette, for writing predicted masks
            out["mask_palette"] = bytes(self.palette).hex() or None
        return out


def _fmt_value(v: Any) -> str:
    return "(" + ",".join(map(str, v)) + ")" if isinstance(v, tuple) else str(v)


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    return arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2)


def _grey(arr: np.ndarray, path: Path | str) -> np.ndarray:
    """A one-channel integer label map; multi-channel and float masks are errors."""
    if arr.ndim == 3:
        chans = arr[..., : 3 if arr.shape[2] >= 3 else 1]
        if arr.shape[2] > 4 or not (chans == chans[..., :1]).all():
            raise DataError(
                f"{path}: multi-channel label map ({arr.shape[2]} channels that differ); save one "
                "channel, or set data.mask_mode=colors with data.mask_colors for colour masks"
            )
        arr = chans[..., 0]
    if np.issubdtype(arr.dtype, np.floating):
        raise DataError(
            f"{path}: float mask (values {float(arr.min()):.3g}..{float(arr.max()):.3g}); labels "
            "must be integers: save it as an 8/16-bit PNG, or set data.mask_mode=binary"
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    return arr


def scheme_from_config(data_cfg: Any) -> MaskScheme:
    """The scheme a resolved config records (``data.mask_mode``, ``data.labels``,
    ``data.mask_colors``, ``data.mask_palette``, ``data.mask_resize``): no files are read.
    A run read back rebuilds its scheme through :func:`medtl.runs.folder.run_scheme`, once,
    and hands that object along."""
    mode = getattr(data_cfg, "mask_mode", "auto") or "auto"
    resize = getattr(data_cfg, "mask_resize", None)
    if mode == "colors" and getattr(data_cfg, "mask_colors", None):
        values, names = parse_colors(data_cfg.mask_colors)
        return MaskScheme("colors", values, names).resized(resize)
    labels = getattr(data_cfg, "labels", None)
    if mode in ("labels", "palette", "multilabel") and labels:
        values, names = parse_labels(labels)
        palette = getattr(data_cfg, "mask_palette", None) if mode == "palette" else None
        scheme = MaskScheme(mode, values, names, palette=tuple(bytes.fromhex(palette or "")))
        return scheme.resized(resize)
    return MaskScheme("binary").resized(resize)


def parse_labels(text: str | dict) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """``"1:lesion,2:halo"`` (or a mapping) -> ``((1, 2), ("lesion", "halo"))``; a bare value
    is named ``label_<value>``."""
    items = (
        text.items()
        if isinstance(text, dict)
        else (
            tuple(p.split(":", 1)) if ":" in p else (p, "")
            for p in str(text).split(",")
            if p.strip()
        )
    )
    pairs = []
    for value, name in items:
        try:
            v = int(str(value).strip())
        except ValueError:
            raise DataError(
                f"data.labels: '{value}' is not an integer mask value; write e.g. data.labels=1:lesion,2:halo"
            ) from None
        if v <= 0:
            raise DataError(
                f"data.labels: value {v} is background (0) or negative; list labels >= 1"
            )
        pairs.append((v, str(name).strip() or f"label_{v}"))
    pairs.sort()
    return tuple(v for v, _ in pairs), tuple(n for _, n in pairs)


def parse_colors(text: str) -> tuple[tuple[tuple[int, int, int], ...], tuple[str, ...]]:
    """``"255,0,0:tumour;0,255,0:edema"`` -> colours and names (in the given order)."""
    values, names = [], []
    for part in (p for p in str(text).split(";") if p.strip()):
        rgb, _, name = part.partition(":")
        try:
            colour = tuple(int(c) for c in rgb.split(","))
        except ValueError:
            colour = ()
        if len(colour) != 3 or not all(0 <= c <= 255 for c in colour) or not any(colour):
            raise DataError(
                f"data.mask_colors: '{part}' is not R,G,B:name (non-black); "
                "write e.g. data.mask_colors=255,0,0:tumour;0,255,0:edema"
            )
        values.append(colour)
        names.append(name.strip() or "color_" + "_".join(map(str, colour)))
    return tuple(values), tuple(names)


def names_file(root: Path | str) -> dict | None:
    """``labels.yaml``/``labels.json`` of the data root as ``{value: name}``, or None."""
    root = Path(root)
    for name in ("labels.yaml", "labels.yml", "labels.json"):
        path = root / name
        if path.is_file():
            fix = "write a mapping value: name, e.g. 1: lesion"
            got = (load_json if path.suffix == ".json" else load_yaml)(path, fix)
            if not isinstance(got, dict):
                raise DataError(f"{path}: expected a mapping value: name, e.g. 1: lesion")
            for value, name in got.items():
                if not str(value).strip().isdigit() or int(str(value)) < 1:
                    raise DataError(f"{path}: {str(value)[:40]!r} is not a mask value >= 1; {fix}")
                if isinstance(name, (dict, list)):
                    raise DataError(f"{path}: the name of {value} is not a text; {fix}")
            return got
    return None


def presence(scheme: MaskScheme, samples: Sequence[Any]) -> list[set[int]]:
    """The label indices found in each sample's masks (``scheme`` applied to the files)."""
    from medtl.utils.parallel import map_ordered

    def one(s: Any) -> set[int]:
        found: set[int] = set()
        for m in s.masks:
            idx = scheme.to_index(io.read_array(Path(m)), m)
            found |= {int(v) for v in np.unique(idx.astype(np.uint8))} - {0}
        return found

    return map_ordered(one, list(samples))
