"""Audit a data set before training: duplicates, cross-split leakage, mask sanity, bad files.

The audit only checks and reports; the duplicate links come from
:mod:`medtl.data.duplicates` (the same ones training uses to keep duplicates in one split):
hashes propose pairs, the pixels verify them, and exact copies, verified near-duplicates
(the same image) and likely-same-patient pairs are reported apart, each pair with its
similarity.

Example::

    >>> report = audit("Dataset_BUSI_with_GT")          # doctest: +SKIP
    >>> print(report.format())                          # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from medtl.data.audit.duplicates import duplicate_sections, fmt_group, fmt_large
from medtl.data.audit.files import (
    decode_all,
    object_lines,
    object_sizes,
    other_files,
    placement_problems,
)
from medtl.data.audit.masks import default_masks, format_masks, mask_meaning
from medtl.data.audit.stats import coverage_stats, image_size_stats
from medtl.data.class_filter import keep_classes
from medtl.data.groups import group_by_names, looks_like_slices
from medtl.data.layouts import Sample, discover
from medtl.data.layouts.explain import PARTLY
from medtl.data.layouts.msd import names_from_dataset
from medtl.data.readers.seg import seg_label_names, seg_problems

_SHOW = 10  # items of a long list shown by AuditReport.format()


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
    same_patient: list[dict[str, Any]] = field(default_factory=list)
    """Groups of images verified as likely the same patient (not the same image)."""
    large_groups: list[dict[str, Any]] = field(default_factory=list)
    """Duplicate groups above the chaining bound: ``size``, ``files``, ``weakest`` links."""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    grouping: dict[str, Any] = field(default_factory=dict)
    """Patient groups: what training would decide from the names
    (:class:`medtl.data.groups.GroupDecision`) and ``n_groups`` in force."""
    mask_interpretation: dict[str, Any] = field(default_factory=dict)
    """What training would decide the masks mean (:mod:`medtl.data.audit.masks`):
    ``mode``, ``description``, ``labels`` (value, name), ``error`` (the line it would stop with)."""
    label_table: list[dict[str, Any]] = field(default_factory=list)
    """Label maps: per label value its name, pixel share, images holding it, ``rare``."""
    unused: list[str] = field(default_factory=list)
    """Folders and files under the root that the layout found but did not use."""
    dicom_skipped: dict[str, int] = field(default_factory=dict)
    """``dicom`` layout: DICOM files that are no training image, counted by kind
    (:func:`medtl.data.readers.dicom.kind_of`)."""
    objects: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per structure: connected objects' count and image-area shares (:func:`object_sizes`)."""
    file_problems: list[str] = field(default_factory=list)
    """Files outside the data folder, tiny images, DICOM SEG masks that do not fit their image."""

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def label_conflicts(self) -> list[dict[str, Any]]:
        """Same-image groups (exact or verified near) filed under different labels."""
        return [g for g in self.exact_duplicates + self.near_duplicates if g["label_conflict"]]

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types, plus ``ok``."""
        d = asdict(self)
        d["ok"] = self.ok
        d["n_label_conflicts"] = len(self.label_conflicts)
        return d

    def _summary_lines(self) -> list[str]:
        """The report's first lines: layout, counts, sizes, modes, what the masks mean."""
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
        lines += object_lines(self.objects)
        lines += format_masks(self.mask_interpretation, self.label_table)
        for cls, c in self.mask_coverage.items():
            lines.append(
                f"  mask coverage {cls}: mean {c['mean']:.3f}, min {c['min']:.3f}, max "
                f"{c['max']:.3f} (n={int(c['n'])}, empty={self.empty_masks.get(cls, 0)})"
            )
        return lines

    def format(self) -> str:
        """A human-readable report (long lists cut to their first entries)."""
        lines = self._summary_lines()
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
        if self.dicom_skipped:
            lines.append("  DICOM files skipped (no training image): " + _kv(self.dicom_skipped))
        _section(lines, "non-image files", self.other_files, str)
        _section(lines, "found but not used by the layout", self.unused, str)
        _section(lines, "layout problems", self.layout_problems, str)
        _section(lines, "exact duplicate groups", self.exact_duplicates, fmt_group)
        _section(
            lines,
            "verified near-duplicate groups (the same image; pair similarity)",
            self.near_duplicates,
            fmt_group,
        )
        _section(lines, "likely the same patient (pair similarity)", self.same_patient, fmt_group)
        _section(lines, "same image filed under different labels", self.label_conflicts, fmt_group)
        _section(lines, "leakage: groups spanning pre-made splits", self.leakage, fmt_group)
        _section(lines, "duplicate groups above the chaining bound", self.large_groups, fmt_large)
        _section(lines, "file problems", self.file_problems, str)
        if self.grouping:
            lines.append(_grouping_line(self.grouping))
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines.append(f"  result: {verdict} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def _grouping_line(g: dict[str, Any]) -> str:
    if g["pattern"]:
        line = f"  patient groups: {g['groups_in_force']} (names ({g['source']}) {g['pattern']})"
    elif g["groups_in_force"]:
        line = f"  patient groups: {g['groups_in_force']} (from the layout or manifest)"
    else:
        line = "  patient groups: none (every image on its own)"
    sizes = g.get("sizes")
    if sizes:
        what = "" if g["pattern"] else " of the pattern turned down"
        line += f"; images per group{what}: min {sizes['min']:g}, median {sizes['median']:g}, max {sizes['max']:g}"
    if g.get("reason") and not g["pattern"]:
        line += f"; names not used: {g['reason']}"
    return line


def _kv(d: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "-"


def _section(lines: list[str], title: str, items: list, fmt) -> None:
    if not items:
        return
    lines.append(f"  {title}: {len(items)}")
    lines += [f"    {fmt(it)}" for it in items[:_SHOW]]
    if len(items) > _SHOW:
        lines.append(f"    ... {len(items) - _SHOW} more (see --json)")


def _problems(
    layout_problems: list[str],
    rep: dict[str, Any],
    other: list[str],
    root: Path,
    dup: dict[str, list[dict]],
) -> list[str]:
    """One line per thing to fix or to know, in the order :class:`AuditReport` lists them."""
    problems = list(layout_problems)
    problems += [u["error"] for u in rep["unreadable"]]
    problems += [
        f"{m['mask']}: mask size {m['mask_size']} differs from its image {m['image_size']}"
        + ("; data.mask_resize=nearest resizes it" if _same_aspect(m) else "")
        for m in rep["mask_size_mismatch"]
    ]
    problems += [
        f"{m['mask']}: mask mode {m['mode']}, {'; '.join(m['reasons'])}" for m in rep["odd_masks"]
    ]
    problems += [f"{p}: not an image file" for p in other if Path(p).parent != root]
    exact, near = dup["exact"], dup["near"]
    problems += [f"exact duplicates: {', '.join(g['files'])}" for g in exact]
    problems += [f"near-duplicates (the same image): {', '.join(g['files'])}" for g in near]
    problems += [
        f"same image filed under {' and '.join(g['labels'])}: {', '.join(g['files'])}"
        for g in exact + near
        if g["label_conflict"]
    ]
    problems += [
        f"leakage across splits {'/'.join(g['splits'])} ({g['kind']}): {', '.join(g['files'])}"
        for g in dup["leakage"]
    ]
    problems += [f"duplicate group of {fmt_large(g)}" for g in dup["large"]]
    return problems


def _same_aspect(m: dict[str, Any]) -> bool:
    from medtl.data.readers.io import ASPECT_TOLERANCE

    (mw, mh), (iw, ih) = (map(int, m[k].split("x")) for k in ("mask_size", "image_size"))
    return abs((mw / mh) / (iw / ih) - 1) < ASPECT_TOLERANCE


def _grouping(
    samples: Sequence[Sample], pattern: str | None = None
) -> tuple[dict[str, Any], str | None]:
    """What training would decide from the names (``pattern``: ``data.group_pattern``), the
    groups in force and the audit's warning when names look like slices but nothing groups
    them."""
    off = str(pattern or "").strip().lower() == "none"
    grouped, decision = group_by_names(samples, None if off else pattern, not off)
    grouping = {
        **decision.to_dict(),
        "groups_in_force": len({s.group for s in grouped if s.group is not None}),
    }
    return grouping, looks_like_slices(grouped, decision)


def audit(
    root: str | Path,
    layout: str = "auto",
    masks: Any = None,
    data: Any = None,
) -> AuditReport:
    """Audit the data set under ``root`` (see :class:`AuditReport` for what is reported).

    Every file is decoded once, on the decoding threads (:mod:`medtl.utils.parallel`); a
    bad file is reported and skipped, never fatal. Raises
    DataError only when no layout fits. ``masks`` the ``data.mask_mode``/``labels``/``mask_colors`` keys (default: auto).
    ``data``: a config's ``data`` section, whose keys of :data:`medtl.data.audit.keys.AUDIT_KEYS`
    are read as training reads them (its mask keys too, unless ``masks`` is given).
    """
    return _audit(root, layout, masks if masks is not None else data, data)


def _discovered(root: str | Path, layout: str, data: Any) -> Any:
    """The layout's samples, with the ``data`` keys that shape them (slicing, DICOM classes)."""
    ds = discover(
        root,
        getattr(data, "layout", None) if layout == "auto" and data is not None else layout,
        slice_axis=getattr(data, "slice_axis", 2),
        empty_slice_fraction=getattr(data, "empty_slice_fraction", 1.0),
    )
    if ds.layout == "dicom" and data is not None:  # classes from a DICOM tag or a folder level
        from medtl.data.layouts.dicom_tree import apply_labels

        apply_labels(ds, data.label_tag, data.label_level)
    keep_classes(ds, getattr(data, "classes", None))
    ds.label_names = ds.label_names or seg_label_names(ds.samples)  # DICOM SEG segment labels
    return ds


def _audit(root: str | Path, layout: str, masks: Any, data: Any) -> AuditReport:
    t0 = time.perf_counter()
    ds = _discovered(root, layout, data)
    samples = ds.samples
    decoded, rep = decode_all(
        samples, getattr(data, "mask_resize", None) or "none"
    )  # in parallel, merged in sample order
    if ds.label_names:  # an MSD dataset.json names the labels, as training reads them
        masks = SimpleNamespace(**vars(masks or default_masks()))
        names_from_dataset(masks, ds)
    meaning, table, mask_problems = mask_meaning(ds, decoded, rep, masks)
    cov_stats, empty = coverage_stats(samples, decoded)
    dup = duplicate_sections(samples, [d.hashes for d in decoded], [d.view for d in decoded])
    other = other_files(Path(root), ds.layout)
    problems = _problems(list(ds.problems), rep, other, Path(root), dup)
    files = placement_problems(samples, Path(root), decoded)
    files += seg_problems(samples)  # DICOM SEG masks that do not fit their image
    problems += mask_problems + files
    grouping, warning = _grouping(samples, getattr(data, "group_pattern", None))
    problems += _unused_problems(ds) + ([warning] if warning else [])
    return AuditReport(
        root=str(root),
        layout=ds.layout,
        n_images=len(samples),
        classes=dict(sorted(Counter(s.label or "-" for s in samples).items())),
        splits=dict(sorted(Counter(s.split or "unsplit" for s in samples).items())),
        image_sizes=image_size_stats(rep["sizes"]),
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
        exact_duplicates=dup["exact"],
        near_duplicates=dup["near"],
        leakage=dup["leakage"],
        same_patient=dup["patient"],
        large_groups=dup["large"],
        seconds=round(time.perf_counter() - t0, 3),
        problems=problems,
        grouping=grouping,
        mask_interpretation=meaning,
        label_table=table,
        unused=list(ds.unused),
        dicom_skipped=_dicom_skipped(ds),
        objects=object_sizes(decoded),
        file_problems=files,
    )


def _dicom_skipped(ds: Any) -> dict[str, int]:
    """What the ``dicom`` layout skipped, by kind (empty for other layouts)."""
    if ds.layout != "dicom":
        return {}
    from medtl.data.layouts.dicom_tree import scan_tree

    return dict(sorted(scan_tree(ds.root).skipped.items()))


def _unused_problems(ds: Any) -> list[str]:
    """Whole folders the layout passed over (files beside used ones are only listed)."""
    return [f"not used by layout '{ds.layout}': {u}" for u in ds.unused if not u.endswith(PARTLY)]
