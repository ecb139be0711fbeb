"""``medtl slices``: a ``volumes`` data set (NIfTI images + label volumes) written out as
PNG slices, masks and a ``slices.csv`` manifest (group = volume id), with the label names
in ``labels.yaml`` when the data set names them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.layouts.folders import find_volumes
from medtl.data.layouts.msd import dataset_labels
from medtl.data.masks.scheme import names_file
from medtl.data.readers.volumes import read_ref, volume_slices
from medtl.utils.errors import DataError
from medtl.utils.files import atomic_write, atomic_write_text, csv_text


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 or bool (as 0/255) array as PNG, atomically."""
    from PIL import Image

    arr = array.astype(np.uint8) * 255 if array.dtype == bool else array
    atomic_write(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))


def write_slices(
    root: str | Path,
    out: str | Path,
    axis: int = 2,
    empty_fraction: float = 1.0,
    window: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Write ``OUT/images/<vol>_slice<k>.png``, ``OUT/masks/...`` and ``OUT/slices.csv``
    (columns image, mask, group = volume id, spacing) from a ``volumes`` data set.

    Returns ``{"volumes": n, "slices": n, "manifest": path}``. Nothing is written when a
    volume is unusable (every volume is checked first).
    """
    root, out = Path(root), Path(out)
    if not (root / "images").is_dir():
        raise DataError(f"{root}: no images/ folder of volumes; put case01.nii.gz files there")
    pairs, problems = find_volumes(root)
    if problems:
        raise DataError(f"{problems[0]}; add the missing file or move the other out of {root}")
    if not pairs:
        raise DataError(f"{root}/images: no .nii or .nii.gz volumes found")
    plan = [(img, volume_slices(img, lab, axis, empty_fraction)) for img, lab in pairs]
    rows = []
    for _, slices in plan:
        for ref, mask, meta in slices:
            name = f"{meta['volume']}_slice{meta['index']:04d}.png"
            save_png(out / "images" / name, read_ref(ref, window))
            row = {"image": f"images/{name}", "mask": "", "group": meta["volume"]}
            if mask is not None:
                values = read_ref(mask)
                save_png(out / "masks" / name, values > 0 if values.max(initial=0) <= 1 else values)
                row["mask"] = f"masks/{name}"
            row["spacing"] = "x".join(f"{s:g}" for s in meta["spacing"])
            rows.append(row)
    manifest = atomic_write_text(out / "slices.csv", csv_text(rows))
    names = label_names_of(root)
    if names:  # the label maps' names travel with the PNG masks
        lines = [f"{v}: {json.dumps(n)}" for v, n in sorted(names.items())]
        atomic_write_text(out / "labels.yaml", "\n".join(lines) + "\n")
    return {"volumes": len(plan), "slices": len(rows), "manifest": str(manifest)}


def label_names_of(root: Path) -> dict[int, str] | None:
    """``{value: name}`` of the foreground labels from ``root``'s ``labels.yaml`` /
    ``labels.json`` or MSD ``dataset.json`` (background left out), else None."""
    found = names_file(root)
    if found:
        return {int(v): str(n) for v, n in found.items() if int(v) != 0}
    return dataset_labels(root)
