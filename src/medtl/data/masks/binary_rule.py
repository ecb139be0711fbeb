"""The binary rule of the mask scan: whether every mask file is a binary mask (0/1,
0/255, 0/65535, or 0/255 with JPEG ringing, interpolated or anti-aliased edges), and the
binary :class:`~medtl.data.masks.scheme.MaskScheme` with the note that says why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medtl.data.masks.scheme import (
    BINARY_NOTE,
    JPEG_NOTE,
    MAX_LABELS,
    NOISY_NOTE,
    NOISY_SHARE,
    MaskScheme,
)
from medtl.utils.errors import DataError

if TYPE_CHECKING:
    from medtl.data.masks.scan import FileFacts

__all__ = ["EDGE_SHARE", "STANDARD_BINARY", "binary_scheme", "noisy"]


#: value sets that are binary masks on their own, whatever other files hold
STANDARD_BINARY = ({0, 1}, {0, 255}, {0, 65535})


def binary_scheme(facts: Sequence[FileFacts], strict: bool) -> MaskScheme | None:
    """The binary scheme when every file fits the binary rule; None (auto) or an error."""
    for f in facts:
        if f.kind == "multi":
            raise DataError(
                f"{f.path}: mask with {f.channels} channels; save masks with one channel (or RGB)"
            )
        if f.emptied:
            if not strict:
                return None
            raise DataError(
                f"{f.path}: mask values {f.shown()} all binarise to background (threshold at half "
                "the range); set data.mask_mode=labels (or auto) to read them as labels"
            )
        grey = f.kind in ("grey", "palette")
        if grey and len(f.values) > 2 and not noisy(f):
            if not strict:
                return None
            raise DataError(
                f"{f.path}: mask values {f.shown()} are not a binary mask (0/255 or 0/1); "
                "set data.mask_mode=labels (or auto) for label maps"
            )
        if f.kind == "rgb" and len([c for c in f.values if any(c)]) > 1 and not strict:
            return None
        if f.kind == "float" and not strict and not set(f.values) <= {0.0, 1.0}:
            raise DataError(
                f"{f.path}: float mask (values {min(f.values):.3g}..{max(f.values):.3g}); save it "
                "as an 8/16-bit PNG, or set data.mask_mode=binary to threshold it (0.5 / 128)"
            )
    grey = [f for f in facts if f.kind in ("grey", "palette") and not noisy(f)]
    standard = all(any(set(f.values) <= pair for pair in STANDARD_BINARY) for f in grey)
    plain = {v for f in grey for v in f.values}
    # files of 0/1 and of 0/255 (BUSI mixes mode-1 and 8-bit masks) are one binary set;
    # files of 0/1 and of 0/2 are a label map
    if not standard and len(plain) > 2 and not strict:
        return None
    edged = [f for f in facts if noisy(f)]
    if edged:
        jpeg = all(f.jpeg for f in facts if len(f.values) > 2)
        return MaskScheme("binary", note=JPEG_NOTE if jpeg else _noisy_note(edged, len(facts)))
    return MaskScheme("binary", note=BINARY_NOTE)


#: share of a few-valued mask's other pixels that must lie on 0/255 edges
#: (:func:`medtl.data.masks.scan.edge_share`) for the mask to be a binary one with
#: anti-aliased edges rather than a label map
EDGE_SHARE = 0.9


def noisy(f: FileFacts) -> bool:
    """An 8-bit grey mask with more than two values, nearly all near 0 or 255: JPEG ringing
    (any number of values), interpolated edges (more than :data:`MAX_LABELS` values), or
    0/255 with a few other values whose pixels lie on the edges between 0 and 255
    (anti-aliasing; a label map's values fill regions)."""
    if f.kind != "grey" or len(f.values) <= 2 or f.near_extremes < NOISY_SHARE:
        return False
    return f.jpeg or len(f.values) > MAX_LABELS or f.on_edges >= EDGE_SHARE


def _off_share(f: FileFacts) -> tuple[int, int]:
    """Pixels of ``f`` other than 0 and 255, and all its pixels."""
    return sum(n for v, n in f.values.items() if v not in (0, 255)), sum(f.values.values())


def _noisy_note(files: Sequence[FileFacts], n_files: int) -> str:
    """:data:`NOISY_NOTE` with its evidence: how many files, what share of their pixels."""
    off, total = map(sum, zip(*(_off_share(f) for f in files), strict=True))
    return (
        f"{NOISY_NOTE} ({len(files)} of {n_files} files hold values between 0 and 255, "
        f"{100 * off / max(total, 1):.2f} % of their pixels)"
    )
