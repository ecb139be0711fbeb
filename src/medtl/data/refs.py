"""Slice references: one 2D slice of a volume or one frame of a multi-frame DICOM, as a path.

Downstream code (caches, splits, predictions CSVs, reports) names every sample by its
image path, so a slice is named by a path too: the file's path followed by
``@<axis><index>`` and a suffix saying what to read:

- ``vols/images/case01.nii.gz@z0012.slice``: slice 12 along voxel axis 2 (``x``/``y``/``z``
  are voxel axes 0/1/2 of the array), decoded as an image;
- ``vols/labels/case01.nii.gz@z0012.mask``: the same slice of a label volume, read as a
  mask (foreground = label > 0);
- ``scan.dcm@f0003.slice``: frame 3 of a multi-frame DICOM.

The stem (``case01.nii.gz@z0012``) is unique per slice, so files written per sample
(``<stem>_pred.png``) never collide.

Example::

    >>> ref = slice_ref("vols/images/case01.nii.gz", 2, 12)
    >>> str(ref)
    'vols/images/case01.nii.gz@z0012.slice'
    >>> parse_ref(ref)
    (PosixPath('vols/images/case01.nii.gz'), 2, 12, 'slice')
    >>> parse_ref("plain.png") is None
    True
"""

from __future__ import annotations

import re
from pathlib import Path

AXES = "xyz"
FRAME = "f"
# fullmatch with DOTALL: a file name may hold a newline
_REF = re.compile(r"(?P<file>.+)@(?P<axis>[xyzf])(?P<k>\d+)\.(?P<kind>slice|mask)", re.DOTALL)


def slice_ref(path: str | Path, axis: int | str, index: int, kind: str = "slice") -> Path:
    """The reference of slice ``index`` along ``axis`` (0/1/2, or ``"f"`` for frames)."""
    letter = axis if axis == FRAME else AXES[int(axis)]
    return Path(f"{path}@{letter}{index:04d}.{kind}")


def parse_ref(path: str | Path) -> tuple[Path, int | str, int, str] | None:
    """``(file, axis, index, kind)`` of a reference (axis 0/1/2 or ``"f"``), else None."""
    m = _REF.fullmatch(str(path))
    if not m:
        return None
    letter = m.group("axis")
    axis: int | str = FRAME if letter == FRAME else AXES.index(letter)
    return Path(m.group("file")), axis, int(m.group("k")), m.group("kind")


def source_file(path: str | Path) -> Path:
    """The file on disk behind a path (the volume of a reference, else the path itself)."""
    parsed = parse_ref(path)
    return parsed[0] if parsed else Path(path)
