"""Audit a data set before training: duplicates, cross-split leakage, mask sanity, bad files.

Duplicates are found with two hashes per image (see :func:`image_hashes`):

- an **exact** hash: sha1 of the decoded ``uint8 (H, W, 3)`` pixels and their shape, so a
  byte-identical copy, or the same pixels saved in another format, collide;
- a 64-bit **perceptual** hash (DCT pHash): the image is converted to grey, resized to
  32x32, transformed with a 2D DCT-II; the 8x8 lowest frequencies are compared with
  their median, one bit each. Two images are **near-duplicates** when the Hamming distance
  of their pHashes is ``<= NEAR_DUP_MAX_DISTANCE`` (4 of 64 bits).

The threshold was checked on BUSI (780 images, longest side 256 px; pHash distances are
even, as 32 of the 64 coefficients lie above their median). All 185 pairs at distance
0-4 are the same scan re-exported (re-cropped, re-scaled, calipers added or removed):
178 have a pixel correlation >= 0.9 at 64x64 (the 99.9th percentile over all pairs is
0.87), the other 7 were checked by eye. With the one byte-identical pair they form 125
groups (124 near, 1 exact) of at most 4 images, none chaining unrelated scans. 6 is
still clean on BUSI (+17 groups); at 8 adjacent frames of one lesion start to chain (a
group of 7) and at 10-12 different scans of one breast collide; unrelated images sit
near 32. 4 keeps that margin for data sets more uniform than ultrasound (X-ray); pass
``max_distance=6`` to catch more heavily edited copies.

Example::

    >>> report = audit("Dataset_BUSI_with_GT")          # doctest: +SKIP
    >>> print(report.format())                          # doctest: +SKIP
    >>> samples = assign_groups(discover(root).samples)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.fft import dctn

from medtl.data.io import binarise_mask, read_array, read_image
from medtl.data.layouts import IMAGE_EXTS, Sample, discover
from medtl.errors import DataError

NEAR_DUP_MAX_DISTANCE = 4
"""Largest pHash Hamming distance (of 64 bits) at which two images count as near-duplicates."""

_HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
_DCT_SIZE = 32  # greyscale image resized to 32x32 before the DCT
_SINGLE_CHANNEL_8BIT = ("1", "L")
_SHOW = 10  # items of a long list shown by AuditReport.format()


# ----------------------------------------------------------------------------- hashing


def phash(rgb: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an image array (``(H, W)`` or ``(H, W, 3)``).

    Bit 63 is the DC coefficient, then the 8x8 block row by row; a bit is set when the
    coefficient exceeds the block's median.
    """
    a = np.asarray(rgb, dtype=np.float32)
    if a.ndim == 3:  # ITU-R 601 luma, as PIL's convert("L")
        a = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    small = np.asarray(
        Image.fromarray(a, mode="F").resize((_DCT_SIZE, _DCT_SIZE), Image.Resampling.LANCZOS),
        dtype=np.float64,
    )
    low = dctn(small, type=2)[:_HASH_SIZE, :_HASH_SIZE]
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _exact_hash(rgb: np.ndarray) -> str:
    h = hashlib.sha1(str(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def hashes_of(rgb: np.ndarray) -> tuple[str, int]:
    """``(exact_sha1_hex, phash64)`` of one decoded image (what grouping compares)."""
    return _exact_hash(rgb), phash(rgb)


def image_hashes(samples: Sequence[Sample]) -> list[tuple[str, int]]:
    """Per sample ``(exact_sha1_hex, phash64)`` of its image (decoded with ``read_image``).

    Raises DataError naming the file when an image cannot be read.
    """
    return [hashes_of(read_image(s.image)) for s in samples]


# ----------------------------------------------------------------------------- grouping


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def groups(self) -> list[list[int]]:
        """Components with more than one member, each sorted, ordered by first member."""
        comps: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            comps[self.find(i)].append(i)
        return sorted((c for c in comps.values() if len(c) > 1), key=lambda c: c[0])


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def near_pairs(phashes: Sequence[int], max_distance: int = NEAR_DUP_MAX_DISTANCE) -> np.ndarray:
    """``(k, 2)`` array of index pairs ``i < j`` whose pHash distance is ``<= max_distance``.

    Vectorised XOR + popcount on ``uint64`` in row blocks (memory ~ block x n).
    """
    h = np.asarray(list(phashes), dtype=np.uint64)
    n = len(h)
    out = []
    block = 1024
    for start in range(0, n, block):
        rows = h[start : start + block]
        dist = _popcount(rows[:, None] ^ h[None, :])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = j > i
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def _union_hashes(
    uf: _UnionFind, hashes: Sequence[tuple[str, int]], near: bool, max_distance: int
) -> None:
    first: dict[str, int] = {}
    for i, (sha, _) in enumerate(hashes):
        uf.union(first.setdefault(sha, i), i)
    if near:
        for i, j in near_pairs([p for _, p in hashes], max_distance):
            uf.union(int(i), int(j))


def duplicate_groups(
    samples: Sequence[Sample],
    near: bool = True,
    max_distance: int = NEAR_DUP_MAX_DISTANCE,
    hashes: Sequence[tuple[str, int]] | None = None,
) -> list[list[int]]:
    """Groups of sample indices that are exact (or, with ``near``, near) duplicates.

    Groups are connected components (a~b and b~c put a, b, c together); singletons are
    omitted; each group is sorted and groups are ordered by their first index. Pass
    ``hashes`` (from :func:`image_hashes`) to skip decoding the images again.
    """
    if hashes is None:
        hashes = image_hashes(samples)
    if len(hashes) != len(samples):
        raise ValueError(f"{len(hashes)} hashes for {len(samples)} samples")
    uf = _UnionFind(len(samples))
    _union_hashes(uf, hashes, near, max_distance)
    return uf.groups()


def assign_groups(
    samples: Sequence[Sample],
    near: bool = True,
    max_distance: int = NEAR_DUP_MAX_DISTANCE,
    hashes: Sequence[tuple[str, int]] | None = None,
) -> list[Sample]:
    """Samples with ``group`` set so that duplicates and same-group samples share one id.

    Anything tied by either notion stays together: a user-given group (e.g. a patient id
    from the CSV manifest) and exact/near-duplicate images are unioned. The new id is the
    user group when the component has one (several joined by ``+``, sorted), else
    ``dup-<sha1 prefix>`` of its first image; samples tied to nothing keep ``group=None``.
    """
    if hashes is None:
        hashes = image_hashes(samples)
    uf = _UnionFind(len(samples))
    _union_hashes(uf, hashes, near, max_distance)
    by_user: dict[str, int] = {}
    for i, s in enumerate(samples):
        if s.group is not None:
            uf.union(by_user.setdefault(s.group, i), i)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(samples)):
        members[uf.find(i)].append(i)
    out = list(samples)
    for comp in members.values():
        user = sorted({samples[i].group for i in comp if samples[i].group is not None})
        if user:
            gid: str | None = "+".join(user)
        elif len(comp) > 1:
            gid = f"dup-{hashes[comp[0]][0][:12]}"
        else:
            gid = None
        for i in comp:
            if out[i].group != gid:
                out[i] = replace(out[i], group=gid)
    return out


# ----------------------------------------------------------------------------- audit


@dataclass
class AuditReport:
    """What :func:`audit` found. ``to_dict()`` is JSON-able; ``format()`` is for people.

    ``problems`` holds one line per thing to fix or to know before training (layout
    problems, unreadable files, mask size mismatches, masks not single-channel 8-bit
    binary, stray non-image files, duplicates, label conflicts, cross-split leakage);
    ``ok`` is True when it is empty. Images with several masks are listed in
    ``multi_mask`` but are not a problem: medtl merges them by union.
    """

    root: str
    layout: str
    n_images: int
    classes: dict[str, int]
    splits: dict[str, int]
    image_sizes: dict[str, Any]
    image_modes: dict[str, int]
    mask_modes: dict[str, int]
    mask_coverage: dict[str, dict[str, float]]
    empty_masks: dict[str, int]
    multi_mask: list[dict[str, Any]]
    mask_size_mismatch: list[dict[str, Any]]
    odd_masks: list[dict[str, Any]]
    unreadable: list[dict[str, str]]
    other_files: list[str]
    layout_problems: list[str]
    exact_duplicates: list[dict[str, Any]]
    near_duplicates: list[dict[str, Any]]
    leakage: list[dict[str, Any]]
    near_max_distance: int = NEAR_DUP_MAX_DISTANCE
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def label_conflicts(self) -> list[dict[str, Any]]:
        """Duplicate groups (exact or near) whose members are filed under different labels."""
        return [g for g in self.exact_duplicates + self.near_duplicates if g["label_conflict"]]

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types, plus ``ok``."""
        d = asdict(self)
        d["ok"] = self.ok
        d["n_label_conflicts"] = len(self.label_conflicts)
        return d

    def format(self) -> str:
        """A human-readable report (long lists cut to their first entries)."""
        lines = [f"audit of {self.root}", f"  layout: {self.layout}, {self.n_images} images"]
        lines.append("  classes: " + _kv(self.classes))
        lines.append("  splits: " + _kv(self.splits))
        s = self.image_sizes
        if s:
            lines.append(
                f"  image sizes (WxH): width {s['min_width']}..{s['max_width']}, height "
                f"{s['min_height']}..{s['max_height']}, {s['n_distinct']} distinct, most "
                f"common {s['most_common'][0]}x{s['most_common'][1]} ({s['most_common_count']})"
            )
        lines.append("  image modes: " + _kv(self.image_modes))
        if self.mask_modes:
            lines.append("  mask modes: " + _kv(self.mask_modes))
        for cls, c in self.mask_coverage.items():
            lines.append(
                f"  mask coverage {cls}: mean {c['mean']:.3f}, min {c['min']:.3f}, max "
                f"{c['max']:.3f} (n={int(c['n'])}, empty={self.empty_masks.get(cls, 0)})"
            )
        _section(
            lines,
            "images with several masks (merged by union)",
            self.multi_mask,
            lambda m: f"{m['image']}: {len(m['masks'])} masks",
        )
        _section(
            lines,
            "masks whose size differs from their image",
            self.mask_size_mismatch,
            lambda m: f"{m['mask']}: {m['mask_size']} vs image {m['image_size']}",
        )
        _section(
            lines,
            "masks not single-channel 8-bit binary",
            self.odd_masks,
            lambda m: f"{m['mask']}: mode {m['mode']}, {'; '.join(m['reasons'])}",
        )
        _section(lines, "unreadable files", self.unreadable, lambda u: u["error"])
        _section(lines, "non-image files", self.other_files, str)
        _section(lines, "layout problems", self.layout_problems, str)
        _section(lines, "exact duplicate groups", self.exact_duplicates, _fmt_group)
        _section(
            lines,
            f"near-duplicate groups (pHash distance <= {self.near_max_distance})",
            self.near_duplicates,
            _fmt_group,
        )
        _section(
            lines, "duplicate groups filed under different labels", self.label_conflicts, _fmt_group
        )
        _section(lines, "leakage: groups spanning pre-made splits", self.leakage, _fmt_group)
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines.append(f"  result: {verdict} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def _kv(d: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "-"


def _section(lines: list[str], title: str, items: list, fmt) -> None:
    if not items:
        return
    lines.append(f"  {title}: {len(items)}")
    lines += [f"    {fmt(it)}" for it in items[:_SHOW]]
    if len(items) > _SHOW:
        lines.append(f"    ... {len(items) - _SHOW} more (see --json)")


def _fmt_group(g: dict[str, Any]) -> str:
    tags = [
        t
        for t, on in (("LABELS DIFFER", g["label_conflict"]), ("SPANS SPLITS", g["cross_split"]))
        if on
    ]
    extra = f" [{', '.join(tags)}: {'/'.join(g['labels'] + g['splits'])}]" if tags else ""
    return ", ".join(g["files"]) + extra


@dataclass
class _Decoded:
    """Per sample, what one decode of its files gave."""

    shape: tuple[int, int] | None = None
    hashes: tuple[str, int] | None = None
    coverage: float | None = None


def _mask_info(arr: np.ndarray, mode: str) -> list[str]:
    """Why a mask array is not a single-channel 8-bit binary mask (empty list if it is)."""
    reasons = []
    if arr.ndim == 3:
        reasons.append(f"not single-channel ({arr.shape[2]} channels)")
    elif mode == "P":
        reasons.append("palette (indices used as values)")
    elif mode not in _SINGLE_CHANNEL_8BIT:
        reasons.append(f"{arr.dtype.itemsize * 8}-bit {arr.dtype}")
    flat = arr[..., : 3 if arr.shape[2] >= 3 else 1].max(axis=2) if arr.ndim == 3 else arr
    values = np.unique(flat)
    if len(values) > 2:
        shown = ", ".join(str(v) for v in values[:8].tolist())
        more = ", ..." if len(values) > 8 else ""
        reasons.append(f"non-binary ({len(values)} values: {shown}{more})")
    return reasons


def _header_mode(path: Path) -> str:
    if path.suffix.lower() == ".dcm":
        return "DICOM"
    with Image.open(path) as img:  # header only: no pixel decode
        return img.mode


def _decode_sample(s: Sample, rep: dict[str, Any]) -> _Decoded:
    out = _Decoded()
    try:
        rgb = read_image(s.image)  # first: its DataError says what is wrong
        mode = _header_mode(s.image)
    except (DataError, OSError) as exc:
        rep["unreadable"].append({"path": str(s.image), "error": _err(s.image, exc)})
        return out
    out.shape = rgb.shape[:2]
    out.hashes = hashes_of(rgb)
    rep["image_modes"][mode] += 1
    rep["sizes"][(rgb.shape[1], rgb.shape[0])] += 1
    if not s.masks:
        return out
    if len(s.masks) > 1:
        rep["multi_mask"].append({"image": str(s.image), "masks": [str(m) for m in s.masks]})
    merged: np.ndarray | None = None
    for m in s.masks:
        try:
            arr = read_array(m)
            mmode = _header_mode(m)
        except (DataError, OSError) as exc:
            rep["unreadable"].append({"path": str(m), "error": _err(m, exc)})
            continue
        rep["mask_modes"][mmode] += 1
        reasons = _mask_info(arr, mmode)
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
    if merged is not None:
        out.coverage = float(merged.mean())
    return out


def _err(path: Path, exc: Exception) -> str:
    msg = str(exc)
    return msg if str(path) in msg else f"{path}: {msg}"


def _other_files(root: Path, layout: str) -> list[str]:
    """Files under ``root`` that are not images (hidden files included; root-level
    manifests of the csv layout excluded)."""
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() in IMAGE_EXTS:
            continue
        if layout == "csv" and p.parent == root and p.suffix.lower() == ".csv":
            continue
        out.append(str(p))
    return out


def _group_info(kind: str, idx: list[int], samples: Sequence[Sample]) -> dict[str, Any]:
    labels = sorted({samples[i].label for i in idx if samples[i].label is not None})
    splits = sorted({samples[i].split for i in idx if samples[i].split is not None})
    return {
        "kind": kind,
        "files": [str(samples[i].image) for i in idx],
        "labels": labels,
        "splits": splits,
        "label_conflict": len(labels) > 1,
        "cross_split": len(splits) > 1,
    }


def audit(
    root: str | Path, layout: str = "auto", max_distance: int = NEAR_DUP_MAX_DISTANCE
) -> AuditReport:
    """Audit the data set under ``root`` (see :class:`AuditReport` for what is reported).

    Every file is decoded once; a bad file is reported and skipped, never fatal. Raises
    DataError only when no layout fits. ``max_distance`` is the near-duplicate threshold.
    """
    t0 = time.perf_counter()
    ds = discover(root, layout)
    samples = ds.samples
    rep: dict[str, Any] = {
        "unreadable": [],
        "multi_mask": [],
        "odd_masks": [],
        "mask_size_mismatch": [],
        "image_modes": Counter(),
        "mask_modes": Counter(),
        "sizes": Counter(),
    }
    decoded = [_decode_sample(s, rep) for s in samples]

    coverage: dict[str, list[float]] = defaultdict(list)
    for s, d in zip(samples, decoded, strict=True):
        if d.coverage is not None:
            coverage[s.label or "-"].append(d.coverage)
    cov_stats = {
        cls: {
            "mean": float(np.mean(v)),
            "min": float(np.min(v)),
            "max": float(np.max(v)),
            "n": len(v),
        }
        for cls, v in sorted(coverage.items())
    }
    empty = {cls: sum(1 for c in v if c == 0.0) for cls, v in sorted(coverage.items())}

    sizes: Counter = rep["sizes"]
    image_sizes: dict[str, Any] = {}
    if sizes:
        ((common, count),) = sizes.most_common(1)
        image_sizes = {
            "min_width": min(w for w, _ in sizes),
            "max_width": max(w for w, _ in sizes),
            "min_height": min(h for _, h in sizes),
            "max_height": max(h for _, h in sizes),
            "most_common": list(common),
            "most_common_count": count,
            "n_distinct": len(sizes),
        }

    # duplicates among the readable images
    ok_idx = [i for i, d in enumerate(decoded) if d.hashes is not None]
    hashes = [decoded[i].hashes for i in ok_idx]
    exact_uf, near_uf = _UnionFind(len(ok_idx)), _UnionFind(len(ok_idx))
    _union_hashes(exact_uf, hashes, near=False, max_distance=0)
    _union_hashes(near_uf, hashes, near=True, max_distance=max_distance)
    exact = [_group_info("exact", [ok_idx[i] for i in g], samples) for g in exact_uf.groups()]
    near = [
        _group_info("near", [ok_idx[i] for i in g], samples)
        for g in near_uf.groups()
        if len({hashes[i][0] for i in g}) > 1  # not merely one exact group
    ]
    leakage = [g for g in exact + near if g["cross_split"]]
    user_groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        if s.group is not None:
            user_groups[s.group].append(i)
    for gid, idx in sorted(user_groups.items()):
        info = _group_info(f"group {gid}", idx, samples)
        if info["cross_split"]:
            leakage.append(info)

    other = _other_files(Path(root), ds.layout)
    root_dir = Path(root)
    problems = list(ds.problems)
    problems += [u["error"] for u in rep["unreadable"]]
    problems += [
        f"{m['mask']}: mask size {m['mask_size']} differs from its image {m['image_size']}"
        for m in rep["mask_size_mismatch"]
    ]
    problems += [
        f"{m['mask']}: mask mode {m['mode']}, {'; '.join(m['reasons'])}" for m in rep["odd_masks"]
    ]
    problems += [f"{p}: not an image file" for p in other if Path(p).parent != root_dir]
    problems += [f"exact duplicates: {', '.join(g['files'])}" for g in exact]
    problems += [f"near-duplicates: {', '.join(g['files'])}" for g in near]
    problems += [
        f"same image filed under {' and '.join(g['labels'])}: {', '.join(g['files'])}"
        for g in exact + near
        if g["label_conflict"]
    ]
    problems += [
        f"leakage across splits {'/'.join(g['splits'])} ({g['kind']}): {', '.join(g['files'])}"
        for g in leakage
    ]

    return AuditReport(
        root=str(root),
        layout=ds.layout,
        n_images=len(samples),
        classes=dict(sorted(Counter(s.label or "-" for s in samples).items())),
        splits=dict(sorted(Counter(s.split or "unsplit" for s in samples).items())),
        image_sizes=image_sizes,
        image_modes=dict(sorted(rep["image_modes"].items())),
        mask_modes=dict(sorted(rep["mask_modes"].items())),
        mask_coverage=cov_stats,
        empty_masks=empty,
        multi_mask=rep["multi_mask"],
        mask_size_mismatch=rep["mask_size_mismatch"],
        odd_masks=rep["odd_masks"],
        unreadable=rep["unreadable"],
        other_files=other,
        layout_problems=list(ds.problems),
        exact_duplicates=exact,
        near_duplicates=near,
        leakage=leakage,
        near_max_distance=max_distance,
        seconds=round(time.perf_counter() - t0, 3),
        problems=problems,
    )
