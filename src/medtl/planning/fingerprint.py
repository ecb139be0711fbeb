"""What a data set is like, for choosing a recipe: sizes, channels, bit depth, how much of
each image is foreground, how small the objects are, class balance, independent groups
and duplicates. All of it comes from :func:`medtl.data.audit.report.audit`'s single decode
of every file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medtl.data.audit.report import AuditReport, audit
from medtl.utils.errors import DataError

#: PIL/DICOM modes -> (channels, bits per channel)
_MODES = {
    "1": (1, 1),
    "L": (1, 8),
    "P": (3, 8),
    "LA": (2, 8),
    "RGB": (3, 8),
    "RGBA": (4, 8),
    "CMYK": (4, 8),
    "I;16": (1, 16),
    "I;16B": (1, 16),
    "I;16L": (1, 16),
    "I": (1, 32),
    "F": (1, 32),
}


@dataclass
class Fingerprint:
    """The facts a plan is made from (``to_dict()`` is JSON-able)."""

    root: str
    layout: str
    n_images: int
    native_size: tuple[int, int]  # the most common (width, height)
    min_side: int  # the smallest side among the images
    channels: dict[str, int]  # "1"/"3": images
    bit_depths: dict[str, int]  # "8"/"16": images
    has_masks: bool
    foreground_share: float | None  # mean mask coverage over masked images
    objects: dict[str, dict[str, float]]  # per structure (audit's object_sizes)
    classes: dict[str, int]
    imbalance: float  # largest class / smallest class
    groups: int  # independent units: patient groups where found, else images
    exact_duplicates: int
    near_duplicates: int
    problems: list[str] = field(default_factory=list)
    empty_classes: dict[str, int] = field(default_factory=dict)  # class -> images, masks all empty

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)

    @property
    def smallest_object_share(self) -> float | None:
        """The 10th percentile object's image-area share over every structure (None without masks)."""
        shares = [o["p10_share"] for o in self.objects.values()]
        return min(shares) if shares else None


def fingerprint(root: str | Path, layout: str = "auto", data: Any = None) -> Fingerprint:
    """Audit ``root`` once (:func:`~medtl.data.audit.report.audit`, reading it as a config's
    ``data`` section would: its mask, grouping and class keys) and keep what a plan needs.
    Raises DataError when no layout fits or no image can be read."""
    report = audit(root, layout, data=data)
    return from_report(report)


def from_report(report: AuditReport) -> Fingerprint:
    """The fingerprint of an audit that has already run."""
    sizes = report.image_sizes
    if not sizes:
        raise DataError(
            f"{report.root}: no readable image; run 'medtl audit {report.root}' to see why"
        )
    channels: dict[str, int] = {}
    depths: dict[str, int] = {}
    for mode, n in report.image_modes.items():
        c, b = _MODES.get(mode, (1, 16) if mode.startswith(("DICOM", "NIfTI")) else (3, 8))
        channels[str(c)] = channels.get(str(c), 0) + n
        depths[str(b)] = depths.get(str(b), 0) + n
    masked = [c for c in report.mask_coverage.values() if c["n"]]
    total = sum(c["n"] for c in masked)
    share = sum(c["mean"] * c["n"] for c in masked) / total if total else None
    counts = [n for n in report.classes.values() if n]
    groups = report.grouping.get("groups_in_force") or _undup_count(report)
    return Fingerprint(
        root=report.root,
        layout=report.layout,
        n_images=report.n_images,
        native_size=tuple(sizes["most_common"]),  # type: ignore[arg-type]
        min_side=min(sizes["min_width"], sizes["min_height"]),
        channels=channels,
        bit_depths=depths,
        has_masks=bool(report.mask_modes),
        foreground_share=share,
        objects=report.objects,
        classes=report.classes,
        imbalance=max(counts) / min(counts) if counts else 1.0,
        groups=int(groups),
        exact_duplicates=len(report.exact_duplicates),
        near_duplicates=len(report.near_duplicates),
        problems=list(report.problems),
        empty_classes={
            cls: int(c["n"])
            for cls, c in report.mask_coverage.items()
            if cls != "-" and c["n"] and report.empty_masks.get(cls, 0) == c["n"]
        },
    )


def _undup_count(report: AuditReport) -> int:
    """Images once exact and near duplicates count as one (training groups them the same
    way with ``data.group_duplicates``): the independent units without patient names."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for group in report.exact_duplicates + report.near_duplicates:
        first, *rest = group["files"]
        for other in rest:
            parent[root(other)] = root(first)
    merged = sum(1 for f in parent if root(f) != f)
    return report.n_images - merged


def describe(fp: Fingerprint) -> list[str]:
    """A few lines for plan.yaml's header and the terminal."""
    w, h = fp.native_size
    lines = [
        f"{fp.n_images} images ({fp.layout}), most {w}x{h}, smallest side {fp.min_side}; "
        f"channels {fp.channels}, bits {fp.bit_depths}",
        "classes "
        + ", ".join(f"{k}={v}" for k, v in fp.classes.items())
        + f" (largest/smallest {fp.imbalance:.1f}); independent groups {fp.groups}; "
        f"duplicates: {fp.exact_duplicates} exact, {fp.near_duplicates} near",
    ]
    if fp.foreground_share is not None:
        lines.append(f"foreground share of a masked image: mean {fp.foreground_share:.3f}")
    for name, o in fp.objects.items():
        lines.append(
            f"objects {name}: {o['n_objects']} in {o['n_images']} images; area share p10 "
            f"{o['p10_share']:.2g}, median {o['median_share']:.2g}"
        )
    return lines
