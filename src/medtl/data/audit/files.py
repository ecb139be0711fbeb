"""The audit's per-file checks: each image and mask decoded once, what is odd about it.

:func:`decode_sample` records unreadable files, masks that are not single-channel 8-bit
binary (:func:`mask_reasons`), masks whose size differs from their image and images with
several masks; :func:`other_files` lists the files that are not images.
:mod:`medtl.data.audit.report` turns these into its report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from medtl.data.audit.masks import NAMES_FILES
from medtl.data.dedup import View, grey_view, hashes_of, view_of
from medtl.data.layouts import MASK_EXTS, Sample
from medtl.data.masks.scan import binary_with_edges, facts_of, remember
from medtl.data.readers import io
from medtl.data.readers.dicom import header, is_dicom, is_seg
from medtl.data.readers.io import binarise_mask, read_array
from medtl.data.readers.volumes import is_volume
from medtl.utils.errors import DataError
from medtl.utils.parallel import imap_ordered, progress

_SINGLE_CHANNEL_8BIT = ("1", "L", "DICOM SEG")  # a SEG reads as 0/1 (or segment numbers)


@dataclass
class Decoded:
    """Per sample, what one decode of its files gave."""

    shape: tuple[int, int] | None = None
    hashes: tuple | None = None  # medtl.data.duplicates.hashes.hashes_of
    view: View | None = None
    """The grey <= 256 px view duplicate verification compares (64 KB at most), kept from
    this decode so that verifying a candidate pair reads no file again."""
    coverage: float | None = None
    mask_facts: list | None = None
    """The mask scan's facts (:func:`medtl.data.masks.scan.facts_of`) of each mask read here,
    handed to the scan so that it reads no mask again."""
    objects: dict[str, list[float]] | None = None
    """Per structure (mask label value, or ``foreground``): the image-area share of each
    connected object (8-connected), for medtl plan's image size."""


def object_shares(mask: np.ndarray) -> list[float]:
    """The area of each 8-connected object of a boolean mask, as a share of the image."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return []
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # labelling only the objects' box
    n, _, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(box, dtype=np.uint8), connectivity=8
    )
    return (stats[1:, cv2.CC_STAT_AREA] / mask.size).tolist()


def _structures(arr: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    """An integer label map (3-32 values) per label value; any other mask, a binary one
    with noisy or anti-aliased edges included (:func:`binary_with_edges`), as one foreground."""
    if arr.ndim == 2 and arr.dtype.kind in "ui":
        values = io.value_counts(arr)[0]
        if 3 <= len(values) <= 32 and not binary_with_edges(path, arr):
            return {str(int(v)): arr == v for v in values if v}
    return {"foreground": binarise_mask(arr)}


def mask_reasons(arr: np.ndarray, mode: str) -> list[str]:
    """Why a mask array is not a single-channel 8-bit binary mask (empty list if it is)."""
    reasons = []
    if arr.ndim == 3:
        reasons.append(f"not single-channel ({arr.shape[2]} channels)")
    elif mode == "P":
        reasons.append("palette (indices used as values)")
    elif mode not in _SINGLE_CHANNEL_8BIT and arr.dtype != bool:  # bool: NIfTI label > 0
        reasons.append(f"{arr.dtype.itemsize * 8}-bit {arr.dtype}")
    flat = io.channel_max(arr)
    values = io.value_counts(flat)[0] if flat.dtype.kind in "uib" else np.unique(flat)
    if len(values) > 2:
        shown = ", ".join(str(v) for v in values[:8].tolist())
        more = ", ..." if len(values) > 8 else ""
        reasons.append(f"non-binary ({len(values)} values: {shown}{more})")
    return reasons


def _header_mode(path: Path) -> str:
    from medtl.data.refs import parse_ref

    parsed = parse_ref(path)
    if parsed is not None:
        return "DICOM frame" if parsed[1] == "f" else f"NIfTI {parsed[3]}"
    if is_dicom(path):
        return "DICOM SEG" if is_seg(header(path)) else "DICOM"
    with Image.open(path) as img:  # header only: no pixel decode
        return img.mode


def decode_sample(s: Sample, rep: dict[str, Any], resize: str = "none") -> Decoded:
    """Decode ``s``'s image and masks once; what is wrong with them goes into ``rep``'s lists
    and counters (``unreadable``, ``multi_mask``, ``odd_masks``, ``mask_size_mismatch``,
    ``image_modes``, ``mask_modes``, ``sizes``). A bad file is recorded, never raised.
    ``resize``: ``data.mask_resize`` (``nearest`` reads masks of another size as training does)."""
    out = Decoded()
    try:
        rgb = io.read_image(s.image)  # first: its DataError says what is wrong
        mode = _header_mode(s.image)
    except (DataError, OSError) as exc:
        rep["unreadable"].append({"path": str(s.image), "error": _err(s.image, exc)})
        return out
    out.shape = rgb.shape[:2]
    grey = grey_view(rgb)  # once, for the hashes and the view
    out.hashes, out.view = hashes_of(rgb, grey), view_of(rgb, grey)
    rep["image_modes"][mode] += 1
    rep["sizes"][(rgb.shape[1], rgb.shape[0])] += 1
    if not s.masks:
        return out
    if len(s.masks) > 1 and not s.meta.get("structures"):  # structures: one mask each
        rep["multi_mask"].append({"image": str(s.image), "masks": [str(m) for m in s.masks]})
    merged: np.ndarray | None = None
    for m in s.masks:
        got = _read_mask(m, out, rep)
        if got is None:
            continue
        arr, mmode = got
        arr = _resized(arr, out.shape, m, resize)
        reasons = mask_reasons(arr, mmode)
        if reasons:
            rep["odd_masks"].append(
                {
                    "mask": str(m),
                    "mode": mmode,
                    "shape": list(arr.shape),
                    "dtype": str(arr.dtype),
                    "reasons": reasons,
                }
            )
        if arr.shape[:2] != out.shape:
            rep["mask_size_mismatch"].append(
                {
                    "mask": str(m),
                    "mask_size": f"{arr.shape[1]}x{arr.shape[0]}",
                    "image": str(s.image),
                    "image_size": f"{out.shape[1]}x{out.shape[0]}",
                }
            )
            continue
        b = binarise_mask(arr)
        merged = b if merged is None else merged | b
        objects = out.objects if out.objects is not None else {}
        for name, part in _structures(arr, Path(m)).items():
            objects.setdefault(name, []).extend(object_shares(part))
        out.objects = objects
    if merged is not None:
        out.coverage = float(merged.mean())
    return out


def _read_mask(m: Path, out: Decoded, rep: dict[str, Any]) -> tuple[np.ndarray, str] | None:
    """``m``'s pixels and mode (its mask-scan facts added to ``out``); None, recorded in
    ``rep``, when it cannot be read."""
    header: dict[str, Any] = {}
    try:
        arr = read_array(m, header=header)
        mmode = header.get("mode") or _header_mode(m)  # Pillow's, from the same open
    except (DataError, OSError) as exc:
        rep["unreadable"].append({"path": str(m), "error": _err(m, exc)})
        return None
    out.mask_facts = (out.mask_facts or []) + [facts_of(Path(m), arr, header)]
    rep["mask_modes"][mmode] += 1
    return arr, mmode


def _resized(arr: np.ndarray, shape: tuple[int, int], path: Path, resize: str) -> np.ndarray:
    """``arr`` at the image's ``shape`` when ``data.mask_resize=nearest`` resizes it, as
    training reads it (:func:`medtl.data.readers.io.fit_mask`); else unchanged (a mask of
    another size is then reported)."""
    if arr.shape[:2] == tuple(shape) or resize != "nearest":
        return arr
    try:
        return io.fit_mask(arr, tuple(shape), path, resize)
    except DataError:  # another aspect ratio: reported as a size mismatch
        return arr


def empty_report() -> dict[str, Any]:
    """The lists and counters :func:`decode_sample` fills."""
    lists = ("unreadable", "multi_mask", "odd_masks", "mask_size_mismatch")
    counters = ("image_modes", "mask_modes", "sizes")
    return {**{k: [] for k in lists}, **{k: Counter() for k in counters}}


def _decode_one(s: Sample, resize: str = "none") -> tuple[Decoded, dict[str, Any]]:
    local = empty_report()
    return decode_sample(s, local, resize), local


def decode_all(
    samples: Sequence[Sample], resize: str = "none"
) -> tuple[list[Decoded], dict[str, Any]]:
    """:func:`decode_sample` for every sample on the decoding workers (processes where
    :func:`medtl.utils.parallel.fork_is_safe`, else threads), merged in sample order: the
    lists and counters are those of the serial loop."""
    rep = empty_report()
    decoded = []
    found = imap_ordered(partial(_decode_one, resize=resize), samples, processes=True)
    for d, local in progress(found, total=len(samples), desc="auditing images"):
        decoded.append(d)
        for key, value in local.items():
            if isinstance(value, Counter):
                rep[key].update(value)
            else:
                rep[key].extend(value)
    remember([f for d in decoded for f in d.mask_facts or ()])
    return decoded, rep


def _err(path: Path, exc: Exception) -> str:
    msg = str(exc)
    return msg if str(path) in msg else f"{path}: {msg}"


def other_files(root: Path, layout: str) -> list[str]:
    """Files under ``root`` that are not images (hidden files included; root-level
    manifests of the csv layout and ``labels.yaml``/``labels.json`` excluded)."""
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() in MASK_EXTS or is_volume(p):
            continue
        if layout == "dicom" and is_dicom(p):  # used, or skipped and counted by kind
            continue
        if layout == "csv" and p.parent == root and p.suffix.lower() == ".csv":
            continue
        if p.parent == root and p.name.lower() in NAMES_FILES:  # the label names
            continue
        out.append(str(p))
    return out


#: images with a side below this many pixels are reported: a thumbnail, an icon or a broken
#: export, not an image to learn from (the smallest training size is 16 px)
MIN_SIDE = 8


def placement_problems(
    samples: Sequence[Sample], root: Path, decoded: Sequence[Decoded]
) -> list[str]:
    """Lines for files outside the data folder (a CSV manifest can point anywhere: such a
    file is used, but nothing in the data folder vouches for it) and for tiny images.
    A manifest given as ``root`` stands for the folder that holds it."""
    base = Path(root).resolve()
    base = base.parent if base.is_file() else base
    lines = []
    for s, d in zip(samples, decoded, strict=True):
        for f in (s.image, *s.masks):
            if not Path(f).resolve().is_relative_to(base):
                lines.append(f"{f}: outside the data folder {base} (named by the manifest)")
        if d.shape is not None and min(d.shape) < MIN_SIDE:
            h, w = d.shape
            lines.append(f"{s.image}: {w}x{h} pixels, below {MIN_SIDE} px a side; remove it")
    return lines


def object_sizes(decoded: list[Decoded]) -> dict[str, dict[str, float]]:
    """Per structure: ``n_objects``, ``n_images`` and the objects' image-area shares
    (``min_share``, ``p10_share``, ``median_share``): how small the things to segment are."""
    shares: dict[str, list[float]] = defaultdict(list)
    images: Counter = Counter()
    for d in decoded:
        for name, found in (d.objects or {}).items():
            shares[name] += found
            images[name] += bool(found)
    return {
        name: {
            "n_objects": len(v),
            "n_images": images[name],
            "min_share": float(np.min(v)),
            "p10_share": float(np.percentile(v, 10)),
            "median_share": float(np.median(v)),
        }
        for name, v in sorted(shares.items())
        if v
    }


def object_lines(objects: dict[str, dict[str, float]]) -> list[str]:
    """The audit report's lines for :func:`object_sizes`."""
    return [
        f"  objects {name}: {o['n_objects']} in {o['n_images']} images, area share "
        f"min {o['min_share']:.2g}, p10 {o['p10_share']:.2g}, median {o['median_share']:.2g}"
        for name, o in objects.items()
    ]
